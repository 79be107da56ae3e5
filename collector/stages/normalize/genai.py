"""OTel GenAI semantic conventions, current form: `gen_ai.operation.name`, `gen_ai.provider.name`,
`gen_ai.usage.*`, `gen_ai.input.messages` / `gen_ai.output.messages` / `gen_ai.system_instructions`
JSON with parts, `gen_ai.tool.*`, and the `gen_ai.client.inference.operation.details` event that
carries the same attributes when an instrumentation records content on an event.

`gen_ai.usage.input_tokens` includes cached tokens and `cache_read` / `cache_creation` are parts of
it, exactly our semantics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.mapper import Fields, Mapper, compact
from tracehouse.collector.stages.normalize.messages import (
    content_parts,
    message,
    messages_from_json_or_text,
    tool_call,
    tool_definition,
    tool_from_obj,
)
from tracehouse.collector.stages.normalize.span import SpanView
from tracehouse.collector.stages.normalize.values import (
    json_list,
    parse_json,
    to_float,
    to_int,
    typed_value,
)

DETAILS_EVENT = "gen_ai.client.inference.operation.details"

# gen_ai.request.<name> parameters kept in InvocationParameters, under <name>.
_REQUEST_PARAMETERS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "frequency_penalty",
    "presence_penalty",
    "stop_sequences",
    "seed",
    "choice.count",
    "encoding_formats",
    "stream",
)
_PARAMETER_KEYS = tuple((name, "gen_ai.request." + name) for name in _REQUEST_PARAMETERS)


class _Attributes:
    """Span attributes, falling back to the operation-details event's (the span's own win)."""

    __slots__ = ("span", "event")

    def __init__(self, span: Mapping[str, str], event: Mapping[str, str] | None) -> None:
        self.span = span
        self.event = event or {}

    def get(self, key: str) -> str | None:
        return self.span.get(key) or self.event.get(key)


def system_text(raw: str | None) -> str:
    """`gen_ai.system_instructions`: a JSON array of parts (or the older {role, message} object) as text."""
    if not raw:
        return ""
    parsed = parse_json(raw)
    if parsed is None:
        return raw
    if isinstance(parsed, dict):
        parsed = [parsed.get("message", parsed)]
    texts = [part["text"] for part in content_parts(parsed) if part.get("type") == "text"]
    return "\n".join(texts)


def _first_finish_reason(raw: str | None, outputs_raw: str | None) -> str | None:
    reasons = json_list(raw)
    if reasons:
        return reasons[0] if isinstance(reasons[0], str) else None
    if raw:
        return raw
    for item in json_list(outputs_raw) or ():
        if isinstance(item, dict) and isinstance(item.get("finish_reason"), str):
            return item["finish_reason"]
    return None


def _parameters(a: _Attributes) -> dict[str, Any]:
    params = {}
    for name, key in _PARAMETER_KEYS:
        value = a.get(key)
        if value:
            params[name] = typed_value(value)
    return params


def _tools(raw: str | None) -> list[dict[str, Any]]:
    tools = []
    for item in (json_list(raw) or ())[: limits.MAX_TOOLS]:
        tool = tool_from_obj(item)
        if tool is not None:
            tools.append(tool)
    return tools


def _tool_execution(a: _Attributes, fields: Fields) -> None:
    name = a.get("gen_ai.tool.name")
    if not name:
        return
    call_id = a.get("gen_ai.tool.call.id")
    fields["Tools"] = fields.get("Tools") or [
        tool_definition(name, a.get("gen_ai.tool.description"), None, a.get("gen_ai.tool.type"))
    ]
    fields["ToolCalls"] = [tool_call(call_id, name, a.get("gen_ai.tool.call.arguments"))]
    result = a.get("gen_ai.tool.call.result")
    if result:
        parsed = parse_json(result)
        content = content_parts(parsed if parsed is not None else result)
        fields["OutputMessages"] = [message("tool", content, tool_call_id=call_id, name=name)]


def _ttft(raw: str | None) -> int | None:
    seconds = to_float(raw)
    return int(round(seconds * 1e9)) if seconds is not None and seconds >= 0 else None


def extract(span: SpanView) -> Fields:
    a = _Attributes(span.attrs, span.event(DETAILS_EVENT) if span.event_names else None)
    params = _parameters(a)
    outputs_raw = a.get("gen_ai.output.messages")
    fields: Fields = {
        "LlmOperation": a.get("gen_ai.operation.name"),
        "LlmProvider": a.get("gen_ai.provider.name"),
        "LlmRequestModel": a.get("gen_ai.request.model"),
        "LlmResponseModel": a.get("gen_ai.response.model"),
        "InputTokens": to_int(a.get("gen_ai.usage.input_tokens")),
        "OutputTokens": to_int(a.get("gen_ai.usage.output_tokens")),
        "TotalTokens": to_int(a.get("gen_ai.usage.total_tokens")),
        "CacheReadTokens": to_int(a.get("gen_ai.usage.cache_read.input_tokens")),
        "CacheWriteTokens": to_int(a.get("gen_ai.usage.cache_creation.input_tokens")),
        "ReasoningTokens": to_int(a.get("gen_ai.usage.reasoning.output_tokens")),
        "InputMessages": messages_from_json_or_text(a.get("gen_ai.input.messages"), "user"),
        "OutputMessages": messages_from_json_or_text(outputs_raw, "assistant"),
        "SystemPrompt": system_text(a.get("gen_ai.system_instructions")),
        "Tools": _tools(a.get("gen_ai.tool.definitions")),
        "FinishReason": _first_finish_reason(a.get("gen_ai.response.finish_reasons"), outputs_raw),
        "PromptTemplateName": a.get("gen_ai.prompt.name"),
        "TimeToFirstToken": _ttft(a.get("gen_ai.response.time_to_first_chunk")),
    }
    if params:
        fields["InvocationParameters"] = params
        fields["Temperature"] = to_float(a.get("gen_ai.request.temperature"))
        fields["TopP"] = to_float(a.get("gen_ai.request.top_p"))
        fields["MaxTokens"] = to_int(a.get("gen_ai.request.max_tokens"))
    _tool_execution(a, fields)
    return compact(fields)


MAPPER = Mapper(
    name="genai",
    extract=extract,
    prefixes=("gen_ai.",),
    event_prefixes=(DETAILS_EVENT,),
)
