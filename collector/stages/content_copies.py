"""Content copies: with `raw_messages = "drop"`, a prompt and its answer are stored once, in the typed columns.

An OpenInference chat span carries each message three times: in the request JSON (`input.value`), in the
flattened `llm.input_messages.*` keys, and in the typed InputMessages column normalize writes; likewise the
answer. By default SpanAttributes keeps what the app sent (the OTel ClickHouse exporter's schema). With

    [content_copies]
    raw_messages = "drop"   # env TRACEHOUSE_RAW_MESSAGES; default "keep"

a span whose typed columns hold a side whole (input: InputMessages, with SystemPrompt; output: OutputMessages)
stores that side's raw message attributes (columns.RAW_INPUT_MESSAGE_KEYS / RAW_OUTPUT_MESSAGE_KEYS) nowhere
else. A side stays as sent when normalize cut its typed form, which then says so: a clipped text or inline
media (`…[N chars truncated]` / `…[N chars omitted]`),
messages past 256 (a `"role":"truncated"` marker), parts or tool calls past a message's 64 (`…[parts after the
first 63 omitted]`). Only LLM calls and tool
steps lose their copies, whose typed messages normalize reads from those raw attributes: a retriever's typed
documents (an embedding's texts, a reranker's) come from keys of their own, not from `output.value`. It runs
before redaction, which then scans one copy, not three.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import (
    LLM_SPAN_KIND,
    RAW_INPUT_MESSAGE_KEYS,
    RAW_OUTPUT_MESSAGE_KEYS,
    remember_for_key,
)
from tracehouse.collector.settings import ConfigError, Section, check_keys

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

ENV_RAW_MESSAGES = "TRACEHOUSE_RAW_MESSAGES"
KEEP, DROP = "keep", "drop"
_KEYS = {"raw_messages"}

# What normalize writes where its typed form is not the whole of the raw one (stages/normalize/values.clip,
# messages.media_part, messages.cut_content, messages.omitted_marker): tests/test_content_copies.py drives each.
_CUT_NOTE = "…["
_OMITTED_MESSAGES = '"role":"truncated"'
# The conventions a raw message key belongs to (OpenLLMetry's numbered gen_ai.prompt / gen_ai.completion, OTel
# GenAI's gen_ai.*, else OpenInference's): normalize reads one of them per side, so a side whose keys come
# from two keeps them all (the other may say something the typed form does not).
_LEGACY_PREFIXES = ("gen_ai.prompt", "gen_ai.completion")

# The kinds (LlmSpanKind) whose typed messages are read from the raw message attributes.
_RESTATING_KINDS = frozenset({"LLM", "TOOL"})

_NONE, _INPUT, _OUTPUT = 0, 1, 2
PLAN_ENTRIES = 4_096  # key sets remembered; when full it starts again (a client sending ever new ones)


@dataclass(frozen=True)
class _Side:
    """One side's raw keys in a key set, and whether they come from two conventions (then they all stay)."""

    keys: tuple[str, ...]
    mixed: bool


_NO_SIDE = _Side((), False)


def _convention(key: str) -> int:
    return 2 if key.startswith(_LEGACY_PREFIXES) else 1 if key.startswith("gen_ai.") else 0


def _side_of(keys: list[str]) -> _Side:
    if not keys:
        return _NO_SIDE
    return _Side(tuple(keys), len({_convention(key) for key in keys}) > 1)


@dataclass(frozen=True)
class ContentCopiesSettings:
    """The `[content_copies]` section; the default keeps the raw attributes beside the typed columns."""

    raw_messages: str = KEEP

    @property
    def drops_raw(self) -> bool:
        return self.raw_messages == DROP


def parse_content_copies(table: Mapping[str, Any], environ: Mapping[str, str]) -> ContentCopiesSettings:
    check_keys(table, _KEYS, "[content_copies]")
    value = environ.get(ENV_RAW_MESSAGES) or table.get("raw_messages", KEEP)
    if value not in (KEEP, DROP):
        raise ConfigError(f'content_copies.raw_messages must be "keep" or "drop", got {value!r}')
    return ContentCopiesSettings(value)


CONTENT_COPIES = Section(
    "content_copies",
    (ENV_RAW_MESSAGES,),
    parse_content_copies,
    "content copies: keep the raw message attributes beside the typed message columns, or store messages once",
)


def noted_whole(typed: str) -> bool:
    """Whether a typed text (message JSON or system prompt) carries none of normalize's notes of a cut."""
    return _CUT_NOTE not in typed and _OMITTED_MESSAGES not in typed


def _holds(side: _Side, typed: str) -> bool:
    """Whether the typed text holds all of this side's raw keys say."""
    return not side.mixed and noted_whole(typed)


class RawMessages:
    """The stage: SpanAttributes without the raw message attributes of the sides the typed columns hold."""

    def __init__(self) -> None:
        self._sides: dict[str, int] = {}  # key -> the side it restates (answers cached: keys repeat)
        self._plans: dict[tuple[str, ...], tuple[_Side, _Side]] = {}  # a key set -> its two sides

    def _side(self, key: str) -> int:
        side = self._sides.get(key)
        if side is None:
            if any(fnmatchcase(key, glob) for glob in RAW_INPUT_MESSAGE_KEYS):
                side = _INPUT
            elif any(fnmatchcase(key, glob) for glob in RAW_OUTPUT_MESSAGE_KEYS):
                side = _OUTPUT
            else:
                side = _NONE
            remember_for_key(self._sides, key, side)
        return side

    def _plan(self, keys: tuple[str, ...]) -> tuple[_Side, _Side]:
        """A key set's two sides (spans of one instrumentation share their key sets)."""
        plan = self._plans.get(keys)
        if plan is None:
            sides = [self._side(key) for key in keys]
            plan = (
                _side_of([k for k, s in zip(keys, sides, strict=True) if s == _INPUT]),
                _side_of([k for k, s in zip(keys, sides, strict=True) if s == _OUTPUT]),
            )
            if len(self._plans) >= PLAN_ENTRIES:
                self._plans.clear()
            self._plans[keys] = plan
        return plan

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        cols = batch.columns
        attributes = cols.get("SpanAttributes")
        inputs, system, outputs = cols.get("InputMessages"), cols.get("SystemPrompt"), cols.get("OutputMessages")
        kinds = cols.get(LLM_SPAN_KIND)
        if not attributes or not kinds or (not inputs and not outputs):
            return batch
        n = len(batch)
        inputs, system, outputs = inputs or [""] * n, system or [""] * n, outputs or [""] * n
        out: list[Any] | None = None
        for i in range(n):
            attrs = attributes[i]
            typed_in, typed_out = inputs[i], outputs[i]
            if not attrs or not (typed_in or typed_out) or kinds[i] not in _RESTATING_KINDS:
                continue
            raw_in, raw_out = self._plan(tuple(attrs))
            drop: list[str] = []
            if raw_in.keys and typed_in and _holds(raw_in, typed_in) and noted_whole(system[i]):
                drop.extend(raw_in.keys)
            if raw_out.keys and typed_out and _holds(raw_out, typed_out):
                drop.extend(raw_out.keys)
            if drop:
                kept = dict(attrs)
                for key in drop:
                    del kept[key]
                if out is None:
                    out = list(attributes)
                out[i] = kept
        if out is not None:
            cols["SpanAttributes"] = out
        return batch


def build(config: Config) -> RawMessages | None:
    """The stage when raw messages are dropped; None by default (SpanAttributes as sent)."""
    return RawMessages() if config.content_copies.drops_raw else None
