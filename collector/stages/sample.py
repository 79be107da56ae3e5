"""Content sampling: keep prompts and responses for the calls worth reading, drop them for a share of
the rest. Never metadata: model, tokens, cost, latency and ids stay on every span, so cost
accounting stays exact.

Content is always kept for spans with an error, a refusal (finish reason content_filter), a
duration over `slow_ms`, or a cost over `costly_usd`, and for every other span of the same trace in
the same request; of the rest, `content_share` of the traces keep it, chosen by a hash of the trace
id, so all spans of a trace get the same decision in every request and on every collector. The
decision is stored in `ContentSampled`: `error`, `refusal`, `slow`, `costly`, `share` (kept) or
`dropped`; '' while sampling is off. The redaction stage, which runs next, removes dropped
content with the same key list as its content-free mode (one place for what counts as content).

    [sampling]
    content_share = 0.1     # keep content for 10% of ordinary traces (default 1: sampling off)
    slow_ms = 20000         # always keep spans slower than this (0: no slow rule)
    costly_usd = 0.05       # always keep calls that cost more than this (0: no cost rule)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import (
    CONTENT_SAMPLED,
    COST_USD,
    SAMPLED_COSTLY,
    SAMPLED_DROPPED,
    SAMPLED_ERROR,
    SAMPLED_REFUSAL,
    SAMPLED_SHARE,
    SAMPLED_SLOW,
)
from tracehouse.collector.settings import ConfigError, Section, check_keys

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

ENV_SHARE = "TRACEHOUSE_CONTENT_SHARE"
_KEYS = {"content_share", "slow_ms", "costly_usd"}
_HASH_SPACE = 1 << 32


@dataclass(frozen=True)
class SamplingSettings:
    """The `[sampling]` section; the defaults keep every span's content (sampling off)."""

    content_share: float = 1.0
    slow_ms: float = 0.0
    costly_usd: Decimal = Decimal(0)

    @property
    def active(self) -> bool:
        return self.content_share < 1.0


def parse_sampling(table: Mapping[str, Any], environ: Mapping[str, str]) -> SamplingSettings:
    check_keys(table, _KEYS, "[sampling]")
    raw_share = environ.get(ENV_SHARE) or table.get("content_share", 1.0)
    try:
        share = float(raw_share)
        slow_ms = float(table.get("slow_ms", 0))
        costly = Decimal(str(table.get("costly_usd", 0)))
    except (TypeError, ValueError, InvalidOperation):
        raise ConfigError("[sampling]: content_share, slow_ms and costly_usd must be numbers") from None
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"sampling.content_share must be between 0 and 1, got {share}")
    return SamplingSettings(share, slow_ms, costly)


SAMPLING = Section("sampling", (ENV_SHARE,), parse_sampling, "content sampling: the share of traces that keep content")


def build(config: Config) -> ContentSampler | None:
    """The stage for this config, or None when every span keeps its content (the default)."""
    settings = config.sampling
    return ContentSampler(settings.content_share, settings.slow_ms, settings.costly_usd) if settings.active else None


class ContentSampler:
    def __init__(self, share: float, slow_ms: float = 0.0, costly_usd: Decimal = Decimal(0)) -> None:
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"sampling.content_share must be between 0 and 1, got {share}")
        self.share = share
        self._threshold = int(share * _HASH_SPACE)
        self._slow_ns = int(slow_ms * 1_000_000) if slow_ms > 0 else 0
        self._costly = costly_usd if costly_usd > 0 else None

    def keeps_trace(self, trace_id: str) -> bool:
        """The share decision: the trace id's first 32 bits (hex, uniformly random) against the share."""
        try:
            return int(trace_id[:8], 16) < self._threshold
        except ValueError:
            return True

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        cols = batch.columns
        n = len(batch)
        reasons = [""] * n
        status, error_type = cols["StatusCode"], cols.get("ErrorType")
        finish, cost, duration = cols.get("FinishReason"), cols.get(COST_USD), cols["Duration"]
        for i in range(n):
            if status[i] == "Error" or (error_type and error_type[i]):
                reasons[i] = SAMPLED_ERROR
            elif finish and finish[i] == "content_filter":
                reasons[i] = SAMPLED_REFUSAL
            elif self._slow_ns and duration[i] > self._slow_ns:
                reasons[i] = SAMPLED_SLOW
            elif self._costly is not None and cost and cost[i] is not None and cost[i] > self._costly:
                reasons[i] = SAMPLED_COSTLY
        trace_ids = cols["TraceId"]
        outlier_traces = {trace_ids[i]: reasons[i] for i in range(n) if reasons[i]}
        decided: dict[str, str] = {}
        for i in range(n):
            if reasons[i]:
                continue
            trace_id = trace_ids[i]
            reason = outlier_traces.get(trace_id)
            if reason is None:
                reason = decided.get(trace_id)
                if reason is None:
                    reason = decided[trace_id] = SAMPLED_SHARE if self.keeps_trace(trace_id) else SAMPLED_DROPPED
            reasons[i] = reason
        cols[CONTENT_SAMPLED] = reasons
        return batch
