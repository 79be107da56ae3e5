"""Scores share the spans' spool: records carry their table (scores) or none (spans, as every record did
before scores); a spool written by the code before this change drains into otel_traces unchanged, next to
score records of the new code; a full spool refuses scores with 503 and Retry-After, and they drain once
the store is back; with the spool off, scores are acknowledged once inserted."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from collector_process import sql_rows
from test_scores import post, scores_url

from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.scores import SCORES_TABLE, ScoreProcessor
from tracehouse.collector.spool import Spool

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
# The last commit whose spool wrote records without a table (before scores).
SPOOL_BEFORE_SCORES = "5f2863dc0e5c115d1130b31ea6211244f064a7d6"
TRACE = "3c" * 16


def _spans(first: int, count: int) -> tuple[bytes, bytes]:
    """Encoded LLM spans as the pipeline spools them."""
    columns: dict[str, list] = {name: [] for name in OTEL_COLUMNS}
    for i in range(first, first + count):
        row = {
            "Timestamp": 1_740_823_200_000_000_000 + i,
            "TraceId": TRACE,
            "SpanId": f"{i + 1:016x}",
            "ParentSpanId": "",
            "TraceState": "",
            "SpanName": f"old-{i}",
            "SpanKind": "Client",
            "ServiceName": "spooled",
            "ResourceAttributes": {},
            "ScopeName": "",
            "ScopeVersion": "",
            "SpanAttributes": {},
            "Duration": 1000,
            "StatusCode": "Unset",
            "StatusMessage": "",
            "Events.Timestamp": [],
            "Events.Name": [],
            "Events.Attributes": [],
            "Links.TraceId": [],
            "Links.SpanId": [],
            "Links.TraceState": [],
            "Links.Attributes": [],
        }
        for name, value in row.items():
            columns[name].append(value)
    columns["LlmSpanKind"] = ["LLM"] * count
    return encode_rows(SpanBatch(columns))


def _old_spool_module(tmp_path: Path):
    """collector/spool.py as it was before scores, from git (read only: nothing is checked out)."""
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{SPOOL_BEFORE_SCORES}:collector/spool.py"], capture_output=True, text=True
    )
    if shown.returncode != 0:
        pytest.skip(f"needs the git history of the repository: {shown.stderr.strip()}")
    path = tmp_path / "spool_before_scores.py"
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location("spool_before_scores", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_records_keep_their_table_and_a_read_never_mixes_tables(tmp_path):
    spool = Spool(tmp_path, budget_bytes=1 << 20)
    spool.open()
    spans_header, spans = _spans(0, 2)
    scores = ScoreProcessor().process(json.dumps({"trace_id": TRACE, "name": "x", "value": 1}).encode(), None, 1)
    ends = [
        spool.append(spans_header, spans, 2, bytes(16)),
        spool.append(scores.header, scores.payload, 1, bytes(16), SCORES_TABLE),
        spool.append(scores.header, scores.payload, 1, bytes(16), SCORES_TABLE),
        spool.append(spans_header, spans, 2, bytes(16)),
    ]
    asyncio.run(spool.sync(ends[-1]))
    spool.close()
    reopened = Spool(tmp_path, budget_bytes=1 << 20)
    reopened.open()
    groups = []
    position = reopened.committed
    while position < ends[-1]:
        records = reopened.read(position, max_rows=100)
        groups.append([(r.table, r.header, r.rows) for r in records])
        position = records[-1].end
    assert groups == [
        [("", spans_header, 2)],
        [(SCORES_TABLE, scores.header, 1), (SCORES_TABLE, scores.header, 1)],
        [("", spans_header, 2)],
    ]
    with pytest.raises(ValueError, match="not a table name"):
        reopened.append(b"a", b"[1]\n", 1, bytes(16), "scores; DROP")


def test_a_spool_written_before_scores_drains_into_otel_traces_beside_new_score_records(tmp_path, start_collector):
    old = _old_spool_module(tmp_path)
    data = tmp_path / "data"
    old_spool = old.Spool(data / "spool", budget_bytes=1 << 20)
    old_spool.open()
    header, payload = _spans(0, 3)
    end = old_spool.append(header, payload, 3, bytes(range(16)))
    asyncio.run(old_spool.sync(end))
    old_spool.close()
    # The new code goes on in the same spool: a score record after the old span records.
    spool = Spool(data / "spool", budget_bytes=1 << 20)
    spool.open()
    assert [(r.table, r.rows) for r in spool.read(spool.committed, 100)] == [("", 3)]
    body = {"trace_id": TRACE, "span_id": f"{2:016x}", "name": "thumbs", "value": True, "source": "user"}
    scores = ScoreProcessor().process(json.dumps(body).encode(), None, 1_740_823_300_000_000_000)
    asyncio.run(spool.sync(spool.append(scores.header, scores.payload, 1, bytes(16), SCORES_TABLE)))
    spool.close()

    collector = start_collector(data_dir=data, migrated=True)
    rows = sql_rows(
        collector.data_dir, f"SELECT id, user_feedback FROM llm_calls_scored WHERE trace_id = '{TRACE}' ORDER BY id"
    )
    assert rows == [
        {"id": f"{1:016x}", "user_feedback": 1},  # the trace's user score
        {"id": f"{2:016x}", "user_feedback": 1},  # its own
        {"id": f"{3:016x}", "user_feedback": 1},
    ]
    assert sql_rows(collector.data_dir, "SELECT count() AS n FROM otel_traces") == [{"n": 3}]
    assert sql_rows(collector.data_dir, "SELECT count() AS n FROM scores") == [{"n": 1}]


def test_a_full_spool_refuses_scores_with_503_and_retry_after_then_they_drain(tmp_path, start_collector):
    fault = tmp_path / "store-down"
    fault.touch()
    collector = start_collector(
        "--spool-budget-bytes", "1", env={"TRACEHOUSE_FAULT_STORE_UNAVAILABLE_FILE": str(fault)}
    )
    body = {"trace_id": TRACE, "name": "rating", "value": 5}
    status, first = post(scores_url(collector), body)
    assert status == 200  # durable in the spool though the store is away
    status, refused = post(scores_url(collector), {**body, "value": 4})
    assert status == 503 and int(refused["_headers"]["Retry-After"]) >= 1
    assert "spool" in refused["message"]
    fault.unlink()
    deadline = time.monotonic() + 60
    while True:  # what a client does on 503: retry after the delay, until the spool has room again
        status, second = post(scores_url(collector), {**body, "value": 4})
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200
    rows = sql_rows(collector.data_dir, "SELECT ScoreId, Value FROM scores ORDER BY Value")
    assert rows == [{"ScoreId": second["ids"][0], "Value": 4}, {"ScoreId": first["ids"][0], "Value": 5}]


def test_without_the_spool_scores_are_acknowledged_once_inserted(tmp_path, start_collector):
    fault = tmp_path / "store-down"
    collector = start_collector(
        "--no-spool", env={"TRACEHOUSE_FAULT_STORE_UNAVAILABLE_FILE": str(fault)}, migrated=True
    )
    body = {"id": "s-1", "trace_id": TRACE, "name": "rating", "value": 2, "timestamp": 1_740_823_300_000_000_000}
    assert post(scores_url(collector), body) == (200, {"ids": ["s-1"]})
    fault.touch()
    status, refused = post(scores_url(collector), {**body, "id": "s-2"})
    assert status == 503 and "store unavailable" in refused["message"]
    fault.unlink()
    assert post(scores_url(collector), body)[0] == 200  # a retry of s-1: the same row, collapsed by the table
    rows = sql_rows(collector.data_dir, "SELECT ScoreId, Value FROM scores FINAL")
    assert rows == [{"ScoreId": "s-1", "Value": 2}]
