"""Collector health (collector-health.json): is the pipeline healthy? Ingest rate, freshness, pricing and
redactions from the stored spans; rejected spans, spool, inserts and the store from the collector's own
Prometheus metrics."""

from __future__ import annotations

from typing import Any

from .panels import (
    CLICKHOUSE_VARIABLE,
    PROMETHEUS_VARIABLE,
    SERVICE_ANY,
    Layout,
    barchart,
    dashboard,
    prometheus,
    table,
    timeseries,
)
from .queries import RAW_COLUMNS, where

RATE = "$__rate_interval"
SERVICE_FILTER = where(RAW_COLUMNS, ("service",))


def collector_health() -> dict[str, Any]:
    g = Layout()
    g.row("Stored spans (ClickHouse)")
    g.add(
        timeseries(
            "Ingest rate by service",
            "Spans stored per second, by the time the span started",
            f"""
            SELECT $__timeInterval(Timestamp) AS time, ServiceName AS service, count() / ($__interval_s) AS spans_per_s
            FROM otel_traces
            WHERE $__timeFilter(Timestamp){SERVICE_FILTER}
            GROUP BY time, service
            ORDER BY time
            """,
            "short",
            series_label="service",
            stacked=True,
        ),
        12,
        8,
    )
    g.add(
        table(
            "Freshness by service",
            "Seconds from the newest stored span's end to now. A growing number means spans arrive late, "
            "wait in the spool, or stopped (compare with the spool age below).",
            f"""
            SELECT ServiceName AS service, count() AS spans,
              max(Timestamp) AS newest_span,
              dateDiff('millisecond', max(Timestamp + toIntervalNanosecond(Duration)), now64(3)) / 1000 AS lag_s
            FROM otel_traces
            WHERE $__timeFilter(Timestamp){SERVICE_FILTER}
            GROUP BY service
            ORDER BY lag_s DESC
            """,
            units={"lag_s": "s"},
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Span end to insert lag",
            "Seconds from a span's end to its row reaching ClickHouse (InsertedAt): receive, spool and insert "
            "delay together; p50 and p95 per interval.",
            f"""
            SELECT $__timeInterval(Timestamp) AS time,
              quantile(0.5)(lag_ms) / 1000 AS p50_s,
              quantile(0.95)(lag_ms) / 1000 AS p95_s
            FROM (
              SELECT Timestamp, ServiceName,
                greatest(dateDiff('millisecond', Timestamp + toIntervalNanosecond(Duration), InsertedAt), 0) AS lag_ms
              FROM otel_traces
              WHERE $__timeFilter(Timestamp){SERVICE_FILTER}
            )
            GROUP BY time
            ORDER BY time
            """,
            "s",
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Pricing of LLM calls",
            "Model calls per interval by where their price came from; 'unknown' are unpriced calls",
            f"""
            SELECT $__timeInterval(Timestamp) AS time, CostSource AS cost_source, count() AS calls
            FROM otel_traces
            WHERE $__timeFilter(Timestamp) AND CostSource != ''{SERVICE_FILTER}
            GROUP BY time, cost_source
            ORDER BY time
            """,
            "short",
            series_label="cost_source",
            stacked=True,
            bars=True,
        ),
        8,
        8,
    )
    g.add(
        barchart(
            "Redactions by kind",
            "Values the redaction stage replaced, by detector or rule (only counts are stored)",
            f"""
            SELECT kind, sum(n) AS redactions
            FROM otel_traces
            ARRAY JOIN mapKeys(RedactionCounts) AS kind, mapValues(RedactionCounts) AS n
            WHERE $__timeFilter(Timestamp){SERVICE_FILTER}
            GROUP BY kind
            ORDER BY redactions DESC
            """,
        ),
        8,
        8,
    )
    g.add(
        timeseries(
            "Redactions over time",
            "Values redacted per interval",
            f"""
            SELECT $__timeInterval(Timestamp) AS time, sum(arraySum(mapValues(RedactionCounts))) AS redactions
            FROM otel_traces
            WHERE $__timeFilter(Timestamp){SERVICE_FILTER}
            GROUP BY time
            ORDER BY time
            """,
            "short",
            bars=True,
        ),
        8,
        8,
    )
    g.row("Collector process (Prometheus)")
    g.add(
        prometheus(
            "Spans received, accepted and rejected",
            "Spans per second through the receivers; rejected by reason (invalid, unavailable)",
            [
                (f"sum(rate(tracehouse_spans_received_total[{RATE}]))", "received"),
                (f"sum(rate(tracehouse_spans_accepted_total[{RATE}]))", "accepted"),
                (f"sum by (reason) (rate(tracehouse_spans_rejected_total[{RATE}]))", "rejected {{reason}}"),
            ],
            "short",
        ),
        12,
        8,
    )
    g.add(
        prometheus(
            "Export requests by outcome",
            "OTLP export requests per second by transport and outcome",
            [(f"sum by (transport, outcome) (rate(tracehouse_requests_total[{RATE}]))", "{{transport}} {{outcome}}")],
            "reqps",
        ),
        12,
        8,
    )
    g.add(
        prometheus(
            "Spool backlog",
            "Bytes acknowledged but not yet in ClickHouse",
            [("sum(tracehouse_spool_bytes)", "spool bytes")],
            "bytes",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Receive-to-insert lag",
            "Age of the oldest spooled record not yet in ClickHouse: how far inserts lag behind receipt. Under a"
            " steady flow it rises and falls by up to batch_linger_ms (2 s by default): the drainer holds small"
            " batches of spans that long for fewer, bigger inserts",
            [("max(tracehouse_spool_oldest_age_seconds)", "oldest unsent")],
            "s",
        ),
        8,
        8,
    )
    insert_latency = f"sum by (le) (rate(tracehouse_insert_latency_seconds_bucket[{RATE}]))"
    g.add(
        prometheus(
            "Insert latency",
            "Time one ClickHouse insert took",
            [(f"histogram_quantile({q}, {insert_latency})", legend) for q, legend in (("0.5", "p50"), ("0.95", "p95"))],
            "s",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Rows inserted",
            "Rows written to ClickHouse per second",
            [(f"sum(rate(tracehouse_insert_rows_total[{RATE}]))", "rows")],
            "short",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Insert failures and dead letters",
            "Failed inserts by kind (retried), and batches ClickHouse refused (kept in deadletter/)",
            [
                (f"sum by (kind) (increase(tracehouse_insert_failures_total[{RATE}]))", "failed {{kind}}"),
                (f"sum(increase(tracehouse_dead_lettered_batches_total[{RATE}]))", "dead-lettered"),
            ],
            "short",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Store up",
            "1 when the collector's last ClickHouse operation succeeded",
            [("min(tracehouse_store_up)", "store up")],
            "short",
        ),
        8,
        8,
    )
    return dashboard(
        "tracehouse-collector",
        "tracehouse / Collector health",
        "Is the pipeline healthy: ingest rate, freshness, rejected spans, spool, inserts, redactions, pricing.",
        g,
        [CLICKHOUSE_VARIABLE, PROMETHEUS_VARIABLE, SERVICE_ANY],
        time_from="now-6h",
    )
