"""A shortcut for the commonest LLM span: an OpenInference chat call (`openinference.span.kind` LLM) whose
messages are plain role + content pairs, with no tools or templates, and no events of another
convention (a streamed call's first-token event is read as the mapper reads it).

The general path reads such a span through a fields dict, a SpanView, the indexed-list grouping (one dict per
message), the per-field conversion tables and a dozen lookups of keys the span does not have. Whether a span is
this simple depends on its set of keys alone, so it is decided once per key text (`plan`, remembered like the
dispatch and the list plans): which messages there are, in index order, and which of their keys; then each span
with those keys is read with the lookups it needs and written straight into the columns (`write`).

What it writes is what `openinference.extract` then `finalize.write_llm_columns` write, column by column: the
same helpers decide every value (the parameters, the token counts, the message columns), and what the shortcut
takes for granted is checked on the key set: every key it does not read is one the mapper never reads either
(`openinference.READ_KEYS`, `READ_PREFIXES`; tests/test_normalize_fast_paths.py records what the mapper really
reads). tests/test_decode_normalize_pinned.py pins the columns over a varied corpus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tracehouse.collector.stages.normalize import limits, openinference
from tracehouse.collector.stages.normalize.finalize import Columns, write_messages
from tracehouse.collector.stages.normalize.finish import normalize_finish_reason
from tracehouse.collector.stages.normalize.flat import MAX_INDEX_DIGITS
from tracehouse.collector.stages.normalize.mapper import KEY_SEPARATOR, Mapper
from tracehouse.collector.stages.normalize.memo import KeyTextMemo
from tracehouse.collector.stages.normalize.messages import KNOWN_ROLES, Message, messages_from_payload, normalize_role
from tracehouse.collector.stages.normalize.providers import normalize_provider
from tracehouse.collector.stages.normalize.span import event_offset
from tracehouse.collector.stages.normalize.tokens import UINT64_MAX, input_and_total
from tracehouse.collector.stages.normalize.values import clip, cut, dumps, json_object, string_list

_MAX_TEXT = limits.MAX_TEXT_CHARS
_MAX_SHORT = limits.MAX_SHORT_CHARS
_MAX_JSON = limits.MAX_JSON_CHARS
_ROLE, _CONTENT = "message.role", "message.content"
_INPUTS, _OUTPUTS = "llm.input_messages.", "llm.output_messages."
# Keys the shortcut reads itself (a message's two keys apart); any other key the mapper reads sends the span the
# long way.
_READ_HERE = frozenset(
    {
        "openinference.span.kind",
        "llm.provider",
        "llm.system",
        "llm.invocation_parameters",
        "llm.model_name",
        "llm.finish_reason",
        "input.value",
        "output.value",
        "output.mime_type",
        "tag.tags",
        "metadata",
        *(key for _, key in openinference.TOKEN_ATTRIBUTES),
        *openinference.CACHE_READ_ATTRIBUTES,
    }
)
_MESSAGE_KEY = re.compile(
    f"({re.escape(_INPUTS)}|{re.escape(_OUTPUTS)})([0-9]{{1,{MAX_INDEX_DIGITS}}})\\.(message\\.role|message\\.content)"
)
# Token counts written as they are (InputTokens and TotalTokens are decided together, as finalize does).
_TOKENS_AS_IS = tuple(
    field for field, _ in openinference.TOKEN_ATTRIBUTES if field not in ("InputTokens", "TotalTokens")
) + ("CacheReadTokens",)

# One message: its role key and content key (None when the span does not have it).
Entry = tuple[str | None, str | None]


class Plan(NamedTuple):
    keys: int  # how many keys the key text holds: a span whose dict has another count has a key holding the separator
    inputs: tuple[Entry, ...]
    outputs: tuple[Entry, ...]
    tokens: bool  # a `llm.token_count.*` key is there


def _entries(found: dict[str, dict[str, str]]) -> tuple[Entry, ...]:
    # Index order as flat.IndexedFamilies orders it: numerically, ties (such as 1 and 01) in order of appearance.
    ordered = list(found) if len(found) == 1 else sorted(found, key=int)
    return tuple((found[index].get(_ROLE), found[index].get(_CONTENT)) for index in ordered)


def make_plan(keys: str) -> Plan | None:
    """The plan for a key text, or None when a span with these keys needs the long way."""
    names = keys.split(KEY_SEPARATOR)[1:]
    messages: dict[str, dict[str, dict[str, str]]] = {_INPUTS: {}, _OUTPUTS: {}}
    for name in names:
        if name in _READ_HERE:
            continue
        match = _MESSAGE_KEY.fullmatch(name)
        if match is not None:
            prefix, index, rest = match.groups()
            messages[prefix].setdefault(index, {})[rest] = name
        elif name in openinference.READ_KEYS or name.startswith(openinference.READ_PREFIXES):
            return None
    inputs, outputs = _entries(messages[_INPUTS]), _entries(messages[_OUTPUTS])
    tokens = openinference.TOKEN_KEYS in keys
    if len(inputs) > limits.MAX_MESSAGES or len(outputs) > limits.MAX_MESSAGES:
        return None  # convert_list's truncation
    if not (inputs or outputs or tokens):
        return None  # the mapper may decide it is a CHAIN step (openinference._builds_a_request)
    if "openinference.span.kind" not in names:
        return None  # never an LLM span
    return Plan(len(names), inputs, outputs, tokens)


def _messages(attrs: Mapping[str, str], entries: Sequence[Entry], role: str, payload: str | None) -> list[Message]:
    """The flattened messages of one side, else those of its raw payload (`input.value` / `output.value`)."""
    if entries:
        return [_message(attrs, entry, role) for entry in entries]
    return messages_from_payload(payload, role)


def _message(attrs: Mapping[str, str], entry: Entry, default_role: str) -> Message:
    """openinference._message for an entry of a role and a content (or one of them)."""
    role_key, content_key = entry
    raw_role = attrs[role_key] if role_key is not None else None
    content = attrs[content_key] if content_key is not None else None
    return {
        "role": KNOWN_ROLES.get(raw_role or "") or normalize_role(raw_role, default_role),
        "content": [{"type": "text", "text": content if len(content) <= _MAX_TEXT else clip(content, _MAX_TEXT)}]
        if content
        else [],
    }


NOT_TAKEN = object()  # what `FastPath.write` returns for a span it leaves to the long way


class FastPath:
    """`plan(keys)` once per key text (None: the long way), `write(plan, attrs, out, row)` per span."""

    __slots__ = ("_plans", "mapper")

    def __init__(self, mapper: Mapper) -> None:
        self.mapper = mapper  # the mapper this stands for: with another registry (tests swap it) it is not used
        self._plans = KeyTextMemo()

    def plan(self, keys: str) -> Plan | None:
        # A key text seen once is not planned (an app that puts ids in its keys would fill the memo for nothing).
        planned = self._plans.get(keys)
        if planned is None:
            self._plans.remember(keys, keys, False)
            return None
        if planned is False:
            planned = self._plans[keys] = make_plan(keys) or 0
        return planned or None

    @staticmethod
    def write(
        plan: Plan,
        attrs: Mapping[str, str],
        out: Columns,
        row: int,
        event_names: Sequence[str] = (),
        event_times: Sequence[int] = (),
        start: int = 0,
    ) -> Any:
        """Write row `row` of the LLM columns for a span with the plan's keys and return its metadata object (None
        when it has none); NOT_TAKEN (nothing written) when the span is not an LLM span after all, or its keys are
        not the plan's. Of the span's events it reads one, the first-token event of a streamed call."""
        get = attrs.get
        if get("openinference.span.kind") != "LLM" or len(attrs) != plan.keys:
            return NOT_TAKEN
        out["LlmSpanKind"][row] = "LLM"
        out["LlmOperation"][row] = "chat"
        if event_names:
            ttft = event_offset(event_names, event_times, start, openinference.FIRST_TOKEN_EVENT)
            if ttft is not None:
                out["TimeToFirstToken"][row] = min(ttft, UINT64_MAX)
        provider = get("llm.provider") or get("llm.system")
        if provider:
            out["LlmProvider"][row] = normalize_provider(provider)
        raw_params = get("llm.invocation_parameters")
        params = openinference.parameters(raw_params) if raw_params else None
        model = get("llm.model_name")
        request_model = (params[0] if params else None) or model
        if request_model:
            out["LlmRequestModel"][row] = cut(request_model, _MAX_SHORT)
        if model:
            out["LlmResponseModel"][row] = cut(model, _MAX_SHORT)
        finish_reason = get("llm.finish_reason")
        if finish_reason:
            out["FinishReason"][row] = normalize_finish_reason(finish_reason)
        if plan.tokens:
            counts: dict[str, Any] = {}
            openinference.token_fields(get, counts)
            for name in _TOKENS_AS_IS:
                if name in counts:
                    out[name][row] = counts[name]
            if "InputTokens" in counts or "TotalTokens" in counts:
                out["InputTokens"][row], out["TotalTokens"][row] = input_and_total(counts)
        if params is not None:
            out["InvocationParameters"][row] = clip(raw_params, _MAX_JSON)
            _, temperature, top_p, max_tokens = params
            if temperature is not None:
                out["Temperature"][row] = temperature
            if top_p is not None:
                out["TopP"][row] = top_p
            if max_tokens is not None:
                out["MaxTokens"][row] = max_tokens
        inputs = _messages(attrs, plan.inputs, "user", get("input.value"))
        outputs = _messages(attrs, plan.outputs, "assistant", get("output.value"))
        write_messages(out, row, inputs, None, outputs, None, None)
        raw_tags = get("tag.tags")
        if raw_tags:
            tags = string_list(raw_tags)
            if tags:
                out["Tags"][row] = tags
        raw_metadata = get("metadata")
        metadata = json_object(raw_metadata) if raw_metadata else None
        if metadata:
            out["Metadata"][row] = clip(dumps(metadata), _MAX_JSON)
            return metadata
        return None
