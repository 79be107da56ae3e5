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

    return [normalize, Pricer.from_config(config).price]
