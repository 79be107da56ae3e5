"""`tracehouse retention status`: the policy configured, whether the store has it, the oldest content and
metadata it holds, and its bytes by age. Reads through the running collector's endpoint, or the store
itself when none runs (like `tracehouse sql`)."""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any

from tracehouse.collector import retention
from tracehouse.collector.config import Config, add_flags

# Content as the retention TTLs expire it: any of the normalized content columns still set.
_OLDEST = """
SELECT
    toString(min(Timestamp)) AS oldest_span,
    toString(minIf(Timestamp, InputMessages != '' OR OutputMessages != '' OR SystemPrompt != ''
        OR ToolCalls != '' OR PromptTemplate != '' OR PromptVariables != '')) AS oldest_content,
    countIf(InputMessages != '' OR OutputMessages != '' OR SystemPrompt != '') AS spans_with_content,
    count() AS spans
FROM otel_traces
"""
# Partitions of otel_traces are days: bytes by the age of their day.
_BY_AGE = """
SELECT
    multiIf(age < 7, '< 7 days', age < 30, '7-30 days', age < 90, '30-90 days', age < 365, '90-365 days',
        '>= 365 days') AS bucket,
    min(age) AS youngest,
    sum(rows) AS rows,
    sum(bytes_on_disk) AS bytes
FROM (
    SELECT dateDiff('day', toDate(partition), today()) AS age, rows, bytes_on_disk
    FROM system.parts
    WHERE database = currentDatabase() AND table = 'otel_traces' AND active AND rows > 0
)
GROUP BY bucket
ORDER BY youngest
"""
_STORE_POLICY = "SELECT digest FROM tracehouse_views FINAL WHERE name = 'retention.sql'"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `retention` and its subcommands on the `tracehouse` parser."""
    command = subparsers.add_parser("retention", help="data lifecycle: the retention policy and what the store holds")
    sub = command.add_subparsers(dest="retention_command", required=True)
    status = sub.add_parser("status", help="the policy, the oldest content and metadata held, bytes by age")
    add_flags(status, "retention")
    return command


def _rows(config: Config, sql: str) -> list[dict[str, Any]]:
    from tracehouse.collector.query import read_rows

    return read_rows(config, sql)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def status(config: Config, out: IO[str]) -> int:
    from tracehouse.collector import store

    settings = config.retention
    print(f"policy     {settings.summary()}", file=out)
    recorded = _rows(config, _STORE_POLICY)
    wanted = store.retention_digest(settings)
    has_it = (recorded and recorded[0]["digest"] == wanted) or not recorded
    if has_it and retention.keeps_everything(settings):
        print("store      keeps everything (no TTL)", file=out)
    elif recorded and recorded[0]["digest"] == wanted:
        print("store      has this policy (TTLs applied; ClickHouse expires data in merges)", file=out)
    else:
        print(
            "store      has another policy: restart the collector or run `tracehouse migrate` to apply this one",
            file=out,
        )
    (oldest,) = _rows(config, _OLDEST)
    if int(oldest["spans"]) == 0:
        print("held       no spans", file=out)
    else:
        content = oldest["oldest_content"] if int(oldest["spans_with_content"]) else "none"
        held = f"{oldest['spans']} spans; oldest span {oldest['oldest_span']}, oldest content {content}"
        print(f"held       {held}", file=out)
    buckets = _rows(config, _BY_AGE)
    if buckets:
        print("by age     (days of the spans, on disk)", file=out)
        width = max(len(b["bucket"]) for b in buckets)
        for bucket in buckets:
            spans, size = int(bucket["rows"]), _size(int(bucket["bytes"]))
            print(f"  {bucket['bucket']:<{width}}  {spans:>12} spans  {size}", file=out)
    return 0


def run(args: argparse.Namespace, config: Config, out: IO[str] = sys.stdout) -> int:
    if args.retention_command == "status":
        return status(config, out)
    raise AssertionError(args.retention_command)
