"""Pipeline stages: pure functions over a batch of spans, run in order between decode and the writer.

Every stage package or module exposes `build(config) -> Stage | None` (None: the stage has nothing
to do with this configuration) and reads its settings from its own section of the config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tracehouse.collector.batch import SpanBatch

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

Stage = Callable[[SpanBatch], SpanBatch]


def default_stages(config: Config) -> list[Stage]:
    """The stages a collector runs, in order: normalize -> price -> sample content -> content copies -> redact
    -> retain.

    Sampling only decides; redaction, last, removes dropped content. Content copies (off by default) leaves out
    the raw message attributes the typed columns restate, so redaction scans one copy. The redactor must stay
    last: it scans every column of the final row, so whatever a stage before it derives or copies is covered.
    Sampling before redaction spares scanning what is dropped. Retain, after it, only copies what
    redaction left in SpanAttributes (its metadata keys, for when content expires).
    """
    from tracehouse.collector.stages import content_copies, normalize, price, redact, retain, sample

    redactor = redact.build(config)
    # A value normalization cuts is redacted whole first: redaction, last, would see only what the cut left.
    before_cut = redactor.redacted if config.redaction.enabled and redactor is not None else None
    built = [
        normalize.build(config, before_cut),
        *(stage.build(config) for stage in (price, sample, content_copies)),
        redactor,
        retain.build(config),
    ]
    return [stage for stage in built if stage is not None]
