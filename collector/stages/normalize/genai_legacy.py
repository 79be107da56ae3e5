"""Deprecated OTel GenAI forms and OpenLLMetry (traceloop): `gen_ai.system`, indexed
`gen_ai.prompt.{i}.*` / `gen_ai.completion.{i}.*`, `gen_ai.usage.prompt_tokens|completion_tokens`,
`gen_ai.usage.cache_read_input_tokens`, `llm.usage.total_tokens`, `llm.request.type`, `traceloop.*`,
and the message events (`gen_ai.user.message`, `gen_ai.choice`, ..., and the older
`gen_ai.content.prompt|completion`).

Only keys that are not in the current GenAI convention are read here: the current ones
(`gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...) that OpenLLMetry also writes are the
current mapper's. OpenLLMetry counts prompt tokens with cache reads and writes included (its
Anthropic instrumentation adds them up), as we do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tracehouse.collector.columns import OPENLLMETRY_METADATA_PREFIX
from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.flat import IndexedFamilies, group_indexed, ordered
from tracehouse.collector.stages.normalize.kinds import KIND_BY_TRACELOOP, OPERATION_BY_REQUEST_TYPE
from tracehouse.collector.stages.normalize.mapper import KEY_SEPARATOR, Fields, Mapper
from tracehouse.collector.stages.normalize.messages import (
    Message,
    convert_list,
    message,
    messages_from_json_or_text,
    messages_from_obj,
    text_part,
    tool_call,
    tool_definition,
)
from tracehouse.collector.stages.normalize.span import SpanView
from tracehouse.collector.stages.normalize.values import parse_json, to_int, typed_value

_PROMPTS = "gen_ai.prompt."
_COMPLETIONS = "gen_ai.completion."
_FUNCTIONS = "llm.request.functions."
_INDEXED = (_PROMPTS, _COMPLETIONS, _FUNCTIONS)
_TOOL_CALLS = ("tool_calls.",)
_ASSOCIATION = OPENLLMETRY_METADATA_PREFIX

# Message events: name -> the role their content has.
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CHOICE_EVENT = "gen_ai.choice"
# OpenLLMetry records no time-to-first-token attribute on streamed calls, but one event per chunk:
# the first one's offset from the span start is the time to the first token.
_CHUNK_EVENT = "gen_ai.content.completion.chunk"
_PROMPT_EVENT = "gen_ai.content.prompt"
_COMPLETION_EVENT = "gen_ai.content.completion"

# OpenLLMetry's llm.* request parameters -> InvocationParameters names.
_LLM_PARAMETERS = (
    ("top_k", "llm.top_k"),
    ("frequency_penalty", "llm.frequency_penalty"),
    ("presence_penalty", "llm.presence_penalty"),
    ("stop_sequences", "llm.chat.stop_sequences"),
    ("stream", "llm.is_streaming"),
)


def _content(raw: str | None) -> Any:
    """A content attribute: a JSON list/object of parts when it is one, else the text."""
    if not raw:
        return None
    parsed = parse_json(raw)
    return parsed if parsed is not None else raw


def _flat_message(flat: Mapping[str, str], default_role: str) -> list[Message]:
    """One `gen_ai.prompt.{i}` / `gen_ai.completion.{i}` entry, read through the generic message converter."""
    source: dict[str, Any] = {"role": flat.get("role"), "content": _content(flat.get("content"))}
    if flat.get("tool_call_id"):
        source["tool_call_id"] = flat["tool_call_id"]
    if len(flat) > 2:
        # Entries are already {id, name, arguments}, a shape the converter reads.
        source["tool_calls"] = ordered(group_indexed(flat, _TOOL_CALLS).get(_TOOL_CALLS[0]))
        name = flat.get("function_call.name")
        if name:
            source["function_call"] = {"name": name, "arguments": flat.get("function_call.arguments")}
    return messages_from_obj(source, default_role)


def _event_message(name: str, attrs: Mapping[str, str]) -> list[Message]:
    """A gen_ai.<role>.message or gen_ai.choice event recorded on the span: its body fields as attributes."""
    if name == _CHOICE_EVENT:
        body = _content(attrs.get("message"))
        source = body if isinstance(body, dict) else {"content": body}
        if "tool_calls" in attrs and "tool_calls" not in source:
            source = {**source, "tool_calls": _content(attrs["tool_calls"])}
        return messages_from_obj(source, "assistant")
    source = {"role": attrs.get("role"), "content": _content(attrs.get("content"))}
    if attrs.get("tool_calls"):
        source["tool_calls"] = _content(attrs["tool_calls"])
    if attrs.get("id"):
        source["id"] = attrs["id"]
    return messages_from_obj(source, _MESSAGE_EVENTS[name])


def _from_events(span: SpanView) -> tuple[list[Message], list[Message], str | None]:
    inputs: list[Message] = []
    outputs: list[Message] = []
    finish_reason = None
    events: Sequence[tuple[str, Mapping[str, str]]] = list(zip(span.event_names, span.event_attrs, strict=False))
    for name, attrs in events[: limits.MAX_MESSAGES * 2]:
        if name in _MESSAGE_EVENTS:
            inputs.extend(_event_message(name, attrs))
        elif name == _CHOICE_EVENT:
            outputs.extend(_event_message(name, attrs))
            finish_reason = finish_reason or attrs.get("finish_reason")
        elif name == _PROMPT_EVENT:
            inputs.extend(messages_from_json_or_text(attrs.get("gen_ai.prompt"), "user"))
        elif name == _COMPLETION_EVENT:
            outputs.extend(messages_from_json_or_text(attrs.get("gen_ai.completion"), "assistant"))
    return inputs, outputs, finish_reason


def _tools(entries: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        tool_definition(entry["name"], entry.get("description"), entry.get("parameters"))
        for entry in entries[: limits.MAX_TOOLS]
        if entry.get("name")
    ]


def _association_properties(attrs: Mapping[str, str]) -> dict[str, Any]:
    start = len(_ASSOCIATION)
    return {key[start:]: value for key, value in attrs.items() if key.startswith(_ASSOCIATION)}


def _traceloop_tool(a: Mapping[str, str], fields: Fields) -> None:
    name = a.get("traceloop.entity.name")
    if not name:
        return
    fields["ToolCalls"] = [tool_call(None, name, a.get("traceloop.entity.input"))]
    if a.get("traceloop.entity.output"):
        fields["OutputMessages"] = [message("tool", [text_part(a["traceloop.entity.output"])], name=name)]


_FAMILIES = IndexedFamilies(_INDEXED)
_ASSOCIATION_KEYS = KEY_SEPARATOR + _ASSOCIATION
# (field, attribute) read as they are.
_TEXTS = (
    ("LlmProvider", "gen_ai.system"),
    ("PromptTemplateName", "traceloop.prompt.key"),
    ("PromptVersion", "traceloop.prompt.version"),
    ("PromptTemplate", "traceloop.prompt.template"),
    ("PromptVariables", "traceloop.prompt.template_variables"),
)
# (field, attribute, fallback attribute or None): the count in the first one that is not empty.
_COUNTS = (
    ("InputTokens", "gen_ai.usage.prompt_tokens", None),
    ("OutputTokens", "gen_ai.usage.completion_tokens", None),
    ("TotalTokens", "llm.usage.total_tokens", "gen_ai.usage.total_tokens"),
    ("CacheReadTokens", "gen_ai.usage.cache_read_input_tokens", "llm.usage.cache_read_input_tokens"),
    ("CacheWriteTokens", "gen_ai.usage.cache_creation_input_tokens", "llm.usage.cache_creation_input_tokens"),
    ("ReasoningTokens", "gen_ai.usage.reasoning_tokens", "llm.usage.reasoning_tokens"),
)


def extract(span: SpanView) -> Fields:
    # Only fields that hold a value are set (what `compact` keeps), and readers run only on what is there:
    # this mapper also runs on every current-GenAI span (same `gen_ai.` prefix), where it mostly finds nothing.
    a = span.attrs
    get = a.get
    groups = _FAMILIES.ordered_groups(a, span.keys)
    kind = KIND_BY_TRACELOOP.get(get("traceloop.span.kind", ""), "")
    prompts = groups.get(_PROMPTS)
    completions = groups.get(_COMPLETIONS)
    inputs = convert_list(prompts, lambda flat: _flat_message(flat, "user")) if prompts else []
    outputs = convert_list(completions, lambda flat: _flat_message(flat, "assistant")) if completions else []
    finish_reason = (
        next((c["finish_reason"] for c in completions if c.get("finish_reason")), None) if completions else None
    )
    if span.event_names and not (inputs and outputs):
        event_inputs, event_outputs, event_finish = _from_events(span)
        inputs = inputs or event_inputs
        outputs = outputs or event_outputs
        finish_reason = finish_reason or event_finish

    fields: Fields = {}
    if kind:
        fields["LlmSpanKind"] = kind
    operation = OPERATION_BY_REQUEST_TYPE.get(get("llm.request.type", ""))
    if operation:
        fields["LlmOperation"] = operation
    for field, key in _TEXTS:
        value = get(key)
        if value:
            fields[field] = value
    for field, key, fallback in _COUNTS:
        raw = get(key) or (get(fallback) if fallback else None)
        if raw:
            count = to_int(raw)
            if count is not None:
                fields[field] = count
    if inputs:
        fields["InputMessages"] = inputs
    if outputs:
        fields["OutputMessages"] = outputs
    functions = groups.get(_FUNCTIONS)
    if functions:
        tools = _tools(functions)
        if tools:
            fields["Tools"] = tools
    finish_reason = (
        finish_reason
        or get("gen_ai.response.finish_reason")
        or get("llm.response.finish_reason")
        or get("llm.response.stop_reason")
    )
    if finish_reason:
        fields["FinishReason"] = finish_reason
    params = {name: typed_value(a[key]) for name, key in _LLM_PARAMETERS if get(key)}
    if params:
        fields["InvocationParameters"] = params
    if _ASSOCIATION_KEYS in span.keys:
        metadata = _association_properties(a)
        if metadata:
            fields["Metadata"] = metadata
    if span.event_names:
        ttft = span.event_offset(_CHUNK_EVENT)
        if ttft is not None:
            fields["TimeToFirstToken"] = ttft
    if kind == "TOOL":
        _traceloop_tool(a, fields)
    return fields


# Every key extract reads (tests/test_normalize_fast_paths.py records them over the pinned corpus): a current-GenAI
# span has none of them, and is not read here at all.
READ_KEYS = frozenset(
    {
        "traceloop.span.kind",
        "llm.request.type",
        *(key for _, key in _TEXTS),
        *(key for _, key, fallback in _COUNTS for key in (key, fallback) if key),
        "gen_ai.response.finish_reason",
        "llm.response.finish_reason",
        "llm.response.stop_reason",
        *(key for _, key in _LLM_PARAMETERS),
        "traceloop.entity.name",
        "traceloop.entity.input",
        "traceloop.entity.output",
    }
)
READ_PREFIXES = (*_INDEXED, _ASSOCIATION)

MAPPER = Mapper(
    name="genai_legacy",
    extract=extract,
    # OpenLLMetry's own llm.* keys, not OpenInference's (llm.token_count.*, llm.input_messages.*).
    prefixes=("gen_ai.", "traceloop.", "llm.usage.", "llm.request.type", "llm.request.functions."),
    event_prefixes=("gen_ai.",),
    reads=READ_KEYS,
    read_prefixes=READ_PREFIXES,
)
