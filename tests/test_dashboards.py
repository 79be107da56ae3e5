"""The Grafana dashboards and alert rules: well-formed for Grafana, and every query, expanded as the
ClickHouse plugin expands it (grafana_macros.py), runs against a store filled through the real OTLP path
with known traffic (test_dashboards_data.py), returns the expected columns and, for many panels, the
exact numbers computed by hand below.

Hand computations use genai-prices 0.2.3 (USD per million tokens): gpt-4o-mini input 0.15, cache read
0.075, output 0.6; claude-3-5-sonnet-20241022 input 3, output 15. A failed call carries no tokens (cost 0).
Panels group by the canonical model (llm_calls.model: claude-3-5-sonnet for claude-3-5-sonnet-20241022).
  yesterday  chat       10 calls, 9 x (1000 in, 500 out) = 9 x 0.00045             = 0.00405, 1 error
             summarize  10 x (2000 in, 1000 out) = 10 x 0.021                         = 0.21
             search     12 unpriced calls (100 in, 10 out)
  today      chat       4 x (1000 in of which 400 cached, 500 out) = 4 x 0.00042   = 0.00168
                        2 x (1000, 500) = 0.0009; 2 refusals x (1000, 20) = 2 x 0.000162 = 0.000324
                        2 errors; total 0.002904
             summarize  9 x 0.021 = 0.189, 1 error, each 2000 ms (yesterday 1000 ms)
             search     12 unpriced calls
  all        64 calls, 4 errors, 24 unpriced, cost 0.405954, tokens 57400 in / 26780 out, 1600 cached
User scores and reviews on these calls (test_dashboards_data.USER_FEEDBACK, REVIEWS) are counted by hand in
test_feedback_panels and test_review_panels.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import grafana_macros as gm
import pytest
from collector_process import CollectorProcess, sql_rows, wait_drained
from test_dashboards_data import DAY_S, EMAIL, Loaded, Store, call_index, calls, load

REPO = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = REPO / "dashboards"
ALERT_RULES = REPO / "deploy/grafana/provisioning/alerting/tracehouse-alerts.yaml"
RENDER_ALERT_RULES = REPO / "deploy/grafana/render-alert-rules.sh"
DATASOURCES = REPO / "deploy/grafana/provisioning/datasources/tracehouse.yaml"

DASHBOARDS = {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}
BY_UID = {d["uid"]: d for d in DASHBOARDS.values()}
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
# The loaded store's fixture waits out midnight UTC (load(): up to ~6.5 min) so that today's calls stay today's;
# its setup counts against the first test's timeout.
pytestmark = pytest.mark.timeout(600)
LLM_DASHBOARDS = (
    "tracehouse-overview",
    "tracehouse-cost",
    "tracehouse-quality",
    "tracehouse-prompts",
    "tracehouse-feedback",
)
FILTER_VARIABLES = ("service", "feature", "provider", "model", "user")
TIME_MACROS = ("$__timeFilter", "$__dateFilter", "$__fromTime", "$__toTime", "$__dateTimeFilter", "$__dt(")
# Grafana's global variables that panels and links may use.
GRAFANA_GLOBALS = {"__from", "__to", "__interval", "__interval_ms", "__rate_interval", "__range", "__range_s"}
LINK_GLOBALS = {"__value", "__url_time_range", "__field", "__series", "__data"}


def all_panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def sql_targets() -> list[tuple[str, str, str, dict]]:
    return [
        (d["uid"], panel["title"], target["refId"], target)
        for d in DASHBOARDS.values()
        for panel in all_panels(d)
        for target in panel.get("targets", [])
        if "rawSql" in target
    ]


SQL_TARGETS = sql_targets()
SQL_IDS = [f"{uid}/{title}/{ref}" for uid, title, ref, _ in SQL_TARGETS]

BATCH_UID = "tracehouse-batches"
# The request counts of the Batches tables, per batch or summed.
BATCH_REQUESTS = ["requests", "pending", "succeeded", "handler_failed", "provider_failed", "expired", "canceled"]
# The columns of the feedback tables after their labels (Feedback by feature, model, prompt version).
FEEDBACK = ["calls", "rated", "feedback_rate", "mean_user_score", "low_scores"]

EXPECTED_COLUMNS = {
    ("tracehouse-overview", "Calls"): ["calls"],
    ("tracehouse-overview", "Cost"): ["cost_usd"],
    ("tracehouse-overview", "Tokens"): ["input_tokens", "output_tokens"],
    ("tracehouse-overview", "Error rate"): ["error_rate"],
    ("tracehouse-overview", "Unpriced calls"): ["unpriced_calls"],
    ("tracehouse-overview", "Active users"): ["active_users"],
    ("tracehouse-overview", "Latency p50 / p95 / p99"): ["p50_ms", "p95_ms", "p99_ms"],
    ("tracehouse-overview", "Time to first token p50 / p95"): ["ttft_p50_ms", "ttft_p95_ms"],
    ("tracehouse-overview", "Calls by model"): ["time", "model", "calls"],
    ("tracehouse-overview", "Cost by feature per day"): ["time", "feature_name", "cost_usd"],
    ("tracehouse-overview", "Tokens by model per day"): ["time", "model", "tokens"],
    ("tracehouse-overview", "Error rate over time"): ["time", "error_rate"],
    ("tracehouse-overview", "p95 latency by model"): ["time", "model", "p95_ms"],
    ("tracehouse-cost", "Total cost"): ["cost_usd"],
    ("tracehouse-cost", "Average cost per call"): ["avg_cost_usd"],
    ("tracehouse-cost", "Cache hit ratio"): ["cache_hit_ratio"],
    ("tracehouse-cost", "Cache savings"): ["cache_savings_usd"],
    ("tracehouse-cost", "Unpriced calls"): ["unpriced_calls"],
    ("tracehouse-cost", "Daily cost by feature"): ["time", "feature_name", "cost_usd"],
    ("tracehouse-cost", "Cost by provider and model"): ["time", "provider_model", "cost_usd"],
    ("tracehouse-cost", "Cost by token kind"): [
        "time",
        "input",
        "cache_read",
        "cache_write",
        "output",
        "reasoning",
        "audio",
    ],
    ("tracehouse-cost", "Cache hit ratio by model"): ["time", "model", "cache_hit_ratio"],
    ("tracehouse-cost", "Top users by spend"): [
        "user_id",
        "calls",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "unpriced_calls",
    ],
    ("tracehouse-cost", "Cost per call by model"): [
        "provider",
        "model",
        "priced_calls",
        "avg_cost_usd",
        "p95_cost_usd",
        "cost_usd",
    ],
    ("tracehouse-cost", "Unpriced models"): ["provider", "model", "unpriced", "calls_total", "first_day", "last_day"],
    ("tracehouse-cost", "Unpriced calls per day"): ["time", "model", "unpriced"],
    ("tracehouse-quality", "Error rate"): ["error_rate"],
    ("tracehouse-quality", "Refusal rate"): ["refusal_rate"],
    ("tracehouse-quality", "Latency p95"): ["p95_ms"],
    ("tracehouse-quality", "Time to first token p95"): ["ttft_p95_ms"],
    ("tracehouse-quality", "Latency by feature"): [
        "feature_name",
        "calls",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "ttft_p50_ms",
    ],
    ("tracehouse-quality", "Latency by model"): [
        "provider",
        "model",
        "calls",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "ttft_p50_ms",
    ],
    ("tracehouse-quality", "p95 latency by feature"): ["time", "feature_name", "p95_ms"],
    ("tracehouse-quality", "Errors by type"): ["error_kind", "errors"],
    ("tracehouse-quality", "Errors over time by type"): ["time", "error_kind", "errors"],
    ("tracehouse-quality", "Finish reasons"): ["reason", "calls"],
    ("tracehouse-quality", "Refusal rate over time"): ["time", "refusal_rate"],
    ("tracehouse-quality", "Slowest calls"): (
        CALL_ROW := [
            "ts",
            "trace_id",
            "span_id",
            "service",
            "feature",
            "provider",
            "model",
            "user_id",
            "latency_ms_total",
            "latency_ms_first_token",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "finish_reason",
            "error",
        ]
    ),
    ("tracehouse-quality", "Most expensive calls"): CALL_ROW,
    ("tracehouse-traces", "Traces"): ["time", "traces"],
    ("tracehouse-traces", "Recent traces"): [
        "start",
        "trace_id",
        "root_name",
        "service",
        "duration_ms",
        "span_count",
        "llm_call_count",
        "total_tokens",
        "cost_usd",
        "unpriced_calls",
        "has_error",
        "user_id",
        "feature",
    ],
    ("tracehouse-trace", "Trace"): [
        "duration_ms",
        "span_count",
        "llm_call_count",
        "total_tokens",
        "cost_usd",
        "errors",
    ],
    ("tracehouse-trace", "Spans"): (
        TRACE_VIEW := [
            "traceID",
            "spanID",
            "parentSpanID",
            "serviceName",
            "operationName",
            "startTime",
            "duration",
            "tags",
            "serviceTags",
            "statusCode",
            "statusMessage",
            "kind",
            "instrumentationLibraryName",
            "instrumentationLibraryVersion",
            "traceState",
        ]
    ),
    ("tracehouse-trace", "LLM calls: prompt, response, tokens and cost"): [
        "ts",
        "span_name",
        "provider",
        "model",
        "prompt_name",
        "prompt_version",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost_usd",
        "cost_source",
        "latency_ms_total",
        "latency_ms_first_token",
        "finish_reason",
        "error",
        "system_prompt",
        "prompt",
        "response",
        "tool_calls",
    ],
    ("tracehouse-prompts", "Prompt versions"): [
        "prompt_name",
        "prompt_version",
        "calls",
        "errors",
        "error_rate",
        "refusal_rate",
        "p50_ms",
        "p95_ms",
        "avg_prompt_tokens",
        "avg_completion_tokens",
        "avg_cost_usd",
        "total_cost_usd",
        "first_seen",
        "last_seen",
    ],
    ("tracehouse-prompts", "Calls by prompt version"): ["time", "prompt", "calls"],
    ("tracehouse-prompts", "Error rate by prompt version"): ["time", "prompt", "error_rate"],
    ("tracehouse-prompts", "p95 latency by prompt version"): ["time", "prompt", "p95_ms"],
    ("tracehouse-prompts", "Cost per call by prompt version"): ["time", "prompt", "avg_cost_usd"],
    ("tracehouse-prompts", "Version comparison"): [
        "prompt_name",
        "prompt_version_number",
        "prompt_version",
        "calls",
        "cost_per_call_usd",
        "p50_ms",
        "p95_ms",
        "error_rate",
        "refusal_rate",
        "mean_user_feedback",
        "rated",
        "first_call",
    ],
    ("tracehouse-feedback", "Feedback rate"): ["feedback_rate"],
    ("tracehouse-feedback", "Mean user score"): ["mean_user_score"],
    ("tracehouse-feedback", "Review queue"): ["queued"],
    ("tracehouse-feedback", "Flagged rate"): ["flagged_rate"],
    ("tracehouse-feedback", "Feedback rate over time"): ["time", "feedback_rate"],
    ("tracehouse-feedback", "Mean user score over time"): ["time", "mean_user_score"],
    ("tracehouse-feedback", "Mean user score by feature"): ["time", "feature_name", "mean_user_score"],
    ("tracehouse-feedback", "Mean user score by model"): ["time", "provider_model", "mean_user_score"],
    ("tracehouse-feedback", "Mean user score by prompt version"): ["time", "prompt", "mean_user_score"],
    ("tracehouse-feedback", "Feedback by feature"): ["feature_name", *FEEDBACK],
    ("tracehouse-feedback", "Feedback by model"): ["provider", "model", *FEEDBACK],
    ("tracehouse-feedback", "Feedback by prompt version"): ["prompt_name", "prompt_version", *FEEDBACK],
    ("tracehouse-feedback", "Worst-rated calls"): [
        "ts",
        "trace_id",
        "span_id",
        "service",
        "feature",
        "model",
        "prompt_name",
        "prompt_version",
        "user_id",
        "user_feedback",
        "scores",
        "review_state",
        "finish_reason",
        "error",
    ],
    ("tracehouse-feedback", "Review queue by reason"): ["reason", "pending"],
    ("tracehouse-feedback", "Flagged rate over time"): ["time", "flagged_rate", "rejected_rate"],
    ("tracehouse-feedback", "Calls by review state"): ["review_state", "calls"],
    ("tracehouse-feedback", "Recently flagged or rejected calls"): [
        "reviewed_at",
        "review_state",
        "reviewed_by",
        "review_reason",
        "ts",
        "trace_id",
        "span_id",
        "feature",
        "model",
        "user_feedback",
        "finish_reason",
        "error",
    ],
    (BATCH_UID, "Batches"): ["batches"],
    (BATCH_UID, "Requests"): ["requests"],
    (BATCH_UID, "Pending requests"): ["pending"],
    (BATCH_UID, "Succeeded requests"): ["succeeded"],
    (BATCH_UID, "Failed requests: provider / handler"): ["provider_failed", "handler_failed"],
    (BATCH_UID, "Expired / canceled"): ["expired", "canceled"],
    (BATCH_UID, "Cost saved"): ["saved_usd"],
    (BATCH_UID, "Submission to handled p50 / p95"): ["p50_s", "p95_s"],
    (BATCH_UID, "Request outcomes over time"): ["time", "outcome", "requests"],
    (BATCH_UID, "Batches by purpose and model"): [
        "purpose",
        "models",
        "batches",
        *BATCH_REQUESTS,
        "cost_usd",
        "saved_usd",
    ],
    (BATCH_UID, "Recent batches"): [
        "submitted",
        "batch_id",
        "service",
        "purpose",
        "provider",
        "models",
        *BATCH_REQUESTS,
        "cost_usd",
        "saved_usd",
        "trace_id",
    ],
    (BATCH_UID, "Failed requests"): [
        "collected_at",
        "batch_id",
        "purpose",
        "custom_id",
        "outcome",
        "model",
        "error_type",
        "error",
        "trace_id",
        "span_id",
    ],
    ("tracehouse-collector", "Ingest rate by service"): ["time", "service", "spans_per_s"],
    ("tracehouse-collector", "Freshness by service"): ["service", "spans", "newest_span", "lag_s"],
    ("tracehouse-collector", "Span end to insert lag"): ["time", "p50_s", "p95_s"],
    ("tracehouse-collector", "Pricing of LLM calls"): ["time", "cost_source", "calls"],
    ("tracehouse-collector", "Redactions by kind"): ["kind", "redactions"],
    ("tracehouse-collector", "Redactions over time"): ["time", "redactions"],
}

# Panels that add up calls, tokens or cost over days: they must read the daily rollup.
ROLLUP_PANELS = {
    ("tracehouse-overview", t)
    for t in (
        "Calls",
        "Cost",
        "Tokens",
        "Error rate",
        "Unpriced calls",
        "Cost by feature per day",
        "Tokens by model per day",
    )
} | {
    ("tracehouse-cost", t)
    for t in (
        "Total cost",
        "Average cost per call",
        "Cache hit ratio",
        "Cache savings",
        "Unpriced calls",
        "Daily cost by feature",
        "Cost by provider and model",
        "Cost by token kind",
        "Cache hit ratio by model",
        "Unpriced models",
        "Unpriced calls per day",
        "Cost per call by model",
    )
}

ONE_EACH = {
    "service": ["support-bot"],
    "feature": ["chat"],
    "provider": ["openai"],
    "model": ["gpt-4o-mini"],
    "user": ["u-alice"],
    "prompt": ["answer"],
    "search": "chat",
}
# The Batches dashboard's filters are the submissions' (the batch data set, below).
BATCH_ONE_EACH = {"service": ["support-bot"], "purpose": ["nightly-summaries"], "provider": ["openai"]}
BATCH_SEVERAL = {
    "service": ["support-bot", "eval-runner"],
    "purpose": ["evals", "nightly-summaries"],
    "provider": ["openai", "anthropic"],
}
SEVERAL = {
    "service": ["support-bot", "search-api"],
    "feature": ["chat", "summarize"],
    "provider": ["openai", "anthropic"],
    "user": ["u-alice", "u-bob"],
    "prompt": ["answer", "summarize-doc"],
}


def load_build():
    spec = importlib.util.spec_from_file_location("tracehouse_dashboards_build", DASHBOARD_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the store ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    collector, data = load(tmp_path_factory.mktemp("dashboards") / "data")
    yield data
    collector.kill()


# --- the batch data set (the Batches dashboard) -----------------------------------------------------
# Its own collector, so the numbers above stay as they are. Every span goes through the OTel SDK's OTLP
# exporter with the attribute contract of instrumentation/attributes.py (BATCH_*): a submission span per
# batch, an LLM span per collected request (operation request, its outcome) and, when the handler ran, a
# handler span under it (operation handle). Times are seconds before `now`. Batch prices (genai-prices,
# USD per million tokens, from 2026-10-14): gpt-4o-mini input 0.075, output 0.3 (live 0.15, 0.6);
# claude-sonnet-4-5 input 1.5, output 7.5 (live 3, 15).
#   A  support-bot  nightly-summaries  openai     gpt-4o-mini        4 requests, submitted 2400 s ago
#      (tracehouse.batch.submitted_at; its span started 2 s earlier, during the upload)
#      a0 handled         1000 in, 500 out:  0.000225 (live 0.00045), handled 600 s ago: 1800 s after submission
#      a1 handled         2000 in, 1000 out: 0.00045 (live 0.0009),   handled 570 s ago: 1830 s after submission
#      a2 handler_failed  1000 in, 500 out:  0.000225 (live 0.00045), 680 s ago the handler raises KeyError
#      a3 not collected: pending
#   B  eval-runner  evals  anthropic  claude-sonnet-4-5  3 requests, its span started 2102 s ago (no
#      submitted_at: that start is its submission time)
#      b0 handled         1000 in, 500 out:  0.00525 (live 0.0105),   handled 600 s ago: 1502 s after submission
#      b1 provider_failed 640 s ago (overloaded), b2 expired 630 s ago: no tokens
#   C  support-bot  nightly-summaries  openai  gpt-4o-mini  2 requests, submitted 1200 s ago, none collected
#   D  support-bot  nightly-summaries  submitted an hour before the time range starts, its one request
#      handled 500 s ago: outside every panel (a batch belongs to the range its submission is in)
#   and one live gpt-4o-mini call (no batch), in no panel either.
# In the range: 3 batches, 9 requests, 3 pending, 3 succeeded, 1 handler and 1 provider failure, 1 expired,
# cost 0.0009 + 0.00525 = 0.00615 and as much saved; submission to handled 1502, 1800, 1830 s: p50 1800,
# p95 1800 + 0.9 x 30 = 1827 (ClickHouse's quantile interpolates).
@dataclass(frozen=True)
class BatchRequest:
    custom_id: str
    outcome: str  # instrumentation/attributes.py BATCH_OUTCOMES
    collected_s_ago: int  # the LLM span's end (it starts at the submission); a handler span ends then too
    input_tokens: int | None = None
    output_tokens: int | None = None
    error_type: str = ""  # the provider's error type (error.type), or the handler's exception type
    error: str = ""  # the provider's error (status message), or the handler's exception message


@dataclass(frozen=True)
class Batch:
    batch_id: str
    service: str
    purpose: str
    provider: str
    model: str
    request_count: int
    submitted_s_ago: int
    requests: tuple[BatchRequest, ...]
    submitted_at_attribute: bool = True


def batch_jobs(range_start_s_ago: int) -> list[Batch]:
    return [
        Batch(
            "batch_sum_a", "support-bot", "nightly-summaries", "openai", "gpt-4o-mini", 4, 2400,
            (
                BatchRequest("a0", "handled", 600, 1000, 500),
                BatchRequest("a1", "handled", 570, 2000, 1000),
                BatchRequest("a2", "handler_failed", 680, 1000, 500, "KeyError", "'summary'"),
            ),
        ),
        Batch(
            "msgbatch_eval_b", "eval-runner", "evals", "anthropic", "claude-sonnet-4-5", 3, 2100,
            (
                BatchRequest("b0", "handled", 600, 1000, 500),
                BatchRequest("b1", "provider_failed", 640, error_type="overloaded_error", error="errored: Overloaded"),
                BatchRequest("b2", "expired", 630, error_type="expired", error="expired: request expired"),
            ),
            submitted_at_attribute=False,
        ),
        Batch("batch_sum_c", "support-bot", "nightly-summaries", "openai", "gpt-4o-mini", 2, 1200, ()),
        Batch(
            "batch_sum_d", "support-bot", "nightly-summaries", "openai", "gpt-4o-mini", 1, range_start_s_ago + 3600,
            (BatchRequest("d0", "handled", 500, 1000, 500),),
        ),
    ]  # fmt: skip


def _llm_attributes(batch: Batch, request: BatchRequest) -> dict:
    """The request's LLM span: OpenInference for OpenAI, OTel GenAI for Anthropic, as instrumentors write."""
    if batch.provider == "openai":
        attrs: dict = {"openinference.span.kind": "LLM", "llm.provider": "openai", "llm.model_name": batch.model}
        if request.input_tokens is not None:
            attrs["llm.token_count.prompt"] = request.input_tokens
            attrs["llm.token_count.completion"] = request.output_tokens
    else:
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": batch.model,
        }
        if request.input_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = request.input_tokens
            attrs["gen_ai.usage.output_tokens"] = request.output_tokens
    return attrs


def _send_batches(collector, now: int, range_start_s_ago: int) -> dict[str, tuple[str, str]]:
    """Every span of batch_jobs() (and a live call) through OTLP; custom_id or batch id -> (trace id, span id)."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    from tracehouse.instrumentation import attributes as batch_keys

    providers = {}

    def tracer(service: str):
        if service not in providers:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url, timeout=30)))
            providers[service] = provider
        return providers[service].get_tracer("tracehouse-tests")

    def ns(seconds_ago: float) -> int:
        return int((now - seconds_ago) * 1e9)

    def ids(span) -> tuple[str, str]:
        context = span.get_span_context()
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    sent: dict[str, tuple[str, str]] = {}
    for batch in batch_jobs(range_start_s_ago):
        common = {batch_keys.BATCH_ID: batch.batch_id, batch_keys.BATCH_PURPOSE: batch.purpose}
        submitted = now - batch.submitted_s_ago
        submit = tracer(batch.service).start_span(
            "batch submit",
            start_time=ns(batch.submitted_s_ago + 2),
            attributes={
                **common,
                batch_keys.BATCH_OPERATION: batch_keys.BATCH_OPERATION_SUBMIT,
                batch_keys.BATCH_PROVIDER: batch.provider,
                batch_keys.BATCH_REQUEST_COUNT: batch.request_count,
                batch_keys.BATCH_MODELS: (batch.model,),
                **({batch_keys.BATCH_SUBMITTED_AT: float(submitted)} if batch.submitted_at_attribute else {}),
            },
        )
        submit.end(end_time=ns(batch.submitted_s_ago - 1))
        sent[batch.batch_id] = ids(submit)
        for request in batch.requests:
            # As tracehouse.instrumentation.batch collects: the request's LLM span from the submission to
            # its outcome, the handler's span under it; a failure's type in error.type, its text in the status.
            attrs = {
                **_llm_attributes(batch, request),
                **common,
                batch_keys.BATCH_OPERATION: batch_keys.BATCH_OPERATION_REQUEST,
                batch_keys.BATCH_CUSTOM_ID: request.custom_id,
                batch_keys.BATCH_SUBMITTED_AT: float(submitted),
                batch_keys.BATCH_OUTCOME: request.outcome,
            }
            if request.outcome not in ("handled", "handler_failed"):
                attrs["error.type"] = request.error_type
            worker = tracer("batch-worker")
            llm = worker.start_span(
                f"batch request {request.custom_id}", start_time=ns(batch.submitted_s_ago), attributes=attrs
            )
            if request.outcome in ("handled", "handler_failed"):
                handler = worker.start_span(
                    "batch handle",
                    context=trace.set_span_in_context(llm),
                    start_time=ns(request.collected_s_ago + 5),
                    attributes={
                        **common,
                        batch_keys.BATCH_OPERATION: batch_keys.BATCH_OPERATION_HANDLE,
                        batch_keys.BATCH_CUSTOM_ID: request.custom_id,
                        batch_keys.BATCH_OUTCOME: request.outcome,
                    },
                )
                if request.outcome == "handler_failed":
                    described = f"{request.error_type}: {request.error}"
                    handler.add_event(
                        "exception", {"exception.type": request.error_type, "exception.message": request.error}
                    )
                    handler.set_status(Status(StatusCode.ERROR, described))
                    llm.set_attribute("error.type", request.error_type)
                    llm.set_status(Status(StatusCode.ERROR, f"handler failed: {described}"))
                handler.end(end_time=ns(request.collected_s_ago))
            else:
                llm.set_status(Status(StatusCode.ERROR, request.error))
            llm.end(end_time=ns(request.collected_s_ago))
            sent[request.custom_id] = ids(llm)
    live = tracer("support-bot").start_span(
        "ChatCompletion",
        start_time=ns(300),
        attributes={"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.token_count.prompt": 10},
    )
    live.end(end_time=ns(299))
    for provider in providers.values():
        provider.force_flush()
        provider.shutdown()
    return sent


@pytest.fixture(scope="module")
def batch_loaded(tmp_path_factory):
    """The batch data set in a collector of its own, as a test_dashboards_data.Loaded (ids by custom_id)."""
    collector = CollectorProcess(tmp_path_factory.mktemp("batches") / "data").start()
    try:
        store = Store(collector)
        _, (times,) = store.query("SELECT toUnixTimestamp(toStartOfDay(now())) AS today, toUnixTimestamp(now()) AS now")
        today_start, now = times["today"], times["now"]
        range_start_s_ago = now - (today_start - DAY_S - 3600)  # context(): the range starts there
        sent = _send_batches(collector, now, range_start_s_ago)
        wait_drained(collector.data_dir)
        yield Loaded(
            store, today_start, now, {k: t for k, (t, _) in sent.items()}, {k: s for k, (_, s) in sent.items()}
        )
    finally:
        collector.kill()


def data_for(request: pytest.FixtureRequest, uid: str):
    """The data set a dashboard's panels are checked on: the batch data for Batches, else the shared one."""
    return request.getfixturevalue("batch_loaded" if uid == BATCH_UID else "loaded")


def context(data, interval_ms: int = 3_600_000) -> gm.QueryContext:
    """From the day before yesterday's last hour to a minute from now: both days, whole."""
    return gm.QueryContext(
        datetime.fromtimestamp(data.today_start - DAY_S - 3600, UTC),
        datetime.fromtimestamp(data.now + 60, UTC),
        interval_ms,
    )


_VARIABLES: dict[tuple, dict[str, gm.Variable]] = {}


def variables(dashboard: dict, data, ctx: gm.QueryContext, selection: dict | None = None) -> dict[str, gm.Variable]:
    """The dashboard's variables as Grafana would set them: query variables get their options from
    their own queries (in order, so cascading filters apply), then the selection (default All)."""
    selection = selection or {}
    key = (id(data), dashboard["uid"], json.dumps(selection, sort_keys=True), ctx.from_ms, ctx.to_ms, ctx.interval_ms)
    if key not in _VARIABLES:
        _VARIABLES[key] = _variables(dashboard, data, ctx, selection)
    return _VARIABLES[key]


def _variables(dashboard: dict, data, ctx: gm.QueryContext, selection: dict) -> dict[str, gm.Variable]:
    found: dict[str, gm.Variable] = {}
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "query":
            _, rows = data.store.query(gm.expand(variable["query"]["rawSql"], found, ctx))
            options = [str(next(iter(row.values()))) for row in rows]
            value = selection.get(name, [gm.ALL])
            if value != [gm.ALL]:
                assert set(value) <= set(options), f"{name}: {value} not among the options {options}"
            found[name] = gm.Variable(name, value, options)
        elif variable["type"] == "textbox":
            default = data.trace_ids[0] if name == "trace_id" else ""
            found[name] = gm.Variable(name, selection.get(name, default))
    return found


def run(data, uid: str, title: str, selection: dict | None = None, ctx: gm.QueryContext | None = None):
    dashboard = BY_UID[uid]
    ctx = ctx or context(data)
    (panel,) = [p for p in all_panels(dashboard) if p["title"] == title]
    sql = gm.expand(panel["targets"][0]["rawSql"], variables(dashboard, data, ctx, selection), ctx)
    return data.store.query(sql)


def rows_of(data, uid: str, title: str, selection: dict | None = None) -> list[dict]:
    return run(data, uid, title, selection)[1]


# --- the expansion itself, against the plugin's documented examples ------------------------------

DOCS_RANGE = gm.QueryContext(
    datetime.fromtimestamp(1415792726.123, UTC), datetime.fromtimestamp(1447328726.456, UTC), interval_ms=20_000
)


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("$__timeFilter(log_time)", "log_time >= toDateTime(1415792726) AND log_time <= toDateTime(1447328726)"),
        (
            "$__timeFilter_ms(c)",
            "c >= fromUnixTimestamp64Milli(1415792726123) AND c <= fromUnixTimestamp64Milli(1447328726456)",
        ),
        ("$__dateFilter(day)", "day >= toDate('2014-11-12') AND day <= toDate('2015-11-12')"),
        (
            "$__dateTimeFilter(d, t)",
            "(d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')) AND "
            "(t >= toDateTime(1415792726) AND t <= toDateTime(1447328726))",
        ),
        (
            "$__dt(d,t)",
            "(d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')) AND "
            "(t >= toDateTime(1415792726) AND t <= toDateTime(1447328726))",
        ),
        ("($__fromTime, $__toTime)", "(toDateTime(1415792726), toDateTime(1447328726))"),
        ("($__fromTime_ms)", "(fromUnixTimestamp64Milli(1415792726123))"),
        ("($__toTime_ms)", "(fromUnixTimestamp64Milli(1447328726456))"),
        ("$__timeInterval(columnName)", "toStartOfInterval(toDateTime(columnName), INTERVAL 20 second)"),
        ("$__timeInterval_ms(c)", "toStartOfInterval(toDateTime64(c, 3), INTERVAL 20000 millisecond)"),
        ("INTERVAL $__interval_s second", "INTERVAL 20 second"),
    ],
)
def test_macros_expand_as_the_plugin_documents(sql, expanded):
    assert gm.expand(sql, {}, DOCS_RANGE) == expanded


def test_intervals_are_at_least_one_second_or_millisecond():
    tiny = gm.QueryContext(DOCS_RANGE.time_from, DOCS_RANGE.time_to, interval_ms=0)
    assert gm.expand("$__interval_s $__timeInterval(c)", {}, tiny) == (
        "1 toStartOfInterval(toDateTime(c), INTERVAL 1 second)"
    )
    assert gm.expand("$__timeInterval_ms(c)", {}, tiny).endswith("INTERVAL 1 millisecond)")


def test_conditional_all_keeps_the_condition_only_for_a_real_selection():
    sql = "WHERE $__conditionalAll(location IN (${loc:singlequote}), $loc) AND $__conditionalAll(f(a, b) = 1, $x)"
    picked = {
        "loc": gm.Variable("loc", ["Berlin", "Paris"], ["Berlin", "Paris", "Rome"]),
        "x": gm.Variable("x", [gm.ALL]),
    }
    assert gm.expand(sql, picked, DOCS_RANGE) == "WHERE location IN ('Berlin','Paris') AND 1=1"
    everything = {"loc": gm.Variable("loc", [gm.ALL], ["Berlin"]), "x": gm.Variable("x", "")}
    assert gm.expand(sql, everything, DOCS_RANGE) == "WHERE 1=1 AND 1=1"
    with pytest.raises(gm.ExpansionError):
        gm.expand("$__conditionalAll(a = 1, ${loc:singlequote})", picked, DOCS_RANGE)


def test_template_variables_in_the_plugins_quoting_style():
    variables = {
        "multi": gm.Variable("multi", ["a", "it's"]),
        "single": gm.Variable("single", "x"),
        "every": gm.Variable("every", [gm.ALL], ["p", "q"]),
        "custom": gm.Variable("custom", [gm.ALL], ["p"], all_value=".*"),
    }
    expand = lambda sql: gm.interpolate_variables(sql, variables, DOCS_RANGE)  # noqa: E731
    assert expand("$multi | ${multi} | [[multi]]") == "'a','it's' | 'a','it's' | 'a','it's'"  # plugin: no escaping
    assert expand("${multi:singlequote} ${multi:sqlstring}") == "'a','it\\'s' 'a','it''s'"
    assert expand("${multi:csv} ${multi:pipe} ${multi:queryparam}") == "a,it's a|it's var-multi=a&var-multi=it%27s"
    assert expand("$single ${single:singlequote}") == "x 'x'"
    assert expand("${every:singlequote} $every") == "'p','q' 'p','q'"
    assert expand("$custom ${custom:singlequote}") == ".* .*"  # a custom all value goes in as is
    assert expand("$__timeFilter(c) $unknown ${__from}") == "$__timeFilter(c) $unknown 1415792726123"
    with pytest.raises(gm.ExpansionError):
        gm.expand("SELECT $unknown", variables, DOCS_RANGE)
    with pytest.raises(gm.ExpansionError):
        gm.expand("$__timeFilterr(c)", {}, DOCS_RANGE)
    with pytest.raises(gm.ExpansionError):
        gm.expand("$__timeFilter(a, b)", {}, DOCS_RANGE)


def test_portability_flags_what_some_plugin_versions_expand_differently():
    assert gm.portability_problems("WHERE t >= $__fromTime AND x IN (1, 2)")  # ( after an argument-less macro
    assert gm.portability_problems("WHERE $__timeFilter(toDateTime(t))")  # nested parentheses
    assert gm.portability_problems("$__conditionalAll(x = '$' || '$$', $v)")
    assert gm.portability_problems("WHERE t >= toDate($__fromTime) AND x IN (1) AND $__timeFilter(t)") == []


# --- the JSON -------------------------------------------------------------------------------------


# The modules of dashboards/ that build no dashboard themselves.
DASHBOARD_HELPERS = {"__init__", "build", "panels", "queries"}


def import_build():
    return importlib.import_module("tracehouse.dashboards.build")


@pytest.mark.parametrize("get_build", [load_build, import_build], ids=["from its path", "from the package"])
def test_dashboards_are_what_build_py_writes(get_build):
    """build.py finds the dashboard modules whether it is loaded from its path (as `python
    dashboards/build.py` runs it) or imported from the installed package; either way every dashboard
    module has its JSON file, and renders it to the byte."""
    build = get_build()
    assert set(build.DASHBOARDS) == set(DASHBOARDS), "a dashboard JSON without a builder, or the reverse"
    modules = {path.stem for path in DASHBOARD_DIR.glob("*.py")} - DASHBOARD_HELPERS
    built_by = {builder.__module__.rpartition(".")[2] for builder in build.DASHBOARDS.values()}
    assert built_by == modules, "a dashboard module build.py does not list, or the reverse"
    for name in build.DASHBOARDS:
        assert (DASHBOARD_DIR / name).read_text() == build.render(name), f"run `python dashboards/build.py`: {name}"


def test_build_py_as_a_script_writes_every_dashboard(tmp_path):
    result = subprocess.run(
        [sys.executable, str(DASHBOARD_DIR / "build.py"), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    written = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert written == {name: (DASHBOARD_DIR / name).read_bytes() for name in DASHBOARDS}


def test_every_sql_panel_has_expected_columns_declared():
    declared = {(uid, title) for uid, title, _, _ in SQL_TARGETS}
    assert declared == set(EXPECTED_COLUMNS)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_is_well_formed(name):
    dashboard = DASHBOARDS[name]
    assert dashboard["uid"].startswith("tracehouse-") and dashboard["title"] and dashboard["description"]
    assert "tracehouse" in dashboard["tags"] and dashboard["time"]["from"].startswith("now-")
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    titles = [p["title"] for p in panels if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles repeat"
    boxes = []
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "hwxy") and grid["w"] > 0 and grid["h"] > 0
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        boxes.append((grid["x"], grid["y"], grid["x"] + grid["w"], grid["y"] + grid["h"], panel["title"]))
    for index, (x1, y1, x2, y2, title) in enumerate(boxes):
        for a1, b1, a2, b2, other in boxes[index + 1 :]:
            assert x2 <= a1 or a2 <= x1 or y2 <= b1 or b2 <= y1, f"{title!r} overlaps {other!r}"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        if panel["type"] in ("stat", "timeseries"):
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs))


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_datasource_reference_resolves(name):
    dashboard = DASHBOARDS[name]
    datasource_variables = {v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    assert datasource_variables.get("datasource") == CLICKHOUSE_PLUGIN

    def resolvable(ref: dict) -> bool:
        match = re.fullmatch(r"\$\{(\w+)\}", ref["uid"])
        return match is not None and datasource_variables.get(match.group(1)) == ref["type"]

    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert resolvable(panel["datasource"]), panel["title"]
        for target in panel["targets"]:
            assert resolvable(target["datasource"]), panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert resolvable(variable["datasource"]), variable["name"]
    for annotation in dashboard["annotations"]["list"]:
        # Grafana's own, or a query of the ClickHouse data source (the Prompts dashboard's version marks)
        if annotation.get("builtIn"):
            assert annotation["datasource"] == {"type": "grafana", "uid": "-- Grafana --"}
        else:
            assert resolvable(annotation["datasource"]) and resolvable(annotation["target"]["datasource"])


def _texts(dashboard: dict) -> list[tuple[str, str]]:
    """(kind, text) of everything Grafana interpolates: queries, variable queries, links."""
    found = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            found.append(("sql", target["rawSql"]) if "rawSql" in target else ("promql", target["expr"]))
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    found.extend(("link", link["url"]) for link in prop["value"])
        if "displayName" in panel.get("fieldConfig", {}).get("defaults", {}):
            found.append(("link", panel["fieldConfig"]["defaults"]["displayName"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(("sql", variable["query"]["rawSql"]))
    return found


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_the_queries_use_is_defined(name):
    dashboard = DASHBOARDS[name]
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    for kind, text in _texts(dashboard):
        for match in gm.VARIABLE.finditer(text):
            variable = match.group(1) or match.group(2) or match.group(4)
            if variable in defined or variable in GRAFANA_GLOBALS:
                continue
            if (
                kind == "sql"
                and variable.startswith("__")
                and (variable[2:] in gm.ARITY or variable == "__conditionalAll")
            ):
                continue
            if kind == "link" and variable in LINK_GLOBALS:
                continue
            raise AssertionError(f"{kind} uses undefined ${variable}: {text[:200]}")


@pytest.mark.parametrize(("uid", "title", "ref", "target"), SQL_TARGETS, ids=SQL_IDS)
def test_sql_query_follows_the_conventions(uid, title, ref, target):
    assert target["editorType"] == "sql" and target["pluginVersion"]
    assert (target["format"], target["queryType"]) in ((0, "timeSeries"), (1, "table"), (3, "traces"))
    sql = target["rawSql"]
    assert gm.portability_problems(sql) == []
    if uid == "tracehouse-trace":
        assert "${trace_id:singlequote}" in sql  # one trace, found through the trace id lookup
    else:
        assert any(macro in sql for macro in TIME_MACROS), "the time picker does not reach this query"
    # Filters disappear with All: every filter variable is used through $__conditionalAll.
    dashboard = BY_UID[uid]
    filters = [v["name"] for v in dashboard["templating"]["list"] if v.get("includeAll")]
    everything_all = {name: gm.Variable(name, [gm.ALL]) for name in filters}
    everything_all.update(
        {v["name"]: gm.Variable(v["name"], "") for v in dashboard["templating"]["list"] if v["type"] == "textbox"}
    )
    rest = gm.apply_conditional_all(sql, everything_all)
    for name in filters:
        assert f"${{{name}" not in rest and not re.search(rf"\${name}\b", rest), (
            f"${name} used outside $__conditionalAll"
        )
    if (uid, title) in ROLLUP_PANELS:
        assert "FROM llm_daily" in rest and "NOT (1=1)" in rest, "reads the spans instead of the daily rollup"


@pytest.mark.parametrize("uid", LLM_DASHBOARDS + ("tracehouse-traces",))
def test_llm_dashboards_filter_by_service_feature_provider_model_and_user(uid):
    found = {v["name"]: v for v in BY_UID[uid]["templating"]["list"]}
    for name in FILTER_VARIABLES:
        variable = found[name]
        assert variable["type"] == "query" and variable["multi"] and variable["includeAll"], name
        assert variable["current"]["value"] == ["$__all"]
        assert re.search(r"FROM (llm_daily|llm_calls|otel_traces)\b", variable["query"]["rawSql"]), name


# --- every query, on real data --------------------------------------------------------------------


def _check_shape(uid, title, target, columns, rows):
    names = [name for name, _ in columns]
    assert names == EXPECTED_COLUMNS[(uid, title)]
    if target["format"] == 0:
        assert columns[0] == ("time", "DateTime"), "a time series needs its DateTime `time` column first"
        assert any(re.match(r"(Nullable\()?(U?Int|Float|Decimal)", kind) for _, kind in columns[1:])


@pytest.mark.parametrize(("uid", "title", "ref", "target"), SQL_TARGETS, ids=SQL_IDS)
def test_panel_query_returns_its_columns_on_real_data(request, uid, title, ref, target):
    columns, rows = run(data_for(request, uid), uid, title)
    _check_shape(uid, title, target, columns, rows)
    assert rows, "no rows: every panel has data in this data set"


@pytest.mark.parametrize(
    ("selection", "batch_selection"),
    [(ONE_EACH, BATCH_ONE_EACH), (SEVERAL, BATCH_SEVERAL)],
    ids=["one-value-each", "several-values"],
)
def test_every_panel_query_runs_with_selected_values(request, selection, batch_selection):
    for uid, title, _, target in SQL_TARGETS:
        chosen = batch_selection if uid == BATCH_UID else selection
        columns, rows = run(data_for(request, uid), uid, title, chosen)
        _check_shape(uid, title, target, columns, rows)


def test_variables_list_what_the_data_has(loaded):
    ctx = context(loaded)
    found = variables(BY_UID["tracehouse-prompts"], loaded, ctx)
    assert found["service"].options == ["search-api", "support-bot"]
    assert found["feature"].options == ["chat", "search", "summarize"]
    assert found["provider"].options == ["anthropic", "openai"]
    assert found["model"].options == ["claude-3-5-sonnet", "gpt-4o-mini", "mystery-model"]
    assert found["user"].options == ["u-bob", "u-carol", "u-alice"]  # busiest first
    assert found["prompt"].options == ["answer", "summarize-doc"]
    # Cascading: the feature list follows the service filter.
    narrowed = variables(BY_UID["tracehouse-cost"], loaded, ctx, {"service": ["search-api"]})
    assert narrowed["feature"].options == ["search"] and narrowed["model"].options == ["mystery-model"]


# --- exact numbers --------------------------------------------------------------------------------


def one(data, uid, title, selection=None) -> dict:
    (row,) = rows_of(data, uid, title, selection)
    return row


def test_overview_totals(loaded):
    assert one(loaded, "tracehouse-overview", "Calls") == {"calls": 64}
    # The same expanded SQL through `tracehouse sql`, the command line users run.
    ctx = context(loaded)
    (panel,) = [p for p in BY_UID["tracehouse-overview"]["panels"] if p["title"] == "Calls"]
    sql = gm.expand(panel["targets"][0]["rawSql"], variables(BY_UID["tracehouse-overview"], loaded, ctx), ctx)
    assert [int(r["calls"]) for r in sql_rows(loaded.store.collector.data_dir, sql)] == [64]
    assert one(loaded, "tracehouse-overview", "Cost")["cost_usd"] == pytest.approx(0.405954, abs=1e-12)
    assert one(loaded, "tracehouse-overview", "Tokens") == {"input_tokens": 57400, "output_tokens": 26780}
    assert one(loaded, "tracehouse-overview", "Error rate") == {"error_rate": 4 / 64}
    assert one(loaded, "tracehouse-overview", "Unpriced calls") == {"unpriced_calls": 24}
    assert one(loaded, "tracehouse-overview", "Active users") == {"active_users": 3}
    # 24 x 500 ms, 30 x 1000 ms, 10 x 2000 ms
    assert one(loaded, "tracehouse-overview", "Latency p50 / p95 / p99") == {
        "p50_ms": 1000,
        "p95_ms": 2000,
        "p99_ms": 2000,
    }
    # 17 x 150 ms (OpenInference first-token events), 19 x 250 ms (gen_ai.response.time_to_first_chunk)
    assert one(loaded, "tracehouse-overview", "Time to first token p50 / p95") == {
        "ttft_p50_ms": 250,
        "ttft_p95_ms": 250,
    }


def test_the_user_filter_reads_that_users_spans(loaded):
    """The rollup has no user column; with a user selected the same panels add up the user's spans."""
    alice = {"user": ["u-alice"]}
    assert one(loaded, "tracehouse-overview", "Calls", alice) == {"calls": 10}
    # yesterday 5 x 0.00045; today 2 cached x 0.00042 + 0.00045 + one refusal 0.000162 (+ one error)
    assert one(loaded, "tracehouse-cost", "Total cost", alice)["cost_usd"] == pytest.approx(0.003702, abs=1e-12)
    both = {"user": ["u-alice", "u-bob"]}
    assert one(loaded, "tracehouse-overview", "Calls", both) == {"calls": 44}
    assert one(loaded, "tracehouse-overview", "Unpriced calls", both) == {"unpriced_calls": 24}
    assert one(loaded, "tracehouse-cost", "Total cost", both)["cost_usd"] == pytest.approx(0.006954, abs=1e-12)
    # Other filters keep reading the rollup.
    assert one(loaded, "tracehouse-overview", "Calls", {"service": ["search-api"]}) == {"calls": 24}
    assert one(loaded, "tracehouse-overview", "Calls", {"feature": ["summarize"], "model": ["claude-3-5-sonnet"]}) == {
        "calls": 20
    }


def test_cost_panels(loaded):
    yesterday = datetime.fromtimestamp(loaded.today_start - DAY_S, UTC).strftime("%Y-%m-%d 00:00:00")
    today = datetime.fromtimestamp(loaded.today_start, UTC).strftime("%Y-%m-%d 00:00:00")
    by_feature = {
        (r["time"], r["feature_name"]): r["cost_usd"]
        for r in rows_of(loaded, "tracehouse-cost", "Daily cost by feature")
    }
    assert by_feature == pytest.approx(
        {
            (yesterday, "chat"): 0.00405,
            (yesterday, "summarize"): 0.21,
            (yesterday, "search"): 0.0,
            (today, "chat"): 0.002904,
            (today, "summarize"): 0.189,
            (today, "search"): 0.0,
        },
        abs=1e-12,
    )
    users = [
        (r["user_id"], r["calls"], r["cost_usd"], r["unpriced_calls"])
        for r in rows_of(loaded, "tracehouse-cost", "Top users by spend")
    ]
    assert users == [
        ("u-carol", 20, pytest.approx(0.399, abs=1e-12), 0),
        ("u-alice", 10, pytest.approx(0.003702, abs=1e-12), 0),
        ("u-bob", 34, pytest.approx(0.003252, abs=1e-12), 24),
    ]
    per_model = {r["model"]: r for r in rows_of(loaded, "tracehouse-cost", "Cost per call by model")}
    assert set(per_model) == {"gpt-4o-mini", "claude-3-5-sonnet"}  # the unpriced model has no cost
    assert per_model["gpt-4o-mini"]["priced_calls"] == 20
    assert per_model["gpt-4o-mini"]["avg_cost_usd"] == pytest.approx(0.006954 / 20)
    assert per_model["gpt-4o-mini"]["p95_cost_usd"] == pytest.approx(0.00045)
    assert per_model["claude-3-5-sonnet"]["avg_cost_usd"] == pytest.approx(0.399 / 20)
    assert one(loaded, "tracehouse-cost", "Cache hit ratio")["cache_hit_ratio"] == pytest.approx(1600 / 57400)
    # 1600 cached gpt-4o-mini tokens at 0.15 instead of 0.075 per million
    assert one(loaded, "tracehouse-cost", "Cache savings")["cache_savings_usd"] == pytest.approx(0.00012, abs=1e-12)
    assert one(loaded, "tracehouse-cost", "Average cost per call")["avg_cost_usd"] == pytest.approx(0.405954 / 40)
    (unpriced,) = rows_of(loaded, "tracehouse-cost", "Unpriced models")
    assert (unpriced["provider"], unpriced["model"], unpriced["unpriced"], unpriced["calls_total"]) == (
        "openai",
        "mystery-model",
        24,
        24,
    )
    kinds = rows_of(loaded, "tracehouse-cost", "Cost by token kind")
    assert sum(r["cache_read"] for r in kinds) == pytest.approx(1600 * 0.075 / 1e6)
    assert sum(
        sum(r[k] for k in ("input", "cache_read", "cache_write", "output", "reasoning", "audio")) for r in kinds
    ) == (pytest.approx(0.405954))


def test_latency_and_quality_panels(loaded):
    assert one(loaded, "tracehouse-quality", "Error rate") == {"error_rate": 4 / 64}
    assert one(loaded, "tracehouse-quality", "Refusal rate") == {"refusal_rate": 2 / 64}
    errors = {r["error_kind"]: r["errors"] for r in rows_of(loaded, "tracehouse-quality", "Errors by type")}
    assert errors == {"RateLimitError": 2, "APITimeoutError": 2}
    reasons = {r["reason"]: r["calls"] for r in rows_of(loaded, "tracehouse-quality", "Finish reasons")}
    assert reasons == {"stop": 58, "content_filter": 2, "(none)": 4}
    latency = {r["feature_name"]: r for r in rows_of(loaded, "tracehouse-quality", "Latency by feature")}
    assert (latency["summarize"]["calls"], latency["summarize"]["p50_ms"], latency["summarize"]["p95_ms"]) == (
        20,
        1500,
        2000,
    )
    assert (latency["chat"]["p95_ms"], latency["chat"]["ttft_p50_ms"]) == (1000, 150)
    assert (latency["search"]["p95_ms"], latency["search"]["ttft_p50_ms"]) == (500, None)
    slowest = rows_of(loaded, "tracehouse-quality", "Slowest calls")
    assert len(slowest) == 20 and slowest[0]["latency_ms_total"] == 2000 and slowest[0]["feature"] == "summarize"
    priciest = rows_of(loaded, "tracehouse-quality", "Most expensive calls")
    assert priciest[0]["cost_usd"] == pytest.approx(0.021) and priciest[0]["model"] == "claude-3-5-sonnet"
    assert set(priciest[0]["trace_id"]) <= set("0123456789abcdef") and len(priciest[0]["trace_id"]) == 32


def test_prompt_versions(loaded):
    rows = {
        (r["prompt_name"], r["prompt_version"]): r for r in rows_of(loaded, "tracehouse-prompts", "Prompt versions")
    }
    assert set(rows) == {("answer", "v1"), ("answer", "v2"), ("summarize-doc", "")}
    v1, v2 = rows[("answer", "v1")], rows[("answer", "v2")]
    assert (v1["calls"], v1["errors"], v1["refusal_rate"]) == (15, 1, 0)
    assert (v2["calls"], v2["errors"], v2["refusal_rate"]) == (5, 2, 0.4)
    # v1: 9 x 0.00045 yesterday, today 4 cached x 0.00042 + 0.00045
    assert v1["total_cost_usd"] == pytest.approx(0.00405 + 0.00168 + 0.00045)
    assert rows[("summarize-doc", "")]["calls"] == 20
    only_answer = rows_of(loaded, "tracehouse-prompts", "Prompt versions", {"prompt": ["answer"]})
    assert {r["prompt_name"] for r in only_answer} == {"answer"}


def test_prompt_version_comparison_and_first_appearance_annotations(loaded):
    """The registry numbers answer's versions by first appearance (v1 yesterday, v2 today); summarize-doc's
    calls carry a name but neither version nor template: nothing to register, no number. User feedback as in
    test_feedback_panels: v1 rated 3 of 4 yesterday and 4 of 5 today, v2 0.5 of 5."""
    rows = rows_of(loaded, "tracehouse-prompts", "Version comparison", {"prompt": ["answer"]})
    assert [(r["prompt_name"], r["prompt_version_number"], r["prompt_version"]) for r in rows] == [
        ("answer", 1, "v1"),
        ("answer", 2, "v2"),
    ]
    v1, v2 = rows
    assert (v1["calls"], v1["rated"], v1["mean_user_feedback"]) == (15, 9, pytest.approx(7 / 9))
    assert (v2["calls"], v2["error_rate"], v2["refusal_rate"]) == (5, 0.4, 0.4)
    assert v2["mean_user_feedback"] == pytest.approx(0.1)
    every = rows_of(loaded, "tracehouse-prompts", "Version comparison")
    assert [(r["prompt_name"], r["prompt_version_number"]) for r in every] == [
        ("answer", 1),
        ("answer", 2),
        ("summarize-doc", None),
    ]

    dashboard = BY_UID["tracehouse-prompts"]
    (marks,) = [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]
    assert marks["enable"] and gm.portability_problems(marks["target"]["rawSql"]) == []
    ctx = context(loaded)

    def annotations(selection: dict | None = None) -> list[dict]:
        found = variables(dashboard, loaded, ctx, selection)
        return loaded.store.query(gm.expand(marks["target"]["rawSql"], found, ctx))[1]

    shown = annotations({"prompt": ["answer"]})
    assert [(r["text"], r["tags"]) for r in shown] == [
        ("answer v1 (v1, observed)", "answer"),
        ("answer v2 (v2, observed)", "answer"),
    ]
    assert shown[0]["time"] < shown[1]["time"]
    assert {r["tags"] for r in annotations()} == {"answer"}


def test_feedback_panels(loaded):
    """User scores (test_dashboards_data.USER_FEEDBACK): yesterday chat 0-3 thumbs 1,1,1,0; today chat 0-9
    thumbs 1,1,0,1,1,0,0,0 then 0.5, 0 (v1 is 0-4: 4 of 5, v2 is 5-9: 0.5 of 5); today summarize 0-9 rated
    1,1,1,0.5 then six 0 (3.5); today search 0-4 scored 1 as whole traces. 29 of 64 calls rated, sum 16. The
    older thumbs down on today's chat 0 and the evaluator's score on today's search 5 are no user feedback."""
    day = context(loaded, interval_ms=86_400_000)  # one point per day
    yesterday = datetime.fromtimestamp(loaded.today_start - DAY_S, UTC).strftime("%Y-%m-%d 00:00:00")
    today = datetime.fromtimestamp(loaded.today_start, UTC).strftime("%Y-%m-%d 00:00:00")
    uid = "tracehouse-feedback"
    assert one(loaded, uid, "Feedback rate") == {"feedback_rate": pytest.approx(29 / 64)}
    assert one(loaded, uid, "Mean user score") == {"mean_user_score": pytest.approx(16 / 29)}
    # u-alice: the even chat calls; yesterday 0 and 2 (1, 1), today 0, 2, 4, 6, 8 (1, 0, 1, 0, 0.5)
    alice = {"user": ["u-alice"]}
    assert one(loaded, uid, "Feedback rate", alice) == {"feedback_rate": pytest.approx(7 / 10)}
    assert one(loaded, uid, "Mean user score", alice) == {"mean_user_score": pytest.approx(4.5 / 7)}
    _, over_time = run(loaded, uid, "Mean user score over time", ctx=day)
    assert [(r["time"], r["mean_user_score"]) for r in over_time] == [
        (yesterday, pytest.approx(3 / 4)),
        (today, pytest.approx(13 / 25)),
    ]
    _, rate = run(loaded, uid, "Feedback rate over time", ctx=day)
    assert [(r["time"], r["feedback_rate"]) for r in rate] == [(yesterday, 4 / 32), (today, 25 / 32)]
    _, by_feature_per_day = run(loaded, uid, "Mean user score by feature", ctx=day)
    assert {(r["time"], r["feature_name"]): r["mean_user_score"] for r in by_feature_per_day} == pytest.approx(
        {(yesterday, "chat"): 0.75, (today, "chat"): 0.45, (today, "summarize"): 0.35, (today, "search"): 1.0}
    )
    _, by_prompt_per_day = run(loaded, uid, "Mean user score by prompt version", ctx=day)
    assert {(r["time"], r["prompt"]): r["mean_user_score"] for r in by_prompt_per_day} == pytest.approx(
        {
            (yesterday, "answer v1"): 0.75,
            (today, "answer v1"): 0.8,
            (today, "answer v2"): 0.1,
            (today, "summarize-doc (no version)"): 0.35,
        }
    )

    def table_of(title: str, *labels: str) -> dict:
        return {tuple(r[label] for label in labels): tuple(r[k] for k in FEEDBACK) for r in rows_of(loaded, uid, title)}

    # (calls, rated, feedback rate, mean, scores at or below 0.5), lowest mean first
    chat = (20, 14, 0.7, pytest.approx(7.5 / 14), 7)
    summarize = (20, 10, 0.5, pytest.approx(0.35), 7)
    search = (24, 5, 5 / 24, 1.0, 0)
    by_feature = table_of("Feedback by feature", "feature_name")
    assert by_feature == {("chat",): chat, ("summarize",): summarize, ("search",): search}
    assert list(by_feature) == [("summarize",), ("chat",), ("search",)]
    assert table_of("Feedback by model", "provider", "model") == {
        ("openai", "gpt-4o-mini"): chat,
        ("anthropic", "claude-3-5-sonnet"): summarize,
        ("openai", "mystery-model"): search,
    }
    assert table_of("Feedback by prompt version", "prompt_name", "prompt_version") == {
        ("answer", "v1"): (15, 9, 0.6, pytest.approx(7 / 9), 2),
        ("answer", "v2"): (5, 5, 1.0, pytest.approx(0.1), 5),
        ("summarize-doc", ""): summarize,
    }

    worst = rows_of(loaded, uid, "Worst-rated calls")
    assert [r["user_feedback"] for r in worst] == [0] * 12 + [0.5] * 2 + [1] * 6
    assert [r["ts"] for r in worst[:12]] == sorted((r["ts"] for r in worst[:12]), reverse=True)
    (yesterdays_zero,) = [r for r in worst if r["ts"] < today]
    index = call_index("yesterday", "chat", 3)
    assert yesterdays_zero["trace_id"] == loaded.trace_ids[index]
    assert yesterdays_zero["span_id"] == loaded.span_ids[index]
    assert yesterdays_zero["scores"] == {"thumbs": 0} and yesterdays_zero["review_state"] == "flagged"


def test_review_panels(loaded):
    """Reviews (test_dashboards_data.REVIEWS): approved today's chat 0 and 1 (flagged first), summarize 0 and
    search 0; flagged yesterday's chat 3 and today's chat 9; rejected today's chat 6; today's chat 2 flagged
    then reopened. 7 reviewed calls, 57 pending."""
    day = context(loaded, interval_ms=86_400_000)  # one point per day
    yesterday = datetime.fromtimestamp(loaded.today_start - DAY_S, UTC).strftime("%Y-%m-%d 00:00:00")
    today = datetime.fromtimestamp(loaded.today_start, UTC).strftime("%Y-%m-%d 00:00:00")
    uid = "tracehouse-feedback"
    states = {r["review_state"]: r["calls"] for r in rows_of(loaded, uid, "Calls by review state")}
    assert states == {"pending": 57, "approved": 4, "flagged": 2, "rejected": 1}
    assert one(loaded, uid, "Flagged rate") == {"flagged_rate": pytest.approx(2 / 7)}
    _, rates = run(loaded, uid, "Flagged rate over time", ctx=day)
    assert [(r["time"], r["flagged_rate"], r["rejected_rate"]) for r in rates] == [
        (yesterday, 1.0, 0.0),
        (today, pytest.approx(1 / 6), pytest.approx(1 / 6)),
    ]
    # Pending, by the queue's first rule: errors yesterday's chat 9, today's chat 8 and summarize 9; the refusal
    # today's chat 7 (chat 6, also a refusal, is rejected); low scores today's chat 2 (reopened) and 5, summarize
    # 3-8; no cost outlier (no call costs 3x its model's median); 45 pending calls no rule picks.
    queue = [(r["reason"], r["pending"]) for r in rows_of(loaded, uid, "Review queue by reason")]
    assert queue == [
        ("error", 3),
        ("refusal", 1),
        ("low score", 8),
        ("cost outlier", 0),
        ("no rule (random share)", 45),
    ]
    assert one(loaded, uid, "Review queue") == {"queued": 12}
    recent = rows_of(loaded, uid, "Recently flagged or rejected calls")
    assert [(r["review_state"], r["reviewed_by"], r["span_id"]) for r in recent] == [
        ("flagged", "kim", loaded.span_ids[call_index("today", "chat", 9)]),
        ("rejected", "lee", loaded.span_ids[call_index("today", "chat", 6)]),
        ("flagged", "lee", loaded.span_ids[call_index("yesterday", "chat", 3)]),
    ]
    assert recent[0]["review_reason"] == "timeout shown to the user" and recent[0]["error"]
    # The reason named an e-mail address: the redaction stage replaced it before it was stored.
    assert recent[1]["review_reason"].startswith("refused a fair question from") and EMAIL not in str(recent)


@pytest.mark.parametrize("variant", ["as-loaded", "with-a-cost-outlier", "past-the-median-sample"])
def test_review_queue_panel_applies_the_rules_of_review_list_queue(loaded, variant):
    """The panel is SQL of its own: it must count what `tracehouse review list --queue` would pick. The data has
    no cost outlier, so a second run reads the view with one pending call that no earlier rule picks made to cost
    100x as much (in both queries): that call, and only it, is a cost outlier in both. A third reads every call
    400 times over as one model, a fifth of the copies within 0.05% of 3x the median: more pending calls than `median`
    samples (8,192), where a sampled median would differ between the panel's aggregate and the CLI's window."""
    from tracehouse.collector import review_cli

    feedback = importlib.import_module("tracehouse.dashboards.feedback")
    assert (feedback.LOW_SCORE, feedback.COST_OUTLIER_FACTOR) == (
        review_cli.DEFAULT_LOW_SCORE,
        review_cli.COST_OUTLIER_FACTOR,
    )
    ctx = context(loaded)
    window = [f"ts >= toDateTime({ctx.from_s})", f"ts <= toDateTime({ctx.to_s})"]
    queue = review_cli.queue_sql(window, review_cli.DEFAULT_LOW_SCORE)
    dashboard = BY_UID["tracehouse-feedback"]
    (panel_target,) = [p for p in all_panels(dashboard) if p["title"] == "Review queue by reason"]
    (stat_target,) = [p for p in all_panels(dashboard) if p["title"] == "Review queue"]
    found = variables(dashboard, loaded, ctx)
    panel_sql = gm.expand(panel_target["targets"][0]["rawSql"], found, ctx)
    stat_sql = gm.expand(stat_target["targets"][0]["rawSql"], found, ctx)
    outlier = variant == "with-a-cost-outlier"
    if variant == "past-the-median-sample":
        # One model, every pending call 400 times over: four fifths at costs spread over [0.001, 0.002), a fifth
        # within 0.05% of 3x the exact median (the median is that of the spread ones: the fifth is above them all).
        def copies(near: str) -> str:
            spread = "0.001 * (1 + ((copy * 7919 + cityHash64(id)) % 10007) / 10007)"
            return (
                f"(SELECT * REPLACE ('synthetic' AS model, if(copy % 5 = 0, {near}, {spread}) AS cost_usd)"
                " FROM llm_calls_scored ARRAY JOIN range(400) AS copy)"
            )

        placed = queue.replace("FROM llm_calls_scored", f"FROM {copies('1.0')}")
        (median,) = [row["m"] for row in loaded.store.query(f"SELECT any(model_median_cost) AS m FROM ({placed})")[1]]
        near = f"{3 * median!r} * (1 + ((copy * 31) % 201 - 100) / 200000)"
        queue, panel_sql, stat_sql = (
            text.replace("FROM llm_calls_scored", f"FROM {copies(near)}") for text in (queue, panel_sql, stat_sql)
        )
    if outlier:
        unpicked = loaded.store.query(
            f"SELECT span_id FROM ({queue}) WHERE why = '' AND cost_usd > 0 ORDER BY ts, span_id LIMIT 1"
        )[1]
        (picked,) = [row["span_id"] for row in unpicked]
        costlier = (
            f"(SELECT * REPLACE (if(id = '{picked}', cost_usd * 100, cost_usd) AS cost_usd) FROM llm_calls_scored)"
        )
        assert queue.count("FROM llm_calls_scored") == panel_sql.count("FROM llm_calls_scored") == 1
        queue, panel_sql, stat_sql = (
            text.replace("FROM llm_calls_scored", f"FROM {costlier}") for text in (queue, panel_sql, stat_sql)
        )
    by_rule = {
        r["why"]: r["calls"] for r in loaded.store.query(f"SELECT why, count() AS calls FROM ({queue}) GROUP BY why")[1]
    }
    panel = {r["reason"]: r["pending"] for r in loaded.store.query(panel_sql)[1]}
    assert {reason: panel[reason] for reason in feedback.QUEUE_REASONS if panel[reason]} == {
        why: calls for why, calls in by_rule.items() if why
    }
    assert panel[feedback.NO_RULE] == by_rule[""]
    if variant == "past-the-median-sample":
        largest = loaded.store.query(
            f"SELECT max(calls) AS calls FROM (SELECT count() AS calls FROM ({queue}) GROUP BY model)"
        )
        assert largest[1][0]["calls"] > 8192 and panel["cost outlier"] > 0
    else:
        assert panel["cost outlier"] == (1 if outlier else 0)
    assert loaded.store.query(stat_sql)[1] == [{"queued": sum(calls for why, calls in by_rule.items() if why)}]
    if outlier:
        outliers = loaded.store.query(f"SELECT span_id FROM ({queue}) WHERE why = 'cost outlier'")[1]
        assert outliers == [{"span_id": picked}]


def test_traces_table_and_trace_detail(loaded):
    rows = rows_of(loaded, "tracehouse-traces", "Recent traces")
    assert len(rows) == 64
    assert all(r["span_count"] == 2 and r["llm_call_count"] == 1 for r in rows)
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(0.405954)
    assert sum(r["has_error"] for r in rows) == 4 and sum(r["unpriced_calls"] for r in rows) == 24
    assert [r["start"] for r in rows] == sorted((r["start"] for r in rows), reverse=True)
    assert len(rows_of(loaded, "tracehouse-traces", "Recent traces", {"search": "SUMMARIZE"})) == 20
    trace_id = loaded.trace_ids[0]
    (found,) = rows_of(loaded, "tracehouse-traces", "Recent traces", {"search": trace_id})
    assert found["trace_id"] == trace_id and found["root_name"] == "chat request"
    assert len(rows_of(loaded, "tracehouse-traces", "Recent traces", {"model": ["mystery-model"]})) == 24

    # Today's first chat call: the prompt had an e-mail address, which the redaction stage replaced.
    index = next(i for i, c in enumerate(calls()) if c.day == "today" and c.feature == "chat")
    selection = {"trace_id": loaded.trace_ids[index]}
    summary = one(loaded, "tracehouse-trace", "Trace", selection)
    assert (summary["duration_ms"], summary["span_count"], summary["llm_call_count"], summary["total_tokens"]) == (
        1002,
        2,
        1,
        1500,
    )
    assert summary["cost_usd"] == pytest.approx(0.00042)
    spans = rows_of(loaded, "tracehouse-trace", "Spans", selection)
    assert {s["operationName"] for s in spans} == {"chat request", "ChatCompletion"}
    (llm,) = [s for s in spans if s["operationName"] == "ChatCompletion"]
    tags = {t["key"]: t["value"] for t in llm["tags"]}
    assert (tags["llm.model"], tags["llm.input_tokens"], tags["llm.cached_tokens"]) == ("gpt-4o-mini", "1000", "400")
    assert (
        llm["duration"] == 1000
        and llm["parentSpanID"] != ""
        and {"key": "service.name", "value": "support-bot"} in llm["serviceTags"]
    )
    (call,) = rows_of(loaded, "tracehouse-trace", "LLM calls: prompt, response, tokens and cost", selection)
    assert (call["model"], call["prompt_tokens"], call["cached_tokens"], call["prompt_name"]) == (
        "gpt-4o-mini",
        1000,
        400,
        "answer",
    )
    assert (
        call["cost_usd"] == pytest.approx(0.00042)
        and "Mail the answer" in call["prompt"]
        and EMAIL not in call["prompt"]
    )


# --- panels rewritten for speed (issue 19) give the answers of the SQL they replaced ----------------

# The overview's percentile panels as they were: quantile(level) each, over the llm_calls view.
OLD_PERCENTILES = {
    "Latency p50 / p95 / p99": "SELECT\n  quantile(0.5)(latency_ms_total) AS p50_ms,\n"
    "  quantile(0.95)(latency_ms_total) AS p95_ms,\n  quantile(0.99)(latency_ms_total) AS p99_ms\n"
    "FROM llm_calls\nWHERE $__timeFilter(ts)",
    "Time to first token p50 / p95": "SELECT\n  quantile(0.5)(latency_ms_first_token) AS ttft_p50_ms,\n"
    "  quantile(0.95)(latency_ms_first_token) AS ttft_p95_ms\n"
    "FROM llm_calls\nWHERE $__timeFilter(ts) AND latency_ms_first_token IS NOT NULL",
}
OLD_CALLS_FILTERS = (
    "\n  AND $__conditionalAll(service IN (${service:singlequote}), $service)"
    "\n  AND $__conditionalAll(feature IN (${feature:singlequote}), $feature)"
    "\n  AND $__conditionalAll(provider IN (${provider:singlequote}), $provider)"
    "\n  AND $__conditionalAll(model IN (${model:singlequote}), $model)"
    "\n  AND $__conditionalAll(user_id IN (${user:singlequote}), $user)"
)


def test_the_spans_panels_read_as_calls_are_the_llm_calls_views():
    from tracehouse.dashboards.queries import LLM_CALL

    view = (REPO / "schema/views/llm_calls.sql").read_text()
    assert f"WHERE {LLM_CALL[1:-1]};" in view  # the view's condition, word for word


@pytest.mark.parametrize("selection", [None, ONE_EACH, SEVERAL, {"model": ["mystery-model"]}])
@pytest.mark.parametrize("title", sorted(OLD_PERCENTILES))
def test_overview_percentiles_are_those_of_the_llm_calls_view(loaded, title, selection):
    """The panel reads otel_traces with one quantiles() state; its answer is the old panel's (the data has
    fewer values than the sampler keeps, so both are exact)."""
    dashboard, ctx = BY_UID["tracehouse-overview"], context(loaded)
    found = variables(dashboard, loaded, ctx, selection)
    old = loaded.store.query(gm.expand(OLD_PERCENTILES[title] + OLD_CALLS_FILTERS, found, ctx))
    new = run(loaded, "tracehouse-overview", title, selection)
    assert [name for name, _ in new[0]] == [name for name, _ in old[0]]
    assert new[1] == old[1]
    if selection is None:
        assert any(value for value in new[1][0].values())  # real numbers, not an empty range


# The feedback panels that count rated calls, as they were: over llm_calls_scored and its joins.
OLD_FEEDBACK = {
    "Feedback rate": "SELECT countIf(user_feedback IS NOT NULL) / greatest(count(), 1) AS feedback_rate\n"
    "FROM llm_calls_scored\nWHERE $__timeFilter(ts)" + OLD_CALLS_FILTERS,
    "Feedback rate over time": "SELECT $__timeInterval(ts) AS time, countIf(user_feedback IS NOT NULL) / count()"
    " AS feedback_rate\nFROM llm_calls_scored\nWHERE $__timeFilter(ts)"
    + OLD_CALLS_FILTERS
    + "\nGROUP BY time\nORDER BY time",
}


@pytest.mark.parametrize("selection", [None, ONE_EACH, SEVERAL, {"user": ["u-alice"]}])
@pytest.mark.parametrize("title", sorted(OLD_FEEDBACK))
def test_feedback_rates_are_those_of_the_scored_view(loaded, title, selection):
    """A call has user feedback exactly when a user score of its tenant and trace exists: the panels count
    those on llm_calls, without the view's joins, and give the old panels' answers."""
    dashboard, ctx = BY_UID["tracehouse-feedback"], context(loaded)
    found = variables(dashboard, loaded, ctx, selection)
    old = loaded.store.query(gm.expand(OLD_FEEDBACK[title], found, ctx))
    new = run(loaded, "tracehouse-feedback", title, selection)
    assert new == old
    if selection is None:
        assert any(row["feedback_rate"] for row in new[1])  # rated calls in the data, not only zeros


# The Recent traces table as it was: every trace of the range from the traces view, newest first.
OLD_RECENT_TRACES_WHERE = "\n  AND (trace_id IN (SELECT TraceId FROM otel_traces_trace_id_ts"


@pytest.mark.parametrize("selection", [None, {"search": "SUMMARIZE"}, {"model": ["mystery-model"]}, ONE_EACH])
@pytest.mark.parametrize("limit", [200, 5, 1])
def test_recent_traces_are_the_newest_of_the_range(loaded, selection, limit):
    """The newest-traces shortcut (with every filter at All) keeps the table's answer: with the table's limit
    cut to 5 or 1 (so it bites on 64 traces) the rows are those of the old query over every trace."""
    dashboard, ctx = BY_UID["tracehouse-traces"], context(loaded)
    (panel,) = [p for p in all_panels(dashboard) if p["title"] == "Recent traces"]
    sql = panel["targets"][0]["rawSql"].replace("LIMIT 200", f"LIMIT {limit}")
    assert sql.count(f"LIMIT {limit}") == 2 and OLD_RECENT_TRACES_WHERE in sql
    head, _, tail = sql.partition(OLD_RECENT_TRACES_WHERE)
    old_sql = head + tail[tail.index("\nORDER BY start DESC") :]
    found = variables(dashboard, loaded, ctx, selection)
    new = loaded.store.query(gm.expand(sql, found, ctx))[1]
    old = loaded.store.query(gm.expand(old_sql, found, ctx))[1]
    assert new == old and len(new) == min(
        limit, len(loaded.store.query(gm.expand(old_sql.replace(f"LIMIT {limit}", "LIMIT 1000"), found, ctx))[1])
    )


def test_batch_outcomes_are_the_attribute_contracts():
    from tracehouse.instrumentation.attributes import BATCH_OUTCOMES

    batches = importlib.import_module("tracehouse.dashboards.batches")
    assert tuple(batches.OUTCOME_COLUMNS) == BATCH_OUTCOMES


def test_batch_panels(batch_loaded):
    """The batch data set's numbers, computed by hand in its comment (above batch_jobs)."""
    data, uid = batch_loaded, BATCH_UID
    assert one(data, uid, "Batches") == {"batches": 3}  # D was submitted before the range
    assert one(data, uid, "Requests") == {"requests": 9}
    assert one(data, uid, "Pending requests") == {"pending": 3}  # a3, and C's two
    assert one(data, uid, "Succeeded requests") == {"succeeded": 3}  # a0, a1, b0 (not D's d0)
    assert one(data, uid, "Failed requests: provider / handler") == {"provider_failed": 1, "handler_failed": 1}
    assert one(data, uid, "Expired / canceled") == {"expired": 1, "canceled": 0}
    assert one(data, uid, "Cost saved")["saved_usd"] == pytest.approx(0.00615, abs=1e-12)
    latency = one(data, uid, "Submission to handled p50 / p95")
    assert latency == {"p50_s": pytest.approx(1800, abs=0.01), "p95_s": pytest.approx(1827, abs=0.01)}
    # Per minute of collection (the request spans' ends, 680 to 570 s ago), not of submission (their starts).
    _, per_minute = run(data, uid, "Request outcomes over time", ctx=context(data, interval_ms=60_000))
    outcomes: dict[str, int] = {}
    for row in per_minute:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + row["requests"]
        assert row["time"] >= datetime.fromtimestamp((data.now - 680) // 60 * 60, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert outcomes == {"handled": 3, "handler_failed": 1, "provider_failed": 1, "expired": 1}

    def requests(row: dict) -> tuple:
        return tuple(row[column] for column in BATCH_REQUESTS)

    by_purpose = rows_of(data, uid, "Batches by purpose and model")
    assert [(r["purpose"], r["models"], r["batches"], requests(r)) for r in by_purpose] == [
        ("nightly-summaries", "gpt-4o-mini", 2, (6, 3, 2, 1, 0, 0, 0)),
        ("evals", "claude-sonnet-4-5", 1, (3, 0, 1, 0, 1, 1, 0)),
    ]
    # a0 + a1 + a2 at batch rates, and as much saved (batch rates are half the live ones); b0
    assert [(r["cost_usd"], r["saved_usd"]) for r in by_purpose] == [
        (pytest.approx(0.0009, abs=1e-12), pytest.approx(0.0009, abs=1e-12)),
        (pytest.approx(0.00525, abs=1e-12), pytest.approx(0.00525, abs=1e-12)),
    ]

    recent = rows_of(data, uid, "Recent batches")
    assert [(r["batch_id"], r["service"], r["provider"], requests(r)) for r in recent] == [
        ("batch_sum_c", "support-bot", "openai", (2, 2, 0, 0, 0, 0, 0)),
        ("msgbatch_eval_b", "eval-runner", "anthropic", (3, 0, 1, 0, 1, 1, 0)),
        ("batch_sum_a", "support-bot", "openai", (4, 1, 2, 1, 0, 0, 0)),
    ]
    assert [r["trace_id"] for r in recent] == [
        data.trace_ids[b] for b in ("batch_sum_c", "msgbatch_eval_b", "batch_sum_a")
    ]
    # A's submission time is its tracehouse.batch.submitted_at, B's (without one) its span's start.
    submitted = {r["batch_id"]: r["submitted"] for r in recent}
    for batch_id, seconds_ago in (("batch_sum_a", 2400), ("msgbatch_eval_b", 2102)):
        expected = datetime.fromtimestamp(data.now - seconds_ago, UTC).strftime("%Y-%m-%d %H:%M:%S.000")
        assert submitted[batch_id] == expected, batch_id

    failed = rows_of(data, uid, "Failed requests")
    assert [(r["custom_id"], r["batch_id"], r["outcome"], r["model"], r["error_type"], r["error"]) for r in failed] == [
        ("b2", "msgbatch_eval_b", "expired", "claude-sonnet-4-5", "expired", "expired: request expired"),
        ("b1", "msgbatch_eval_b", "provider_failed", "claude-sonnet-4-5", "overloaded_error", "errored: Overloaded"),
        ("a2", "batch_sum_a", "handler_failed", "gpt-4o-mini", "KeyError", "'summary'"),  # the handler's exception
    ]
    assert [r["collected_at"] for r in failed] == [
        datetime.fromtimestamp(data.now - seconds_ago, UTC).strftime("%Y-%m-%d %H:%M:%S.000000000")
        for seconds_ago in (630, 640, 680)
    ]
    assert [(r["trace_id"], r["span_id"]) for r in failed] == [
        (data.trace_ids[c], data.span_ids[c]) for c in ("b2", "b1", "a2")
    ]

    # The filters are the submissions': the worker's service submitted nothing; B is the only evals batch.
    service = variables(BY_UID[uid], data, context(data))["service"]
    assert service.options == ["eval-runner", "support-bot"]
    summaries = {"service": ["support-bot"]}
    assert one(data, uid, "Requests", summaries) == {"requests": 6}
    assert one(data, uid, "Cost saved", summaries)["saved_usd"] == pytest.approx(0.0009, abs=1e-12)
    assert [r["custom_id"] for r in rows_of(data, uid, "Failed requests", {"purpose": ["evals"]})] == ["b2", "b1"]
    latency = one(data, uid, "Submission to handled p50 / p95", {"provider": ["anthropic"]})
    assert latency == {"p50_s": pytest.approx(1502, abs=0.01), "p95_s": pytest.approx(1502, abs=0.01)}


def test_collector_health_panels(loaded):
    ingest = rows_of(loaded, "tracehouse-collector", "Ingest rate by service")
    assert sum(r["spans_per_s"] for r in ingest) * 3600 == pytest.approx(128)
    freshness = {r["service"]: r for r in rows_of(loaded, "tracehouse-collector", "Freshness by service")}
    assert (freshness["support-bot"]["spans"], freshness["search-api"]["spans"]) == (80, 48)
    assert all(0 <= r["lag_s"] < 3600 for r in freshness.values())
    lag = rows_of(loaded, "tracehouse-collector", "Span end to insert lag")
    assert lag and all(0 <= r["p50_s"] <= r["p95_s"] for r in lag)
    pricing: dict[str, int] = {}
    for r in rows_of(loaded, "tracehouse-collector", "Pricing of LLM calls"):
        pricing[r["cost_source"]] = pricing.get(r["cost_source"], 0) + r["calls"]
    assert pricing == {"catalogue": 40, "unknown": 24}
    kinds = {r["kind"]: r["redactions"] for r in rows_of(loaded, "tracehouse-collector", "Redactions by kind")}
    assert kinds.get("email", 0) > 0


# --- links ----------------------------------------------------------------------------------------


def _trace_links() -> list[tuple[str, str, dict]]:
    found = []
    for d in DASHBOARDS.values():
        for panel in all_panels(d):
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                for prop in override["properties"]:
                    if prop["id"] == "links":
                        found.extend((d["uid"], panel["title"], link) for link in prop["value"])
    return found


def test_trace_links_open_the_trace_detail_and_the_trace_view(loaded):
    links = _trace_links()
    assert {(uid, title) for uid, title, _ in links} == {
        ("tracehouse-quality", "Slowest calls"),
        ("tracehouse-quality", "Most expensive calls"),
        ("tracehouse-traces", "Recent traces"),
        ("tracehouse-feedback", "Worst-rated calls"),
        ("tracehouse-feedback", "Recently flagged or rejected calls"),
        (BATCH_UID, "Recent batches"),
        (BATCH_UID, "Failed requests"),
    }
    trace_id = loaded.trace_ids[0]
    for _, _, link in links:
        url = link["url"]
        if url.startswith("/d/"):
            target_uid = urlsplit(url).path.split("/")[2]
            names = {v["name"] for v in BY_UID[target_uid]["templating"]["list"]}
            assert "var-trace_id=${__value.raw}" in url and "trace_id" in names
            continue
        assert url.startswith("/explore?")
        panes = json.loads(unquote(parse_qs(urlsplit(url).query)["panes"][0]))
        (query,) = next(iter(panes.values()))["queries"]
        assert query["datasource"]["uid"] == "${datasource}" and query["format"] == 3 and query["queryType"] == "traces"
        sql = gm.expand(query["rawSql"].replace("${__value.raw}", trace_id), {}, context(loaded))
        columns, spans = loaded.store.query(sql)
        assert [name for name, _ in columns] == TRACE_VIEW and len(spans) == 2
        assert {s["traceID"] for s in spans} == {trace_id}


# --- the collector's Prometheus metrics -----------------------------------------------------------


def test_prometheus_panels_use_metrics_the_collector_exports(loaded):
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(loaded.store.collector.http_endpoint + "/metrics", timeout=10) as response:
        text = response.read().decode()
    exported = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in text_string_to_metric_families(text):
        exported.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    used = {
        name
        for d in DASHBOARDS.values()
        for panel in all_panels(d)
        for target in panel.get("targets", [])
        if "expr" in target
        for name in re.findall(r"\b(tracehouse_\w+)", target["expr"])
    }
    assert used and used <= exported, f"not exported by the collector: {sorted(used - exported)}"


# --- alert rules ----------------------------------------------------------------------------------


def _yaml(path: Path):
    return pytest.importorskip("yaml").safe_load(path.read_text())


def _rules(path: Path = ALERT_RULES) -> dict[str, dict]:
    document = _yaml(path)
    assert document["apiVersion"] == 1
    return {rule["uid"]: rule for group in document["groups"] for rule in group["rules"]}


def _evaluate(data, rule: dict) -> list[tuple[dict, float, bool]]:
    """Run the rule's query as Grafana would over its relative time range, then its threshold:
    (labels, value, firing) per row, as Grafana's alerting reads a table with one numeric column."""
    steps = {step["refId"]: step for step in rule["data"]}
    query = steps["A"]
    ctx = gm.QueryContext(
        datetime.fromtimestamp(data.now - query["relativeTimeRange"]["from"], UTC),
        datetime.fromtimestamp(data.now - query["relativeTimeRange"]["to"], UTC),
    )
    columns, rows = data.store.query(gm.expand(query["model"]["rawSql"], {}, ctx))
    numeric = [name for name, kind in columns if re.match(r"(Nullable\()?(U?Int|Float|Decimal)", kind)]
    assert len(numeric) == 1, f"{rule['uid']}: Grafana needs exactly one numeric column, got {columns}"
    condition = steps[rule["condition"]]["model"]
    assert condition["type"] == "threshold" and condition["expression"] == "A"
    (evaluator,) = [c["evaluator"] for c in condition["conditions"]]
    assert evaluator["type"] in ("gt", "lt")
    limit = float(evaluator["params"][0])
    fires = (lambda value: value > limit) if evaluator["type"] == "gt" else (lambda value: value < limit)
    return [
        ({k: v for k, v in row.items() if k != numeric[0]}, row[numeric[0]], fires(row[numeric[0]])) for row in rows
    ]


def test_alert_rules_are_well_formed():
    rules = _rules()
    assert set(rules) == {
        "tracehouse-error-rate-vs-yesterday",
        "tracehouse-p95-latency-vs-yesterday",
        "tracehouse-refusal-rate",
        "tracehouse-daily-spend",
        "tracehouse-unpriced-model",
        "tracehouse-low-user-score",
    }
    provisioned = {d["uid"] for d in _yaml(DATASOURCES)["datasources"]}
    for rule in rules.values():
        steps = {step["refId"]: step for step in rule["data"]}
        assert steps["A"]["datasourceUid"] in provisioned and steps["B"]["datasourceUid"] == "__expr__"
        assert rule["condition"] == "B" and rule["title"] and rule["annotations"]["summary"]
        assert gm.portability_problems(steps["A"]["model"]["rawSql"]) == []
        panel_uid, panel_id = rule["annotations"]["__dashboardUid__"], int(rule["annotations"]["__panelId__"])
        assert panel_id in {p["id"] for p in all_panels(BY_UID[panel_uid])}
        # Grafana expands environment variables in labels: keep `$` out of them.
        assert "$" not in json.dumps(rule["labels"])


def test_alert_rules_fire_on_the_known_data(loaded):
    rules = _rules()

    def firing(uid: str) -> dict:
        return {
            json.dumps(labels, sort_keys=True): (value, fires) for labels, value, fires in _evaluate(loaded, rules[uid])
        }

    # support-bot: 1 error in 20 calls yesterday, 3 in 20 today: 3x; search-api: none on either day
    assert firing("tracehouse-error-rate-vs-yesterday") == {
        '{"service": "search-api"}': (0, False),
        '{"service": "support-bot"}': (pytest.approx(3.0), True),
    }
    # support-bot: p95 1000 ms yesterday, 2000 ms today (summaries slowed down); search-api 500 ms both days
    assert firing("tracehouse-p95-latency-vs-yesterday") == {
        '{"service": "search-api"}': (1, False),
        '{"service": "support-bot"}': (2, True),
    }
    # the last hour holds today's calls: support-bot 2 refusals in 20
    assert firing("tracehouse-refusal-rate") == {
        '{"service": "search-api"}': (0, False),
        '{"service": "support-bot"}': (0.1, True),
    }
    assert firing("tracehouse-daily-spend") == {"{}": (pytest.approx(0.191904), False)}  # budget 100 USD
    assert firing("tracehouse-unpriced-model") == {'{"model": "mystery-model", "provider": "openai"}': (12, True)}
    # support-bot: 20 calls rated today, chat 4.5 + summarize 3.5 = 8: mean 0.4, below 0.5; search-api has only
    # 5 rated calls today, fewer than the 20 the rule asks for
    assert firing("tracehouse-low-user-score") == {'{"service": "support-bot"}': (pytest.approx(0.4), True)}


def test_daily_budget_is_configurable(loaded, tmp_path):
    env = {
        **os.environ,
        "TRACEHOUSE_ALERT_RULES_TEMPLATE": str(ALERT_RULES),
        "TRACEHOUSE_ALERT_RULES_DIR": str(tmp_path),
        "TRACEHOUSE_DAILY_BUDGET_USD": "0.15",
    }
    subprocess.run(["sh", str(RENDER_ALERT_RULES)], env=env, check=True, capture_output=True, timeout=30)
    rules = _rules(tmp_path / "tracehouse-alerts.yaml")
    assert [fires for _, _, fires in _evaluate(loaded, rules["tracehouse-daily-spend"])] == [True]


def test_min_user_score_is_configurable(loaded, tmp_path):
    env = {
        **os.environ,
        "TRACEHOUSE_ALERT_RULES_TEMPLATE": str(ALERT_RULES),
        "TRACEHOUSE_ALERT_RULES_DIR": str(tmp_path),
    }
    for threshold, fires in (("0.3", False), ("0.45", True)):  # support-bot's mean today is 0.4
        subprocess.run(
            ["sh", str(RENDER_ALERT_RULES)],
            env={**env, "TRACEHOUSE_MIN_USER_SCORE": threshold},
            check=True,
            capture_output=True,
            timeout=30,
        )
        rules = _rules(tmp_path / "tracehouse-alerts.yaml")
        assert [f for _, _, f in _evaluate(loaded, rules["tracehouse-low-user-score"])] == [fires], threshold
    for bad in ("low", "-1", "1.2.3", ".5"):
        result = subprocess.run(
            ["sh", str(RENDER_ALERT_RULES)], env={**env, "TRACEHOUSE_MIN_USER_SCORE": bad}, capture_output=True
        )
        assert result.returncode == 64 and b"TRACEHOUSE_MIN_USER_SCORE" in result.stderr, bad


def test_dashboards_ship_as_package_data():
    from importlib import resources

    shipped = {
        entry.name for entry in resources.files("tracehouse.dashboards").iterdir() if entry.name.endswith(".json")
    }
    assert shipped == set(DASHBOARDS)
