"""Pipeline stages: pure functions over a batch of spans, run in order between decode and the writer."""

from __future__ import annotations

from collections.abc import Callable

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.config import Config

Stage = Callable[[SpanBatch], SpanBatch]


def default_stages(config: Config) -> list[Stage]:
    """The stages a collector runs, in order: normalize -> price -> sample content -> redact.

    Sampling only decides; redaction, last, removes dropped content. The redactor must stay last: it
    scans every column of the final row, so whatever a stage before it derives or copies is covered.
    Sampling before redaction spares scanning what is dropped.
    """
    from tracehouse.collector.stages.normalize import normalize
    from tracehouse.collector.stages.price import Pricer
    from tracehouse.collector.stages.redact import build_redactor
    from tracehouse.collector.stages.redact.settings import RedactionSettings
    from tracehouse.collector.stages.redact.stage import Redactor
    from tracehouse.collector.stages.sample import ContentSampler

    stages: list[Stage] = [normalize, Pricer.from_config(config).price]
    sampler = ContentSampler.from_config(config)
    if sampler is not None:
        stages.append(sampler)
    redactor = build_redactor(config)
    if redactor is None and sampler is not None:
        # Redaction is off, but dropped content must still go: a redactor with nothing to detect.
        redactor = Redactor(RedactionSettings(detectors=(), default_policies=False))
    if redactor is not None:
        stages.append(redactor)
    return stages
