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
from tracehouse.collector.stages.normalize.mapper import Fields, Mapper
from tracehouse.collector.stages.normalize.messages import (
    content_parts,
    message,
    messages_from_json_or_text,
    messages_from_parsed,
    system_texts,
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


def _attributes(span: SpanView) -> Mapping[str, str]:
    """Span attributes, falling back to the operation-details event's (the span's own win): `get(key)` on
    the result is `span.get(key) or event.get(key)`, as one dict lookup."""
    attrs = span.attrs
    event = span.event(DETAILS_EVENT) if span.event_names else None
    if event:
        return {**event, **{key: value for key, value in attrs.items() if value}}
    if "" in attrs.values():  # rare: then an empty value must read as absent
        return {key: value for key, value in attrs.items() if value}
    return attrs


def system_text(raw: str | None) -> str:
    """`gen_ai.system_instructions`: a JSON array of parts (or the older {role, message} object) as text."""
    if not raw:
        return ""
    parsed = parse_json(raw)
    if parsed is None:
        return raw
    if isinstance(parsed, dict):
        parsed = [parsed.get("message", parsed)]
    return "\n".join(system_texts(content_parts(parsed)))


def _first_finish_reason(raw: str | None, outputs: Any) -> str | None:
    """The first of `gen_ai.response.finish_reasons`, else the first output message's (`outputs`: the parsed
    `gen_ai.output.messages`)."""
    reasons = json_list(raw)
    if reasons:
        return reasons[0] if isinstance(reasons[0], str) else None
    if raw:
        return raw
    if isinstance(outputs, list):
        for item in outputs:
            if isinstance(item, dict) and isinstance(item.get("finish_reason"), str):
                return item["finish_reason"]
    return None


def _parameters(a: Mapping[str, str]) -> dict[str, Any]:
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


def _tool_execution(a: Mapping[str, str], fields: Fields) -> None:
    name = a.get("gen_ai.tool.name")
    if not name:
        return
    call_id = a.get("gen_ai.tool.call.id")
    fields["Tools"] = fields.get("Tools") or [
        tool_definition(name, a.get("gen_ai.tool.description"), None, a.get("gen_ai.tool.type"))
    ]
    fields["ToolCalls"] = [tool_call(call_id, name, a.get("gen_ai.tool.call.arguments"))]
    result = a.get("gen_ai.tool.call.result")
    if result and "OutputMessages" not in fields:  # a chat span's own answer (gen_ai.output.messages) comes first
        parsed = parse_json(result)
        content = content_parts(parsed if parsed is not None else result)
        fields["OutputMessages"] = [message("tool", content, tool_call_id=call_id, name=name)]


def _ttft(raw: str | None) -> int | None:
    seconds = to_float(raw)
    # Clamped before int(): a finite but huge count of seconds overflows to inf in nanoseconds.
    return int(round(min(seconds * 1e9, limits.TTFT_CAP_NS))) if seconds is not None and seconds >= 0 else None


# (field, attribute) read as they are, and the counts.
_TEXTS = (
    ("LlmOperation", "gen_ai.operation.name"),
    ("LlmProvider", "gen_ai.provider.name"),
    ("LlmRequestModel", "gen_ai.request.model"),
    ("LlmResponseModel", "gen_ai.response.model"),
    ("PromptTemplateName", "gen_ai.prompt.name"),
)
_COUNTS = (
    ("InputTokens", "gen_ai.usage.input_tokens"),
    ("OutputTokens", "gen_ai.usage.output_tokens"),
    ("TotalTokens", "gen_ai.usage.total_tokens"),
    ("CacheReadTokens", "gen_ai.usage.cache_read.input_tokens"),
    ("CacheWriteTokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("ReasoningTokens", "gen_ai.usage.reasoning.output_tokens"),
)


def extract(span: SpanView) -> Fields:
    # Only fields that hold a value are set (what `compact` keeps), and readers run only on what is there.
    a = _attributes(span)
    get = a.get
    fields: Fields = {}
    for field, key in _TEXTS:
        value = get(key)
        if value:
            fields[field] = value
    for field, key in _COUNTS:
        raw = get(key)
        if raw:
            count = to_int(raw)
            if count is not None:
                fields[field] = count
    if "ReasoningTokens" not in fields:
        # pydantic-ai writes the provider's own usage details under gen_ai.usage.details.* (OpenAI's
        # completion_tokens_details.reasoning_tokens as gen_ai.usage.details.reasoning_tokens, zero included).
        raw = get("gen_ai.usage.details.reasoning_tokens")
        count = to_int(raw) if raw else None
        if count is not None:
            fields["ReasoningTokens"] = count
    raw = get("gen_ai.input.messages")
    if raw:
        inputs = messages_from_json_or_text(raw, "user")
        if inputs:
            fields["InputMessages"] = inputs
    raw = get("gen_ai.output.messages")
    outputs = parse_json(raw) if raw else None
    if raw:
        messages = messages_from_parsed(outputs, raw, "assistant")
        if messages:
            fields["OutputMessages"] = messages
    raw = get("gen_ai.system_instructions")
    if raw:
        system = system_text(raw)
        if system:
            fields["SystemPrompt"] = system
    raw = get("gen_ai.tool.definitions")
    if raw:
        tools = _tools(raw)
        if tools:
            fields["Tools"] = tools
    finish_reason = _first_finish_reason(get("gen_ai.response.finish_reasons"), outputs)
    if finish_reason:
        fields["FinishReason"] = finish_reason
    # Seconds. The response attribute, or the name of the semconv's streaming metric, which pydantic-ai and
    # the AI SDK 7 (@ai-sdk/otel) record on the span itself.
    raw = get("gen_ai.response.time_to_first_chunk") or get("gen_ai.client.operation.time_to_first_chunk")
    if raw:
        ttft = _ttft(raw)
        if ttft is not None:
            fields["TimeToFirstToken"] = ttft
    params = _parameters(a)
    if params:
        fields["InvocationParameters"] = params
        temperature = to_float(get("gen_ai.request.temperature"))
        if temperature is not None:
            fields["Temperature"] = temperature
        top_p = to_float(get("gen_ai.request.top_p"))
        if top_p is not None:
            fields["TopP"] = top_p
        max_tokens = to_int(get("gen_ai.request.max_tokens"))
        if max_tokens is not None:
            fields["MaxTokens"] = max_tokens
    _tool_execution(a, fields)
    return fields


MAPPER = Mapper(
    name="genai",
    extract=extract,
    prefixes=("gen_ai.",),
    event_prefixes=(DETAILS_EVENT,),
)
