"""Batches (batches.json): provider batch jobs (OpenAI Batch, Anthropic Message Batches, traced by
tracehouse.instrumentation.batch): batches by purpose and model, their requests pending, succeeded and
failed (the provider's failures apart from the app handler's), the time from submission to handled, what
batch pricing saved against live rates, the recent batches and the failed requests with their traces.

A batch is in the time range when its submission span is; its requests' spans are read from the start of
the range on (they are collected later, possibly after the range ends), and joined to it by batch id. The
filters (service, purpose, provider) are the submission's. Every query reads otel_traces' Batch* columns
(schema/0020_batch_columns.sql); only submission spans and failed requests read attributes from the map.
"""

from __future__ import annotations

from typing import Any

from .panels import CLICKHOUSE_VARIABLE, Layout, dashboard, query_variable, stat, table, timeseries, trace_links
from .queries import cond, indent, sql

UID = "tracehouse-batches"
BATCH_FILTERS = ("service", "purpose", "provider")

# The outcomes of a collected request (instrumentation/attributes.py BATCH_OUTCOMES), as count columns.
OUTCOME_COLUMNS = {
    "handled": "succeeded",
    "handler_failed": "handler_failed",
    "provider_failed": "provider_failed",
    "expired": "expired",
    "canceled": "canceled",
}
FAILED = tuple(outcome for outcome in OUTCOME_COLUMNS if outcome != "handled")
FAILED_OUTCOMES = ", ".join(f"'{outcome}'" for outcome in FAILED)
SAVED_USD = "StandardCostUsd - CostUsd"  # NULL unless a batch price applied (schema/0019_batch_prices.sql)


def collected_at(table: str = "") -> str:
    """When a request's outcome was known: the end of its span (which may start at the submission);
    `table` qualifies the columns in a join."""
    t = f"{table}." if table else ""
    return f"{t}Timestamp + toIntervalNanosecond({t}Duration)"


# The filters, over SUBMITTED's columns of the same names.
SUBMISSION_FILTERS = "\n      AND ".join(cond(var, var) for var in BATCH_FILTERS)

# One row per batch submitted in the range that the filters keep: its submission span's trace, service,
# purpose, provider, models, request count and submission time (tracehouse.batch.submitted_at, else the
# span's start).
SUBMITTED = sql(
    f"""
    SELECT BatchId AS batch_id,
      any(TraceId) AS trace_id,
      any(ServiceName) AS service,
      any(BatchPurpose) AS purpose,
      any(SpanAttributes['tracehouse.batch.provider']) AS provider,
      arrayStringConcat(JSONExtract(any(SpanAttributes['tracehouse.batch.models']), 'Array(String)'), ', ') AS models,
      max(toUInt64OrZero(SpanAttributes['tracehouse.batch.request_count'])) AS requests,
      min(ifNull(toDateTime64(toFloat64OrNull(SpanAttributes['tracehouse.batch.submitted_at']), 3, 'UTC'),
        toDateTime64(Timestamp, 3, 'UTC'))) AS submitted
    FROM otel_traces
    WHERE $__timeFilter(Timestamp) AND BatchOperation = 'submit' AND BatchId != ''
    GROUP BY batch_id
    HAVING {SUBMISSION_FILTERS}
    """
)
SUBMITTED_IDS = f"SELECT batch_id FROM (\n{indent(SUBMITTED, 2)}\n)"

# One row per batch with collected requests (from the range's start on): how many, by outcome, their cost
# and what batch pricing saved.
_OUTCOME_COUNTS = ",\n".join(
    f"  countIf(BatchOutcome = '{outcome}') AS {column}" for outcome, column in OUTCOME_COLUMNS.items()
)
COLLECTED = (
    "SELECT BatchId AS batch_id,\n"
    "  count() AS collected,\n"
    f"{_OUTCOME_COUNTS},\n"
    "  toFloat64(sum(ifNull(CostUsd, 0))) AS cost_usd,\n"
    f"  toFloat64(sum(ifNull({SAVED_USD}, 0))) AS saved_usd\n"
    "FROM otel_traces\n"
    "WHERE BatchOperation = 'request' AND BatchOutcome != '' AND (Timestamp >= $__fromTime)\n"
    "GROUP BY batch_id"
)

# The batches of the range with their requests: pending is the submission's request count less the
# requests collected with an outcome.
BATCHES = (
    "SELECT batch_id, trace_id, service, purpose, provider, models, requests, submitted, collected,\n"
    f"  {', '.join(OUTCOME_COLUMNS.values())}, cost_usd, saved_usd,\n"
    "  toUInt64(greatest(toInt64(requests) - toInt64(collected), 0)) AS pending\n"
    "FROM (\n"
    f"{indent(SUBMITTED, 2)}\n"
    ") AS submitted_batches\n"
    "LEFT JOIN (\n"
    f"{indent(COLLECTED, 2)}\n"
    ") AS collected_requests USING batch_id"
)

# The request columns every per-batch table shows, summed over its rows.
REQUEST_SUMS = ", ".join(f"sum({c}) AS {c}" for c in ("requests", "pending", *OUTCOME_COLUMNS.values()))


def over_batches(columns: str, tail: str = "") -> str:
    """`columns` over the batches of the range (BATCHES), then `tail` (GROUP BY, ORDER BY, ...)."""
    return f"SELECT {columns}\nFROM (\n{indent(BATCHES, 2)}\n){tail}"


# The seconds from a batch's submission to each of its requests' handler returning: the end of every
# handler span whose outcome is handled.
HANDLED_AFTER = sql(
    f"""
    SELECT (toUnixTimestamp64Nano(handler.Timestamp) + handler.Duration) / 1e9
        - toUnixTimestamp64Milli(batches.submitted) / 1e3 AS seconds
    FROM otel_traces AS handler
    INNER JOIN (
      {indent(SUBMITTED, 6).lstrip(" ")}
    ) AS batches ON handler.BatchId = batches.batch_id
    WHERE handler.BatchOperation = 'handle' AND handler.BatchOutcome = 'handled'
      AND (handler.Timestamp >= $__fromTime)
    """
)

# The collected requests that did not succeed, the latest first, with the handler's exception when the
# handler failed, else the request's own error (normalize's ErrorType and ErrorMessage).
FAILED_REQUESTS = sql(
    f"""
    SELECT {collected_at("request")} AS collected_at, request.BatchId AS batch_id, batches.purpose AS purpose,
      request.SpanAttributes['tracehouse.batch.custom_id'] AS custom_id,
      request.BatchOutcome AS outcome,
      request.LlmModel AS model,
      if(handlers.error_type != '', handlers.error_type, request.ErrorType) AS error_type,
      if(handlers.error != '', handlers.error, request.ErrorMessage) AS error,
      request.TraceId AS trace_id,
      request.SpanId AS span_id
    FROM otel_traces AS request
    INNER JOIN (
      {indent(SUBMITTED, 6).lstrip(" ")}
    ) AS batches ON request.BatchId = batches.batch_id
    LEFT JOIN (
      SELECT ParentSpanId AS request_span_id, any(ErrorType) AS error_type, any(ErrorMessage) AS error
      FROM otel_traces
      WHERE BatchOperation = 'handle' AND BatchOutcome = 'handler_failed' AND (Timestamp >= $__fromTime)
      GROUP BY request_span_id
    ) AS handlers ON handlers.request_span_id = request.SpanId
    WHERE request.BatchOperation = 'request' AND request.BatchOutcome IN ({FAILED_OUTCOMES})
      AND (request.Timestamp >= $__fromTime)
    ORDER BY collected_at DESC, custom_id
    LIMIT 100
    """
)


def _variables() -> list[dict[str, Any]]:
    """Service, purpose and provider of the submissions in the range, each narrowed by the ones before."""
    submissions = "FROM otel_traces\nWHERE $__timeFilter(Timestamp) AND BatchOperation = 'submit'"
    return [
        CLICKHOUSE_VARIABLE,
        query_variable(
            "service",
            "Service",
            f"SELECT DISTINCT ServiceName {submissions} AND ServiceName != ''\nORDER BY ServiceName",
            "Services that submitted batches in the time range",
        ),
        query_variable(
            "purpose",
            "Purpose",
            f"SELECT DISTINCT BatchPurpose {submissions} AND BatchPurpose != ''\n"
            f"  AND {cond('service', 'ServiceName')}\nORDER BY BatchPurpose",
            "What the app said the batches are for (tracehouse.batch.purpose)",
        ),
        query_variable(
            "provider",
            "Provider",
            "SELECT DISTINCT SpanAttributes['tracehouse.batch.provider'] AS provider\n"
            f"{submissions}\n  AND {cond('service', 'ServiceName')} AND {cond('purpose', 'BatchPurpose')}\n"
            "ORDER BY provider",
            "The batch API's provider",
        ),
    ]


def outcomes_over_time() -> str:
    """The requests of the range's batches by outcome, per interval of when they were collected."""
    return sql(
        f"""
        SELECT $__timeInterval(collected_at) AS time, outcome, count() AS requests
        FROM (
          SELECT {collected_at()} AS collected_at, BatchOutcome AS outcome
          FROM otel_traces
          WHERE BatchOperation = 'request' AND BatchOutcome != '' AND (Timestamp >= $__fromTime)
            AND BatchId IN (
              {indent(SUBMITTED_IDS, 14).lstrip(" ")}
            )
        )
        WHERE $__timeFilter(collected_at)
        GROUP BY time, outcome
        ORDER BY time
        """
    )


def batches() -> dict[str, Any]:
    g = Layout()
    g.row("Batches submitted in the time range")
    g.add(stat("Batches", "Batch jobs submitted in the time range", over_batches("count() AS batches"), "short"), 3, 4)
    g.add(
        stat(
            "Requests",
            "Requests of those batches (the submissions' request counts)",
            over_batches("sum(requests) AS requests"),
            "short",
        ),
        3,
        4,
    )
    g.add(
        stat(
            "Pending requests",
            "Requests not collected yet: each batch's request count less its requests seen with an outcome",
            over_batches("sum(pending) AS pending"),
            "short",
        ),
        3,
        4,
    )
    g.add(
        stat(
            "Succeeded requests",
            "Requests whose result the app's handler processed (outcome handled)",
            over_batches("sum(succeeded) AS succeeded"),
            "short",
        ),
        3,
        4,
    )
    g.add(
        stat(
            "Failed requests: provider / handler",
            "Requests the provider failed (errored) and requests whose handler raised",
            over_batches("sum(provider_failed) AS provider_failed, sum(handler_failed) AS handler_failed"),
            "short",
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Expired / canceled",
            "Requests the provider did not run: the batch expired or was canceled first",
            over_batches("sum(expired) AS expired, sum(canceled) AS canceled"),
            "short",
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Cost saved",
            "Live-rate cost less the batch-rate cost of the collected requests (standard_cost_usd - cost_usd)",
            over_batches("sum(saved_usd) AS saved_usd"),
            "currencyUSD",
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Submission to handled p50 / p95",
            "Time from a batch's submission to its requests' handlers returning (outcome handled)",
            f"SELECT quantile(0.5)(seconds) AS p50_s, quantile(0.95)(seconds) AS p95_s\n"
            f"FROM (\n{indent(HANDLED_AFTER, 2)}\n)",
            "s",
        ),
        6,
        4,
    )
    g.add(
        timeseries(
            "Request outcomes over time",
            "Requests of the range's batches by outcome, per interval of their collection (their span's end)",
            outcomes_over_time(),
            "short",
            series_label="outcome",
            stacked=True,
            bars=True,
        ),
        18,
        8,
    )
    g.row("By purpose and model")
    g.add(
        table(
            "Batches by purpose and model",
            "Per purpose and the batch's models: batches, requests by state, their cost and what batch rates saved",
            over_batches(
                f"purpose, models, count() AS batches, {REQUEST_SUMS},\n"
                "  sum(cost_usd) AS cost_usd, sum(saved_usd) AS saved_usd",
                "\nGROUP BY purpose, models\nORDER BY batches DESC, purpose, models",
            ),
            units={"cost_usd": "currencyUSD", "saved_usd": "currencyUSD"},
        ),
        24,
        8,
    )
    g.row("Recent batches and failed requests")
    g.add(
        table(
            "Recent batches",
            "The 100 latest batches of the range; trace_id opens the submission's trace",
            over_batches(
                "submitted, batch_id, service, purpose, provider, models, requests, pending,\n"
                f"  {', '.join(OUTCOME_COLUMNS.values())}, cost_usd, saved_usd, trace_id",
                "\nORDER BY submitted DESC, batch_id\nLIMIT 100",
            ),
            units={"cost_usd": "currencyUSD", "saved_usd": "currencyUSD"},
            links={"trace_id": trace_links()},
        ),
        24,
        9,
    )
    g.add(
        table(
            "Failed requests",
            "Requests of the range's batches that did not succeed, latest collected first, with the provider's "
            "error or the handler's exception; trace_id opens the request's trace",
            FAILED_REQUESTS,
            links={"trace_id": trace_links()},
        ),
        24,
        9,
    )
    return dashboard(
        UID,
        "tracehouse / Batches",
        "Provider batch jobs: batches by purpose and model, requests pending / succeeded / failed (provider vs "
        "handler), submission to handled, cost saved against live rates, recent batches and failed requests.",
        g,
        _variables(),
    )
