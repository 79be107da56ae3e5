"""Vercel AI SDK telemetry (`ai.*`): `ai.operationId`, `ai.model.*`, `ai.usage.*` (v4 prompt/completion
names, v5 input/output names, v6's `inputTokenDetails`/`outputTokenDetails`), `ai.prompt.messages`,
`ai.prompt.tools`, `ai.response.*` (Anthropic's cache writes in `ai.response.providerMetadata` for v4/v5),
`ai.settings.*`, `ai.telemetry.metadata.*`, and the `ai.toolCall` spans.

The SDK's provider calls (`doGenerate`/`doStream`) also carry `gen_ai.*` attributes, which the GenAI
mapper reads first; this one fills what only `ai.*` holds, messages above all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracehouse.collector.columns import VERCEL_METADATA_PREFIX
from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.kinds import KIND_BY_VERCEL_OPERATION
from tracehouse.collector.stages.normalize.mapper import KEY_SEPARATOR, Fields, Mapper, compact
from tracehouse.collector.stages.normalize.messages import (
    Message,
    Part,
    content_parts,
    convert_list,
    media_part,
    message,
    messages_from_obj,
    text_message,
    text_part,
    tool_call,
    tool_from_obj,
)
from tracehouse.collector.stages.normalize.span import SpanView
from tracehouse.collector.stages.normalize.values import (
    clip,
    json_list,
    json_object,
    json_text,
    number_to_int,
    parse_json,
    short,
    to_float,
    to_int,
    typed_value,
)

_METADATA = VERCEL_METADATA_PREFIX
_SETTINGS = "ai.settings."
_FIRST_CHUNK_EVENT = "ai.stream.firstChunk"
_MAX_TOKENS_SETTINGS = ("ai.settings.maxOutputTokens", "ai.settings.maxTokens")
# Each count's keys, newest first: AI SDK 6 writes both its `*TokenDetails` and the v5 name (deprecated, same
# value); `@ai-sdk/otel`'s `OpenTelemetry({usage: true})` (AI SDK 7) writes only the details beside gen_ai.*.
_INPUT_KEYS = ("ai.usage.inputTokens", "ai.usage.promptTokens", "ai.usage.tokens")
_OUTPUT_KEYS = ("ai.usage.outputTokens", "ai.usage.completionTokens")
_CACHE_READ_KEYS = ("ai.usage.inputTokenDetails.cacheReadTokens", "ai.usage.cachedInputTokens")
_CACHE_WRITE_KEYS = ("ai.usage.inputTokenDetails.cacheWriteTokens",)
_REASONING_KEYS = ("ai.usage.outputTokenDetails.reasoningTokens", "ai.usage.reasoningTokens")
_PROVIDER_METADATA = "ai.response.providerMetadata"


def _prefixed(span: SpanView, prefix: str) -> dict[str, Any]:
    if KEY_SEPARATOR + prefix not in span.keys:  # one search of the key text instead of a test per key
        return {}
    attrs = span.attrs
    start = len(prefix)
    return {key[start:]: typed_value(value) for key, value in attrs.items() if key.startswith(prefix)}


# LanguageModelV3ToolResultOutput (@ai-sdk/provider; AI SDK 5 and 6): what a tool returned, wrapped.
_VALUE_OUTPUTS = frozenset({"text", "json", "error-text", "error-json"})
_RESULT_PART = "tool-result"
_DATA_PARTS = frozenset({"image-data", "file-data", "media"})  # inline base64 `data`: only its media type is kept
_URL_PARTS = frozenset({"image-url", "file-url"})
_ID_PARTS = frozenset({"image-file-id", "file-id"})


def _media_kind(part_type: str, media_type: Any) -> str:
    if part_type.startswith("image-"):
        return "image"
    kind = media_type.partition("/")[0] if isinstance(media_type, str) else ""
    return kind if kind in ("image", "audio", "video") else "file"


def _output_part(item: Any) -> Part | None:
    """One item of a `content` output as a canonical part (None for what is not a typed part)."""
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return text_part(item) if isinstance(item, str) and item else None
    kind = item["type"]
    if kind == "text":
        text = item.get("text")
        return text_part(text if isinstance(text, str) else json_text(text)) if text is not None else None
    media_type = item.get("mediaType")
    if kind in _DATA_PARTS:
        return media_part(_media_kind(kind, media_type), None, media_type)
    if kind in _URL_PARTS:
        return media_part(_media_kind(kind, media_type), item.get("url"), media_type)
    if kind in _ID_PARTS:
        file_id = item.get("fileId")
        return media_part(_media_kind(kind, media_type), file_id if isinstance(file_id, str) else None, media_type)
    return {"type": short(kind)}


def tool_output(output: Any) -> Any:
    """The value a tool returned, out of the SDK's `{"type", "value"}` wrapper: the text itself, JSON as its
    text, `content` as canonical parts, a denial as `{"denied": true, "reason"?}` (as the SDK's own GenAI
    mapping writes it). Anything else, a wrapper without its `value` included, is a plain value."""
    if not isinstance(output, dict):
        return output
    kind = output.get("type")
    if "value" in output:
        value = output["value"]
        if kind in _VALUE_OUTPUTS:
            return value if isinstance(value, str) else json_text(value)
        if kind == "content" and isinstance(value, list):
            # one past the limit: message() notes the cut
            parts = [_output_part(item) for item in value[: limits.MAX_PARTS + 1]]
            return [part for part in parts if part is not None]
    elif kind == "execution-denied":
        reason = output.get("reason")
        return {"denied": True, "reason": reason} if isinstance(reason, str) else {"denied": True}
    return output


def _message(item: Any) -> list[Message]:
    """One prompt message: its tool results unwrapped (`tool_output`), then converted as any other."""
    if isinstance(item, dict) and isinstance(item.get("content"), list) and item.get("role") in ("tool", "assistant"):
        for part in item["content"][: limits.MAX_PARTS]:  # the parsed JSON is this mapper's own: unwrapped in place
            if isinstance(part, dict) and part.get("type") == _RESULT_PART and isinstance(part.get("output"), dict):
                part["output"] = tool_output(part["output"])
    return messages_from_obj(item, "user")


def _inputs(a: Mapping[str, str]) -> list[Message]:
    messages = json_list(a.get("ai.prompt.messages"))
    if messages is not None:
        return convert_list(messages, _message)
    prompt = a.get("ai.prompt")
    parsed = json_object(prompt)
    if parsed is None:
        return [text_message("user", prompt)] if prompt else []
    out: list[Message] = []
    if isinstance(parsed.get("system"), str):
        out.append(text_message("system", parsed["system"]))
    if isinstance(parsed.get("prompt"), str):
        out.append(text_message("user", parsed["prompt"]))
    if isinstance(parsed.get("messages"), list):
        out.extend(convert_list(parsed["messages"], _message))
    return out


def _outputs(a: Mapping[str, str]) -> list[Message]:
    parts = []
    if a.get("ai.response.reasoning"):
        parts.append({"type": "reasoning", "text": clip(a["ai.response.reasoning"], limits.MAX_TEXT_CHARS)})
    if a.get("ai.response.text"):
        parts.append(text_part(a["ai.response.text"]))
    elif a.get("ai.response.object"):
        parts.append(text_part(a["ai.response.object"]))
    calls = [
        tool_call(c.get("toolCallId"), c.get("toolName"), c.get("input", c.get("args")))
        for c in (json_list(a.get("ai.response.toolCalls")) or ())[: limits.MAX_TOOL_CALLS + 1]  # message() notes a cut
        if isinstance(c, dict)
    ]
    return [message("assistant", parts, calls)] if parts or calls else []


def _tools(raw: str | None) -> list[dict[str, Any]]:
    # An array of JSON strings, one per tool.
    tools = [tool_from_obj(item) for item in (json_list(raw) or ())[: limits.MAX_TOOLS]]
    return [tool for tool in tools if tool is not None]


def _tool_call_span(a: Mapping[str, str], fields: Fields) -> None:
    name = a.get("ai.toolCall.name")
    if not name:
        return
    call_id = a.get("ai.toolCall.id")
    fields["ToolCalls"] = [tool_call(call_id, name, a.get("ai.toolCall.input") or a.get("ai.toolCall.args"))]
    result = a.get("ai.toolCall.output") or a.get("ai.toolCall.result")
    if result:
        parsed = parse_json(result)
        content = content_parts(parsed if parsed is not None else result)
        fields["OutputMessages"] = [message("tool", content, tool_call_id=call_id, name=name)]


def _count(a: Mapping[str, str], keys: tuple[str, ...]) -> int | None:
    """The first of `keys` that holds a count (a malformed or negative value is passed over, not read as 0)."""
    for key in keys:
        count = to_int(a.get(key))
        if count is not None:
            return count
    return None


def _cache_write(a: Mapping[str, str]) -> int | None:
    """AI SDK 6's `cacheWriteTokens`, else Anthropic's cache writes where AI SDK 4 and 5 put them, only in the
    provider's metadata (`{"anthropic": {"cacheCreationInputTokens": N}}`). The metadata's text is searched
    for the key before any parse: other providers' metadata is not parsed."""
    count = _count(a, _CACHE_WRITE_KEYS)
    if count is not None:
        return count
    raw = a.get(_PROVIDER_METADATA)
    metadata = json_object(raw) if raw and "cacheCreationInputTokens" in raw else None
    anthropic = metadata.get("anthropic") if metadata else None
    return number_to_int(anthropic.get("cacheCreationInputTokens")) if isinstance(anthropic, dict) else None


def _ttft(span: SpanView) -> int | None:
    # streamText writes ai.response.msToFirstChunk, streamObject ai.stream.msToFirstChunk: on the span and its event.
    a = span.attrs
    ms = to_float(a.get("ai.response.msToFirstChunk") or a.get("ai.stream.msToFirstChunk"))
    if ms is None and span.event_names:
        event = span.event(_FIRST_CHUNK_EVENT)
        if event:
            ms = to_float(event.get("ai.response.msToFirstChunk") or event.get("ai.stream.msToFirstChunk"))
    return int(round(min(ms * 1e6, limits.TTFT_CAP_NS))) if ms is not None and ms >= 0 else None


def extract(span: SpanView) -> Fields:
    a = span.attrs
    kind = KIND_BY_VERCEL_OPERATION.get(a.get("ai.operationId", ""), "")
    settings = _prefixed(span, _SETTINGS)
    fields: Fields = {
        "LlmSpanKind": kind,
        "LlmProvider": a.get("ai.model.provider"),
        "LlmRequestModel": a.get("ai.model.id"),
        "LlmResponseModel": a.get("ai.response.model"),
        "InputTokens": _count(a, _INPUT_KEYS),
        "OutputTokens": _count(a, _OUTPUT_KEYS),
        "TotalTokens": to_int(a.get("ai.usage.totalTokens")),
        "CacheReadTokens": _count(a, _CACHE_READ_KEYS),
        "CacheWriteTokens": _cache_write(a),
        "ReasoningTokens": _count(a, _REASONING_KEYS),
        "FinishReason": a.get("ai.response.finishReason"),
        "Tools": _tools(a.get("ai.prompt.tools")),
        "Metadata": _prefixed(span, _METADATA),
        "InvocationParameters": settings,
        "Temperature": to_float(a.get("ai.settings.temperature")),
        "TopP": to_float(a.get("ai.settings.topP")),
        "MaxTokens": to_int(a.get(_MAX_TOKENS_SETTINGS[0]) or a.get(_MAX_TOKENS_SETTINGS[1])),
        "TimeToFirstToken": _ttft(span),
    }
    if kind == "TOOL":
        _tool_call_span(a, fields)
    else:
        fields["InputMessages"] = _inputs(a)
        fields["OutputMessages"] = _outputs(a)
    return compact(fields)


MAPPER = Mapper(
    name="vercel_ai",
    extract=extract,
    prefixes=("ai.",),
)
