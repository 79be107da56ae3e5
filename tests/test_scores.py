"""Scores end to end, on a real collector process: an instrumented app (OpenInference + the fake OpenAI
server, exporting over OTLP/HTTP configured only by the standard OTEL_* variables) makes calls and scores them
with `score()`; raw HTTP adds more; SQL over llm_calls_scored and traces_scored shows exactly the expected
user_feedback and scores. Retries store once, a score sent before its span joins once the span lands,
tenants stay apart, comments are redacted, every malformed body gets a 400 naming its field."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from collector_process import sql_rows
from fake_openai import FakeOpenAI

pytestmark = pytest.mark.timeout(240)

KEYS = {"TRACEHOUSE_API_KEYS": "key-alpha=alpha, key-beta=beta"}
ALPHA = {"Authorization": "Bearer key-alpha"}
BETA = {"x-api-key": "key-beta"}

APP = """
import json, sys
import openai
from opentelemetry.sdk.trace import SpanProcessor
from tracehouse.instrumentation import chain, current_ids, score, setup, shutdown

class Calls(SpanProcessor):
    def __init__(self):
        self.ids = []
    def on_end(self, span):
        if span.attributes.get("openinference.span.kind") == "LLM":
            self.ids.append(format(span.context.span_id, "016x"))

calls = Calls()
setup(service_name="scored-app").add_span_processor(calls)  # OTLP/HTTP from the OTEL_* variables
client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-fake", max_retries=0)
out = {"outside_a_span": score("thumbs", True)}

@chain("answer")
def answer(question):
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    ids = current_ids()
    out["chain"] = ids._asdict()
    out["thumbs"] = score("thumbs", False, comment="wrong city, write to jane.doe@example.com")
    out["helpfulness"] = score("helpfulness", 4, trace_id=ids.trace_id, source="eval", author="judge-v1")

answer("What is the capital of France?")
shutdown()
out["calls"] = calls.ids
print(json.dumps(out))
"""


def post(url: str, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, {**(json.loads(text) if text else {}), "_headers": dict(exc.headers)}


def scores_url(collector) -> str:
    return collector.http_endpoint + "/v1/scores"


def run_app(collector, fake: FakeOpenAI, key: str) -> dict[str, Any]:
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{key}",
    }
    result = subprocess.run(
        [sys.executable, "-c", APP, fake.base_url], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "outside a span and without trace_id: not sent" in result.stderr  # logged, not raised
    return json.loads(result.stdout)


def llm_span_json(trace_id: str, span_id: str, name: str) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "late-app"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": name,
                                "kind": 3,
                                "startTimeUnixNano": "1740823200000000000",
                                "endTimeUnixNano": "1740823201000000000",
                                "attributes": [
                                    {"key": "openinference.span.kind", "value": {"stringValue": "LLM"}},
                                    {"key": "llm.model_name", "value": {"stringValue": "gpt-4o-mini"}},
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }


def test_scores_from_the_app_and_raw_http_surface_in_llm_calls_and_traces(start_collector):
    collector = start_collector(env=KEYS, migrated=True)
    with FakeOpenAI() as fake:
        app = run_app(collector, fake, "key-alpha")
    assert app["outside_a_span"] is None
    first, second = app["calls"]
    trace_id, chain_span = app["chain"]["trace_id"], app["chain"]["span_id"]
    assert app["thumbs"] and app["helpfulness"]

    # Raw HTTP: the first call's own user score, dated before the app's thumbs-down of the chain, and a
    # reviewer's accuracy of the second call.
    status, answer = post(
        scores_url(collector),
        [
            {
                "trace_id": trace_id.upper(),  # hex in either case; stored lowercase like span ids
                "span_id": first,
                "name": "thumbs",
                "value": True,
                "source": "user",
                "timestamp": "2020-01-01T00:00:00Z",
            },
            {"trace_id": trace_id, "span_id": second, "name": "accuracy", "value": 0.5, "source": "review"},
        ],
        ALPHA,
    )
    assert status == 200 and len(answer["ids"]) == 2
    # Another tenant scores alpha's spans (it knows their ids): stored under beta, joined to nothing of alpha.
    status, _ = post(
        scores_url(collector),
        [
            {"trace_id": trace_id, "span_id": second, "name": "thumbs", "value": True, "source": "user"},
            {"trace_id": trace_id, "name": "helpfulness", "value": 1, "source": "eval"},
        ],
        BETA,
    )
    assert status == 200

    calls = sql_rows(
        collector.data_dir,
        f"SELECT id, tenant_id, user_feedback, scores FROM llm_calls_scored WHERE trace_id = '{trace_id}' ORDER BY ts",
    )
    assert calls == [
        # its own user score (true), though the trace's thumbs-down is later; whole-trace helpfulness
        {"id": first, "tenant_id": "alpha", "user_feedback": 1, "scores": {"thumbs": 1, "helpfulness": 4}},
        # no user score of its own: the trace's latest (the chain's thumbs-down); its own accuracy only
        {"id": second, "tenant_id": "alpha", "user_feedback": 0, "scores": {"accuracy": 0.5, "helpfulness": 4}},
    ]
    traces = sql_rows(
        collector.data_dir, f"SELECT tenant_id, user_feedback, scores FROM traces_scored WHERE trace_id = '{trace_id}'"
    )
    assert traces == [
        {"tenant_id": "alpha", "user_feedback": 0, "scores": {"thumbs": 0, "helpfulness": 4, "accuracy": 0.5}}
    ]
    stored = sql_rows(
        collector.data_dir,
        "SELECT TenantId, SpanId, ScoreId, Name, Value, ValueType, Source, Author, Comment, RedactionCounts"
        f" FROM scores WHERE TraceId = '{trace_id}' ORDER BY TenantId, Name, SpanId",
    )
    by_id = {row["ScoreId"]: row for row in stored}
    assert [(r["TenantId"], r["Name"]) for r in stored] == [
        ("alpha", "accuracy"),
        ("alpha", "helpfulness"),
        ("alpha", "thumbs"),
        ("alpha", "thumbs"),
        ("beta", "helpfulness"),
        ("beta", "thumbs"),
    ]
    thumbs_down = by_id[app["thumbs"]]
    assert (thumbs_down["SpanId"], thumbs_down["Value"], thumbs_down["ValueType"]) == (chain_span, 0, "bool")
    assert thumbs_down["Comment"] == "wrong city, write to [EMAIL]"  # redacted before the spool
    assert thumbs_down["RedactionCounts"] == {"email": 1}
    helpfulness = by_id[app["helpfulness"]]
    assert (helpfulness["SpanId"], helpfulness["Source"], helpfulness["Author"]) == ("", "eval", "judge-v1")
    assert "jane.doe" not in collector.log()

    # The README's example, as written there.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("<!-- scores-sql -->", 1)[1].split("<!-- scores-sql:end -->", 1)[0]
    per_service = sql_rows(collector.data_dir, example.strip().removeprefix("```sql").removesuffix("```"))
    assert per_service == [{"service": "scored-app", "calls": 2, "rated": 2, "mean": 0.5}]


def test_a_retried_request_stores_once_and_a_score_before_its_span_joins_when_it_lands(start_collector):
    collector = start_collector(migrated=True)
    trace_id, span_id = "1f" * 16, "2e" * 8
    body = [
        {"trace_id": trace_id, "span_id": span_id, "name": "thumbs", "value": False, "source": "user"},
        {"trace_id": trace_id, "name": "rating", "value": 3, "comment": "ok"},
        {"id": "client-7", "trace_id": trace_id, "span_id": span_id, "name": "tone", "value": 0.25, "source": "eval"},
    ]
    status, first = post(scores_url(collector), body)
    assert status == 200
    assert first["ids"][2] == "client-7" and len(set(first["ids"])) == 3
    # The same request again (its answer was lost), gzip-compressed this time, then as it was.
    status, again = post(
        scores_url(collector), None, {"Content-Encoding": "gzip"}, raw=gzip.compress(json.dumps(body).encode())
    )
    assert (status, again) == (200, first)
    assert post(scores_url(collector), body) == (200, first)
    stored = sql_rows(collector.data_dir, "SELECT ScoreId, count() AS n FROM scores GROUP BY ScoreId ORDER BY 1")
    assert stored == sorted(({"ScoreId": i, "n": 1} for i in first["ids"]), key=lambda r: r["ScoreId"])
    # No span yet: no llm_calls row to join; the span lands later and the scores join it.
    assert sql_rows(collector.data_dir, f"SELECT id FROM llm_calls WHERE trace_id = '{trace_id}'") == []
    status, _ = post(collector.traces_url, llm_span_json(trace_id, span_id, "late call"))
    assert status == 200
    rows = sql_rows(
        collector.data_dir, f"SELECT id, user_feedback, scores FROM llm_calls_scored WHERE trace_id = '{trace_id}'"
    )
    assert rows == [{"id": span_id, "user_feedback": 0, "scores": {"thumbs": 0, "tone": 0.25, "rating": 3}}]


MALFORMED = [
    ({"span_id": "a" * 16, "name": "x", "value": 1}, "trace_id: required"),
    ({"trace_id": "xyz", "name": "x", "value": 1}, "trace_id: must be 32 hex digits"),
    ({"trace_id": "0" * 32, "name": "x", "value": 1}, "trace_id: an all-zero id"),
    ({"trace_id": "a" * 32, "span_id": "a" * 15, "name": "x", "value": 1}, "span_id: must be 16 hex digits"),
    ({"trace_id": "a" * 32, "value": 1}, "name: required"),
    ({"trace_id": "a" * 32, "name": "has space", "value": 1}, "name: letters, digits"),
    ({"trace_id": "a" * 32, "name": "x"}, "value: required"),
    ({"trace_id": "a" * 32, "name": "x", "value": "5"}, "value: must be a number or a boolean, not a string"),
    ({"trace_id": "a" * 32, "name": "x", "value": 10**400}, "value: must be a finite number"),
    ({"trace_id": "a" * 32, "name": "x", "value": float("nan")}, "value: must be a finite number"),
    ({"trace_id": "a" * 32, "name": "x", "value": True, "source": None, "author": ["me"]}, "author: must be a string"),
    ({"trace_id": "a" * 32, "name": "x", "value": 1, "source": "bot"}, "source: unknown source 'bot'"),
    ({"trace_id": "a" * 32, "name": "x", "value": 1, "comment": "c" * 4097}, "comment: 4097 characters, at most 4096"),
    ({"trace_id": "a" * 32, "name": "x", "value": 1, "label": 7}, "label: must be a string, not a number"),
    ({"trace_id": "a" * 32, "name": "x", "value": 1, "timestamp": "yesterday"}, "timestamp: not RFC 3339"),
    ({"trace_id": "a" * 32, "name": "x", "value": 1, "timestamp": -5}, "timestamp: out of range"),
    ({"trace_id": "a" * 32, "name": "x", "value": 1, "id": "has space"}, "id: 1 to 128"),
    ({"trace_id": "a" * 32, "name": "x", "value": 1, "comments": "typo"}, "'comments': unknown field"),
    (
        [{"trace_id": "a" * 32, "name": "x", "value": 1}, {"trace_id": "a" * 32, "name": "x"}],
        "scores[1].value: required",
    ),
    ([{"trace_id": "a" * 32, "name": "x", "value": 1}] * 1001, "too many scores in one request: 1001, at most 1000"),
    # One id twice in one request: both were acknowledged and the table kept one of them.
    (
        [
            {"trace_id": "a" * 32, "name": "x", "value": 1, "id": "dup-2"},
            {"trace_id": "b" * 32, "name": "y", "value": 0, "id": "dup-2"},
        ],
        "scores[1].id: 'dup-2' is the id of scores[0] too",
    ),
    ("a string", "body must be a JSON object"),
]


def test_every_malformed_body_gets_a_400_naming_its_field_and_keys_are_required(start_collector):
    collector = start_collector(env=KEYS, migrated=True)
    url = scores_url(collector)
    for body, message in MALFORMED:
        status, answer = post(url, body, ALPHA)
        assert status == 400, (body, answer)
        assert message in answer["message"], (message, answer["message"])
    status, answer = post(url, None, ALPHA, raw=b'{"trace_id": ')
    assert status == 400 and "not valid JSON" in answer["message"]
    # A lone surrogate in a text field was read, then failed when the row was written: a 500.
    lone = b'{"trace_id": "' + b"a" * 32 + b'", "name": "x", "value": 1, "comment": "\\ud800"}'
    status, answer = post(url, None, ALPHA, raw=lone)
    assert status == 400 and "must come in a pair" in answer["message"], answer
    status, answer = post(url, None, ALPHA, raw=b'{"trace_id": "\xff"}')
    assert status == 400 and answer["message"].startswith("body is not valid UTF-8 (byte 14)"), answer
    status, answer = post(url, {"trace_id": "a" * 32, "name": "x", "value": 1})
    assert status == 401 and "API key is required" in answer["message"]
    status, _ = post(url, {"trace_id": "a" * 32, "name": "x", "value": 1}, {"Authorization": "Bearer nope"})
    assert status == 401
    request = urllib.request.Request(url, data=b"x", method="POST", headers={"Content-Type": "text/plain", **ALPHA})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 415
    # Nothing malformed was stored, and the good request still works after all of them.
    assert post(url, {"trace_id": "a" * 32, "name": "x", "value": 1}, ALPHA)[0] == 200
    assert sql_rows(collector.data_dir, "SELECT count() AS n FROM scores") == [{"n": 1}]


def _key_shaped(prefix: str, n: int) -> str:
    """A key-shaped string built at run time, so no literal credential sits in the repository."""
    return prefix + "".join(chr(ord("A") + (7 * i) % 26) for i in range(n - len(prefix) - 2)) + "7Q"


def test_identifiers_that_hold_secrets_or_pii_are_refused_not_stored(start_collector):
    """Names, ids and tenants are stored as sent (they key idempotency and joins): one the redactor finds
    something in is refused with a 400 naming the field, without echoing it; the rest of the body is not stored."""
    collector = start_collector(migrated=True)  # no API keys: the body's tenant_id is honoured
    aws_key, mail = _key_shaped("AKIA", 20), "ops.lead@corp-mail.com"
    good = {"trace_id": "b" * 32, "name": "helpfulness", "value": 1}
    refused = [
        (scores_url(collector), {**good, "name": f"key:{aws_key}"}, "name"),
        (scores_url(collector), {**good, "id": aws_key}, "id"),
        (scores_url(collector), {**good, "tenant_id": mail}, "tenant_id"),
        (
            collector.http_endpoint + "/v1/reviews",
            {"trace_id": "b" * 32, "span_id": "c" * 16, "state": "approved", "id": aws_key},
            "id",
        ),
        (
            collector.http_endpoint + "/v1/reviews",
            {"trace_id": "b" * 32, "span_id": "c" * 16, "state": "approved", "tenant_id": mail},
            "tenant_id",
        ),
    ]
    for url, body, field in refused:
        status, answer = post(url, [good, body] if url.endswith("scores") else body)
        assert status == 400, (body, answer)
        message = answer["message"]
        assert f"{field}: holds what redaction removes" in message, message
        assert aws_key not in message and mail not in message
    assert post(scores_url(collector), good)[0] == 200
    stored = sql_rows(collector.data_dir, "SELECT count() AS n, groupArray(Name) AS names FROM scores")
    assert stored == [{"n": 1, "names": ["helpfulness"]}]
    assert sql_rows(collector.data_dir, "SELECT count() AS n FROM reviews") == [{"n": 0}]


def test_a_tenant_that_spans_keep_as_sent_is_taken_as_sent(start_collector, tmp_path):
    """Where spans' tenants are not scanned (a `keep` policy on the column), a score's tenant_id is not either:
    refusing it would keep scores from ever joining those spans."""
    config = tmp_path / "keep.toml"
    config.write_text('[redaction.columns]\nTenantId = "keep"\n')
    collector = start_collector("--config", str(config), migrated=True)
    mail = "ops.lead@corp-mail.com"
    status, answer = post(scores_url(collector), {"trace_id": "b" * 32, "name": "x", "value": 1, "tenant_id": mail})
    assert status == 200, answer
    assert sql_rows(collector.data_dir, "SELECT TenantId FROM scores") == [{"TenantId": mail}]
