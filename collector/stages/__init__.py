"""Pipeline stages: pure functions over a batch of spans, run in order between decode and the writer."""

from __future__ import annotations

from collections.abc import Callable

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.config import Config

Stage = Callable[[SpanBatch], SpanBatch]


def default_stages(config: Config) -> list[Stage]:
    """The stages a collector runs, in order: normalize -> price -> redact -> sample content."""
    from tracehouse.collector.stages.normalize import normalize
    from tracehouse.collector.stages.price import Pricer
    from tracehouse.collector.stages.redact import build_redactor

    stages: list[Stage] = [normalize, Pricer.from_config(config).price]
    # Redaction stays last: it also scrubs what normalize and price copied into columns.
    redactor = build_redactor(config)
    if redactor is not None:
        stages.append(redactor)
    return stages
