"""Reviews end to end on a real collector process and the real engine: calls sent over OTLP/HTTP (OTLP/JSON
bodies, as any client may send them), reviewed through POST /v1/reviews and through `tracehouse review`, with
and without the running collector. SQL over llm_calls_scored shows each call's latest state; the reviews
table keeps every change. The queue puts errors, refusals, low scores and cost outliers first, then a random
share; tenants stay apart; retries store once; reasons are redacted; every malformed body gets a 400 naming
its field; the README's commands run as written."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from collector_process import CollectorProcess, sql_rows, wait_drained
from test_scores import post

pytestmark = pytest.mark.timeout(240)

KEYS = {"TRACEHOUSE_API_KEYS": "key-alpha=alpha, key-beta=beta"}
ALPHA = {"Authorization": "Bearer key-alpha"}
BETA = {"x-api-key": "key-beta"}
README = Path(__file__).resolve().parents[1] / "README.md"
TRACE_PREFIX = "4bf92f3577b34da6"


def trace_of(span_id: str) -> str:
    """Each call its own trace (user feedback on a trace covers every call in it)."""
    return TRACE_PREFIX + span_id


# span id -> (prompt tokens, extra attributes, status code): one of each kind the queue looks for.
CALLS = {
    "00000000000000e1": (100, {}, 2),
    "00000000000000f1": (100, {"llm.finish_reason": "content_filter"}, 0),
    "00000000000000a1": (100, {}, 0),  # gets a thumbs down
    "00000000000000c1": (400_000, {}, 0),  # costs 4000x the others
    "0000000000000001": (100, {}, 0),
    "0000000000000002": (100, {}, 0),
    "0000000000000003": (100, {}, 0),
    "00000000000000d1": (100, {}, 0),  # approved: not in the queue
}


def _otlp_json(calls: dict[str, tuple[int, dict, int]], service: str = "support-bot") -> bytes:
    now = time.time_ns()
    spans = []
    for n, (span_id, (prompt_tokens, extra, status)) in enumerate(calls.items()):
        attributes = {
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": prompt_tokens,
            "llm.token_count.completion": 20,
            "tracehouse.feature": "support",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": f"Question number {n}: where is order {span_id}?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": f"Answer {n}: it ships tomorrow.",
            **extra,
        }
        spans.append(
            {
                "traceId": trace_of(span_id),
                "spanId": span_id,
                "name": "ChatCompletion",
                "kind": 3,
                "startTimeUnixNano": str(now - (n + 1) * 1_000_000_000),
                "endTimeUnixNano": str(now - (n + 1) * 1_000_000_000 + 500_000_000),
                "status": {"code": status, "message": "upstream timeout" if status == 2 else ""},
                "attributes": [
                    {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                    for k, v in attributes.items()
                ],
            }
        )
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"spans": spans}],
            }
        ]
    }
    return json.dumps(body).encode()


def send_calls(collector: CollectorProcess, headers: dict[str, str], calls=CALLS) -> None:
    request = urllib.request.Request(
        collector.traces_url,
        data=_otlp_json(calls),
        headers={"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def tracehouse(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def reviews_url(collector: CollectorProcess) -> str:
    return collector.http_endpoint + "/v1/reviews"


def states(data_dir: Path, tenant: str = "alpha") -> dict[str, str]:
    wait_drained(data_dir)
    rows = sql_rows(data_dir, f"SELECT id, review_state FROM llm_calls_scored WHERE tenant_id = '{tenant}'")
    return {row["id"]: row["review_state"] for row in rows}


def test_reviews_through_the_api_and_the_cli_with_and_without_the_collector(start_collector, tmp_path):
    data = tmp_path / "data"
    collector = start_collector(env=KEYS, migrated=True)
    send_calls(collector, ALPHA)
    wait_drained(data)
    assert set(states(data).values()) == {"pending"}

    # The API: a reviewer's verdicts, the latest wins; a thumbs-down for the queue.
    flagged, approved = "00000000000000a1", "00000000000000d1"
    status, answer = post(
        reviews_url(collector),
        [
            {
                "trace_id": trace_of(approved),
                "span_id": approved,
                "state": "flagged",
                "reviewer": "kim",
                "timestamp": 1,
            },
            {
                "trace_id": trace_of(approved).upper(),
                "span_id": approved.upper(),
                "state": "approved",
                "reviewer": "kim",
            },
        ],
        ALPHA,
    )
    assert status == 200 and len(answer["ids"]) == 2
    score = {"trace_id": trace_of(flagged), "span_id": flagged, "name": "thumbs", "value": False, "source": "user"}
    assert post(collector.http_endpoint + "/v1/scores", score, ALPHA)[0] == 200
    assert states(data)[approved] == "approved"

    # The CLI through the running collector: set, then show with the history.
    done = tracehouse(data, "review", "set", flagged, "--flag", "--reason", "wrong order; mail jane.doe@example.com")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"review {flagged}: flagged (recorded through the collector)\n"
    row = sql_rows(
        data,
        f"SELECT review_state, reviewed_by, review_reason, reviewed_at FROM llm_calls_scored WHERE id = '{flagged}'",
    )[0]
    assert row["review_state"] == "flagged" and "@" in row["reviewed_by"] and row["reviewed_at"] is not None
    assert row["review_reason"] == "wrong order; mail [EMAIL]"  # redacted before the spool
    assert "jane.doe" not in collector.log()

    listed = tracehouse(data, "review", "list", "--state", "flagged", "--format", "jsonl")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["span_id"] for r in rows] == [flagged]
    assert rows[0]["prompt_text"] == f"Question number 2: where is order {flagged}?"
    assert rows[0]["response_text"] == "Answer 2: it ships tomorrow."
    table = tracehouse(data, "review", "list", "--feature", "support", "--model", "gpt-4o-mini")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:8] == ["time", "span", "id", "feature", "model", "cost", "state", "prompt"]
    assert len(lines) == 1 + len(CALLS)
    assert any(flagged in line and "flagged" in line and "Question number 2" in line for line in lines)

    # The queue: the pending calls worth a look, most urgent first, then a random share of the rest.
    queue = tracehouse(data, "review", "list", "--queue", "--limit", "10", "--format", "jsonl")
    assert queue.returncode == 0, queue.stderr
    picked = [(r["span_id"], r["why"]) for r in map(json.loads, queue.stdout.splitlines())]
    assert picked[:3] == [
        ("00000000000000e1", "error"),
        ("00000000000000f1", "refusal"),
        ("00000000000000c1", "cost outlier"),
    ]
    assert sorted(picked[3:]) == [
        ("0000000000000001", "sample"),
        ("0000000000000002", "sample"),
        ("0000000000000003", "sample"),
    ]
    # the flagged call is no longer pending; its thumbs-down would have put it third: reopen it
    assert tracehouse(data, "review", "set", flagged, "--reopen").returncode == 0
    queue = tracehouse(data, "review", "list", "--queue", "--limit", "4", "--format", "jsonl")
    picked = [(r["span_id"], r["why"]) for r in map(json.loads, queue.stdout.splitlines())]
    assert picked[:3] == [("00000000000000e1", "error"), ("00000000000000f1", "refusal"), (flagged, "low score")]
    assert len(picked) == 4 and picked[3][1] == "sample"  # a quarter of the queue at most: one sample

    # A span that is not in the store: nothing written, unless forced (it joins when the span lands).
    unknown = "00000000000000b9"
    refused = tracehouse(data, "review", "set", unknown, "--approve")
    assert refused.returncode == 1 and "no span 00000000000000b9 in the store, nothing written" in refused.stderr
    forced = tracehouse(
        data, "review", "set", unknown, "--reject", "--force", "--trace", trace_of(unknown), "--tenant", "alpha"
    )
    assert forced.returncode == 0, forced.stderr
    collector.stop()

    # Without a collector: the CLI writes to the store itself; show renders the call and its whole history.
    offline = tracehouse(data, "review", "set", flagged, "--reject", "--reason", "confirmed", "--reviewer", "lee")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == f"review {flagged}: rejected (recorded through the store)\n"
    shown = tracehouse(data, "review", "show", flagged)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"call {flagged}  trace {trace_of(flagged)}" in text and "model openai/gpt-4o-mini" in text
    assert "[user]\n  Question number 2" in text and "response:\n[assistant]\n  Answer 2: it ships tomorrow." in text
    assert "review rejected by lee" in text and "user feedback 0" in text
    history = text.split("review history:\n", 1)[1].splitlines()
    assert [line.split()[2] for line in history] == ["flagged", "pending", "rejected"]
    assert history[0].endswith("wrong order; mail [EMAIL]") and history[2].endswith("lee: confirmed")
    stored = sql_rows(data, "SELECT SpanId, State FROM reviews ORDER BY Timestamp")
    assert len(stored) == 6 and stored[-1] == {"SpanId": flagged, "State": "rejected"}

    # The forced review joins once its span lands.
    again = CollectorProcess(data, env=KEYS).start()
    try:
        send_calls(again, ALPHA, {unknown: (100, {}, 0)})
        assert states(data)[unknown] == "rejected"
    finally:
        again.stop()


def test_review_api_bad_input_tenants_retries(start_collector, tmp_path):
    data = tmp_path / "data"
    collector = start_collector(env=KEYS, migrated=True)
    send_calls(collector, ALPHA)
    url = reviews_url(collector)
    span = "0000000000000001"
    review = {"trace_id": trace_of(span), "span_id": span, "state": "approved"}

    assert post(url, review)[0] == 401  # keys are configured: no key, no review
    # Another tenant reviews alpha's span (it knows the ids): stored under beta, joined to nothing of alpha's.
    assert post(url, review, BETA)[0] == 200
    assert states(data)[span] == "pending"
    assert sql_rows(data, "SELECT TenantId FROM reviews") == [{"TenantId": "beta"}]

    # A retried request stores once.
    body = {**review, "state": "flagged", "reason": "tone"}
    first = post(url, body, ALPHA)
    assert first[0] == 200 and post(url, body, ALPHA) == first
    assert states(data)[span] == "flagged"
    assert len(sql_rows(data, "SELECT ReviewId FROM reviews WHERE TenantId = 'alpha'")) == 1

    for bad, message in [
        ({"span_id": span, "state": "approved"}, "trace_id: required (32 hex digits)"),
        ({"trace_id": trace_of(span), "state": "approved"}, "span_id: required (16 hex digits)"),
        ({"trace_id": trace_of(span), "span_id": span}, "state: required, one of approved, flagged, rejected, pending"),
        ({**review, "state": "ok"}, "state: unknown state 'ok'; one of approved, flagged, rejected, pending"),
        ({**review, "span_id": "xyz"}, "span_id: must be 16 hex digits (OTLP/JSON), got 'xyz'"),
        ({**review, "reason": "r" * 2049}, "reason: 2049 characters, at most 2048"),
        ({**review, "reviewer": 7}, "reviewer: must be a string, not a number"),
        ({**review, "verdict": "x"}, "'verdict': unknown field; the fields are id, trace_id, span_id, state"),
        ([review, {**review, "state": None}], "reviews[1].state: required"),
        (
            [{**review, "id": "r-1"}, {**review, "state": "rejected", "id": "r-1"}],
            "reviews[1].id: 'r-1' is the id of reviews[0] too",
        ),
        ("approved", "body must be a JSON object (one review) or a list of them"),
    ]:
        status, answer = post(url, bad, ALPHA)
        assert status == 400, (bad, answer)
        assert message in answer["message"], (message, answer)
    assert len(sql_rows(data, "SELECT ReviewId FROM reviews WHERE TenantId = 'alpha'")) == 1  # nothing partial


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("review", "set", "0000000000000001"),
            2,
            "one of the arguments --approve --flag --reject --reopen is required",
        ),
        (("review", "set", "xyz", "--approve"), 1, "SPAN_ID 'xyz': a span id is 16 hex digits"),
        (("review", "show", "123"), 1, "a span id is 16 hex digits"),
        (("review", "list", "--since", "yesterday"), 1, "--since: not a date, date-time or time ago: 'yesterday'"),
        (("review", "list", "--limit", "0"), 1, "--limit 0: between 1 and 10000"),
        (("review", "list", "--state", "done"), 2, "invalid choice: 'done'"),
        (("review", "set", "0000000000000001", "--approve", "--force"), 1, "no store in"),
    ],
)
def test_review_cli_bad_input_names_the_flag(tmp_path, args, code, message):
    result = tracehouse(tmp_path / "empty", *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_the_readme_review_commands_run_as_written(start_collector, tmp_path):
    """The README's "Feedback and review" commands, SPAN_ID replaced by a stored call's."""
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    send_calls(collector, {})
    wait_drained(data)
    block = README.read_text().split("<!-- review-commands -->\n```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) >= 4
    for command in commands:
        words = shlex.split(command.replace("SPAN_ID", "00000000000000a1"))
        assert words[0] == "tracehouse", command
        result = tracehouse(data, *words[1:])
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.strip(), command
    assert states(data, "")["00000000000000a1"] == "flagged"


def test_the_operators_tenant_is_taken_as_sent_where_keys_name_the_tenants():
    """`review set` sends the tenant it read from the stored span. With API keys the tenants are the
    operator's names, stored as configured (the key's tenant is stamped after redaction): one shaped like an
    e-mail is taken, not refused. Without keys the same tenant_id is the sender's word and is refused."""
    from tracehouse.collector.config import load_config
    from tracehouse.collector.errors import Invalid
    from tracehouse.collector.reviews import ReviewProcessor

    tenant = "ops.lead@corp-mail.com"
    body = json.dumps(
        {"trace_id": "b" * 32, "span_id": "c" * 16, "state": "approved", "tenant_id": tenant, "id": "r1"}
    ).encode()
    keyed = ReviewProcessor.from_config(load_config(environ={"TRACEHOUSE_API_KEYS": f"key-ops={tenant}"}))
    assert tenant in keyed.process(body, None, time.time_ns()).payload.decode()
    with pytest.raises(Invalid, match="tenant_id: holds what redaction removes"):
        ReviewProcessor.from_config(load_config(environ={})).process(body, None, time.time_ns())
