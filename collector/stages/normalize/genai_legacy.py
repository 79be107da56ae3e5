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

from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.flat import group_indexed, ordered
from tracehouse.collector.stages.normalize.kinds import KIND_BY_TRACELOOP, OPERATION_BY_REQUEST_TYPE
from tracehouse.collector.stages.normalize.mapper import Fields, Mapper, compact
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
_ASSOCIATION = "traceloop.association.properties."

# Message events: name -> the role their content has.
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CHOICE_EVENT = "gen_ai.choice"
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


def extract(span: SpanView) -> Fields:
    a = span.attrs
    groups = group_indexed(a, _INDEXED)
    kind = KIND_BY_TRACELOOP.get(a.get("traceloop.span.kind", ""), "")
    prompts = ordered(groups.get(_PROMPTS))
    completions = ordered(groups.get(_COMPLETIONS))
    inputs = convert_list(prompts, lambda flat: _flat_message(flat, "user"))
    outputs = convert_list(completions, lambda flat: _flat_message(flat, "assistant"))
    finish_reason = next((c["finish_reason"] for c in completions if c.get("finish_reason")), None)
    if span.event_names and not (inputs and outputs):
        event_inputs, event_outputs, event_finish = _from_events(span)
        inputs = inputs or event_inputs
        outputs = outputs or event_outputs
        finish_reason = finish_reason or event_finish

    params = {name: typed_value(a[key]) for name, key in _LLM_PARAMETERS if a.get(key)}
    fields: Fields = {
        "LlmSpanKind": kind,
        "LlmOperation": OPERATION_BY_REQUEST_TYPE.get(a.get("llm.request.type", "")),
        "LlmProvider": a.get("gen_ai.system"),
        "InputTokens": to_int(a.get("gen_ai.usage.prompt_tokens")),
        "OutputTokens": to_int(a.get("gen_ai.usage.completion_tokens")),
        "TotalTokens": to_int(a.get("llm.usage.total_tokens") or a.get("gen_ai.usage.total_tokens")),
        "CacheReadTokens": to_int(
            a.get("gen_ai.usage.cache_read_input_tokens") or a.get("llm.usage.cache_read_input_tokens")
        ),
        "CacheWriteTokens": to_int(
            a.get("gen_ai.usage.cache_creation_input_tokens") or a.get("llm.usage.cache_creation_input_tokens")
        ),
        "ReasoningTokens": to_int(a.get("gen_ai.usage.reasoning_tokens") or a.get("llm.usage.reasoning_tokens")),
        "InputMessages": inputs,
        "OutputMessages": outputs,
        "Tools": _tools(ordered(groups.get(_FUNCTIONS))),
        "FinishReason": finish_reason
        or a.get("gen_ai.response.finish_reason")
        or a.get("llm.response.finish_reason")
        or a.get("llm.response.stop_reason"),
        "InvocationParameters": params,
        "PromptTemplateName": a.get("traceloop.prompt.key"),
        "PromptVersion": a.get("traceloop.prompt.version"),
        "PromptTemplate": a.get("traceloop.prompt.template"),
        "PromptVariables": a.get("traceloop.prompt.template_variables"),
        "Metadata": _association_properties(a),
    }
    if kind == "TOOL":
        _traceloop_tool(a, fields)
    return compact(fields)


MAPPER = Mapper(
    name="genai_legacy",
    extract=extract,
    # OpenLLMetry's own llm.* keys, not OpenInference's (llm.token_count.*, llm.input_messages.*).
    prefixes=("gen_ai.", "traceloop.", "llm.usage.", "llm.request.type", "llm.request.functions."),
    event_prefixes=("gen_ai.",),
)
