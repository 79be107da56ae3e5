"""The collector watches itself: Prometheus metrics, served on the OTLP/HTTP port at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class CollectorMetrics:
    """One registry per collector (tests run several in one process)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tracehouse_requests", "OTLP export requests by transport and outcome", ["transport", "outcome"], registry=r
        )
        self.spans_received = Counter("tracehouse_spans_received", "Spans in decoded requests", registry=r)
        self.spans_accepted = Counter("tracehouse_spans_accepted", "Spans acknowledged to clients", registry=r)
        self.spans_rejected = Counter(
            "tracehouse_spans_rejected", "Spans not accepted, by reason", ["reason"], registry=r
        )
        self.duplicate_requests = Counter(
            "tracehouse_duplicate_requests",
            "Retried requests answered from the spool instead of storing their spans again",
            registry=r,
        )
        self.redactions = Counter(
            "tracehouse_redactions", "Values redacted before storage, by detector or policy", ["kind"], registry=r
        )
        self.unpriced_calls = Counter(
            "tracehouse_unpriced_calls", "LLM calls whose model has no price (cost NULL, source unknown)", registry=r
        )
        self.spool_bytes = Gauge("tracehouse_spool_bytes", "Bytes in the spool not yet in the store", registry=r)
        self.spool_oldest_age = Gauge(
            "tracehouse_spool_oldest_age_seconds", "Age of the oldest record not yet in the store", registry=r
        )
        self.insert_batches = Counter("tracehouse_insert_batches", "Inserts that succeeded", registry=r)
        self.insert_rows = Counter("tracehouse_insert_rows", "Rows inserted into ClickHouse", registry=r)
        self.insert_failures = Counter(
            "tracehouse_insert_failures", "Inserts that failed, by kind", ["kind"], registry=r
        )
        self.insert_latency = Histogram(
            "tracehouse_insert_latency_seconds",
            "Time one ClickHouse insert took",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.dead_lettered = Counter(
            "tracehouse_dead_lettered_batches", "Batches ClickHouse refused as invalid, kept in deadletter/", registry=r
        )
        self.dead_lettered_rows = Counter(
            "tracehouse_dead_lettered_rows", "Rows ClickHouse refused as invalid, kept in deadletter/", registry=r
        )
        self.store_up = Gauge("tracehouse_store_up", "1 when the last store operation succeeded", registry=r)
        # Background tasks (drainer, writer) are supervised: these say whether each is doing its job.
        self.task_up = Gauge(
            "tracehouse_task_up", "1 while a background task runs (drainer, writer)", ["task"], registry=r
        )
        self.task_failing = Gauge(
            "tracehouse_task_failing", "1 while a background task fails with an unexpected error", ["task"], registry=r
        )
        self.task_errors = Counter(
            "tracehouse_task_errors",
            "Unexpected errors that stopped a background task (it is restarted)",
            ["task"],
            registry=r,
        )
        self.last_insert_time = Gauge(
            "tracehouse_task_last_success_timestamp_seconds",
            "Unix time of a background task's last successful insert",
            ["task"],
            registry=r,
        )
        self.last_error_time = Gauge(
            "tracehouse_task_last_error_timestamp_seconds",
            "Unix time of a background task's last unexpected error",
            ["task"],
            registry=r,
        )
        self.drain_stalled = Gauge(
            "tracehouse_drain_stalled_seconds",
            "How long spans have waited in the spool with no insert committing (0 when none wait)",
            registry=r,
        )
        self.spool_sync_failures = Counter(
            "tracehouse_spool_sync_failures",
            "Spool writes or fsyncs that failed (their requests were refused, not acknowledged)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
