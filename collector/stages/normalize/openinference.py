"""OpenInference (Arize): flattened `llm.*` attributes, `input.value`/`output.value`, span kinds.

Token counts follow the OpenInference spec: `llm.token_count.prompt` already includes the
`prompt_details.cache_read|cache_write` tokens, which are breakdowns of it, as ours are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.flat import group_indexed, ordered
from tracehouse.collector.stages.normalize.kinds import openinference_kind
from tracehouse.collector.stages.normalize.mapper import KEY_SEPARATOR, Fields, Mapper, compact
from tracehouse.collector.stages.normalize.messages import (
    Message,
    Part,
    convert_list,
    media_part,
    message,
    messages_from_payload,
    normalize_role,
    text_message,
    text_part,
    tool_call,
    tool_definition,
    tool_from_obj,
)
from tracehouse.collector.stages.normalize.span import SpanView
from tracehouse.collector.stages.normalize.values import (
    clip,
    json_object,
    number_to_float,
    number_to_int,
    string_list,
    to_int,
)

FIRST_TOKEN_EVENT = "First Token Stream Event"

_INPUT_MESSAGES = "llm.input_messages."
_OUTPUT_MESSAGES = "llm.output_messages."
_TOOLS = "llm.tools."
_PROMPTS = "llm.prompts."
_CHOICES = "llm.choices."
_DOCUMENTS = "retrieval.documents."
_EMBEDDINGS = "embedding.embeddings."
_INDEXED = (_INPUT_MESSAGES, _OUTPUT_MESSAGES, _TOOLS, _PROMPTS, _CHOICES, _DOCUMENTS, _EMBEDDINGS)
_MESSAGE_LISTS = ("message.contents.", "message.tool_calls.")
# Families of keys tested on SpanView.keys before their lookups are spent.
_TOKEN_KEYS = KEY_SEPARATOR + "llm.token_count."
_TEMPLATE_KEYS = KEY_SEPARATOR + "llm.prompt_template."

_MAX_TOKENS_KEYS = (
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "max_tokens_to_sample",
    "maxOutputTokens",
    "max_new_tokens",
)


def _first_param(params: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = params.get(key)
        if value is not None:
            return value
    return None


def _tool_call(flat: Mapping[str, str]) -> dict[str, Any]:
    name, arguments = flat.get("tool_call.function.name"), flat.get("tool_call.function.arguments")
    return tool_call(flat.get("tool_call.id"), name, arguments)


def _content_item(item: Mapping[str, str], parts: list[Part], calls: list[dict[str, Any]]) -> None:
    kind = item.get("message_content.type", "text")
    if kind == "text":
        text = item.get("message_content.text")
        if text:
            parts.append(text_part(text))
    elif kind == "reasoning":
        parts.append({"type": "reasoning", "text": clip(item.get("message_content.text", ""), limits.MAX_TEXT_CHARS)})
    elif kind == "image":
        parts.append(media_part("image", item.get("message_content.image.image.url")))
    elif kind == "audio":
        parts.append(
            media_part(
                "audio", item.get("message_content.audio.audio.url"), item.get("message_content.audio.audio.mime_type")
            )
        )
    elif kind == "video":
        parts.append(media_part("video", item.get("message_content.video.video.url")))
    elif kind == "tool_use":
        calls.append(_tool_call(item))
    else:
        parts.append({"type": kind[: limits.MAX_SHORT_CHARS]})


def _message(flat: Mapping[str, str], default_role: str) -> list[Message]:
    """One `llm.*_messages.{i}` entry (its keys without the prefix) as a canonical message."""
    role = normalize_role(flat.get("message.role"), default_role)
    parts: list[Part] = []
    calls: list[dict[str, Any]] = []
    content = flat.get("message.content")
    if content:
        parts.append(text_part(content))
    if len(flat) > 2:
        nested = group_indexed(flat, _MESSAGE_LISTS)
        for item in ordered(nested.get("message.contents."))[: limits.MAX_PARTS]:
            _content_item(item, parts, calls)
        for call in ordered(nested.get("message.tool_calls."))[: limits.MAX_TOOL_CALLS]:
            calls.append(_tool_call(call))
        if flat.get("message.function_call_name"):
            calls.append(
                tool_call(None, flat["message.function_call_name"], flat.get("message.function_call_arguments_json"))
            )
    return [message(role, parts, calls, flat.get("message.tool_call_id"), flat.get("message.name"))]


def _messages(entries: list[dict[str, str]], default_role: str) -> list[Message]:
    return convert_list(entries, lambda flat: _message(flat, default_role))


def _texts_as_messages(entries: list[dict[str, str]], key: str, role: str) -> list[Message]:
    return [text_message(role, entry[key]) for entry in entries[: limits.MAX_MESSAGES] if entry.get(key)]


def _tools(entries: list[dict[str, str]]) -> list[dict[str, Any]]:
    tools = []
    for entry in entries[: limits.MAX_TOOLS]:
        tool = tool_from_obj(entry.get("tool.json_schema"))
        if tool is None and entry.get("tool.name"):
            tool = tool_definition(entry["tool.name"], entry.get("tool.description"), entry.get("tool.parameters"))
        if tool is not None:
            tools.append(tool)
    return tools


def _documents(entries: list[dict[str, str]]) -> list[Message]:
    parts: list[Part] = []
    for entry in entries[: limits.MAX_PARTS]:
        part: Part = {"type": "document"}
        if entry.get("document.id"):
            part["id"] = entry["document.id"][: limits.MAX_SHORT_CHARS]
        if entry.get("document.content"):
            part["text"] = clip(entry["document.content"], limits.MAX_TEXT_CHARS)
        score = number_to_float(entry.get("document.score"))
        if score is not None:
            part["score"] = score
        if entry.get("document.metadata"):
            part["metadata"] = json_object(entry["document.metadata"]) or entry["document.metadata"]
        parts.append(part)
    return [message("retriever", parts)] if parts else []


def _tool_span(a: Mapping[str, str], fields: Fields) -> None:
    name = a.get("tool.name")
    if not name:
        return
    call_id = a.get("tool.id") or a.get("tool_call.id")
    fields["Tools"] = [tool_definition(name, a.get("tool.description"), a.get("tool.parameters"))]
    fields["ToolCalls"] = [tool_call(call_id, name, a.get("input.value"))]
    if a.get("output.value"):
        fields["OutputMessages"] = [message("tool", [text_part(a["output.value"])], tool_call_id=call_id, name=name)]


def _token_fields(a: Mapping[str, str]) -> Fields:
    return {
        "InputTokens": to_int(a.get("llm.token_count.prompt")),
        "OutputTokens": to_int(a.get("llm.token_count.completion")),
        "TotalTokens": to_int(a.get("llm.token_count.total")),
        "CacheReadTokens": to_int(
            a.get("llm.token_count.prompt_details.cache_read") or a.get("llm.token_count.prompt_details.cache_input")
        ),
        "CacheWriteTokens": to_int(a.get("llm.token_count.prompt_details.cache_write")),
        "ReasoningTokens": to_int(a.get("llm.token_count.completion_details.reasoning")),
        "InputAudioTokens": to_int(a.get("llm.token_count.prompt_details.audio")),
        "OutputAudioTokens": to_int(a.get("llm.token_count.completion_details.audio")),
    }


def _template_fields(a: Mapping[str, str]) -> Fields:
    return {
        "PromptTemplate": a.get("llm.prompt_template.template"),
        "PromptVersion": a.get("llm.prompt_template.version"),
        "PromptVariables": a.get("llm.prompt_template.variables"),
        # Not in the OpenInference spec, which has no template name: the tracehouse helpers set it.
        "PromptTemplateName": a.get("llm.prompt_template.name") or a.get("prompt.id"),
    }


def extract(span: SpanView) -> Fields:
    a = span.attrs
    kind = openinference_kind(a.get("openinference.span.kind"))
    params = json_object(a.get("llm.invocation_parameters"))
    groups = group_indexed(a, _INDEXED)

    fields: Fields = {
        "LlmSpanKind": kind,
        "LlmProvider": a.get("llm.provider") or a.get("llm.system"),
        "LlmRequestModel": a.get("llm.request.model_name")
        or (params.get("model") if params and isinstance(params.get("model"), str) else None)
        or a.get("llm.model_name")
        or a.get("embedding.model_name")
        or a.get("reranker.model_name"),
        "LlmResponseModel": a.get("llm.response.model_name")
        or a.get("llm.model_name")
        or a.get("embedding.model_name")
        or a.get("reranker.model_name"),
        "FinishReason": a.get("llm.finish_reason"),
        "Tags": string_list(a.get("tag.tags")),
        "Metadata": json_object(a.get("metadata")),
        "TimeToFirstToken": span.event_offset(FIRST_TOKEN_EVENT) if span.event_names else None,
    }
    if _TOKEN_KEYS in span.keys:
        fields.update(_token_fields(a))
    if _TEMPLATE_KEYS in span.keys or "prompt.id" in a:
        fields.update(_template_fields(a))
    if params is not None:
        fields["InvocationParameters"] = a.get("llm.invocation_parameters")
        fields["Temperature"] = number_to_float(params.get("temperature"))
        fields["TopP"] = number_to_float(_first_param(params, ("top_p", "topP")))
        fields["MaxTokens"] = number_to_int(_first_param(params, _MAX_TOKENS_KEYS))

    inputs = _messages(ordered(groups.get(_INPUT_MESSAGES)), "user")
    outputs = _messages(ordered(groups.get(_OUTPUT_MESSAGES)), "assistant")
    if not inputs and _PROMPTS in groups:
        inputs = _texts_as_messages(ordered(groups[_PROMPTS]), "prompt.text", "user")
        fields["LlmOperation"] = "text_completion"
    if not outputs and _CHOICES in groups:
        outputs = _texts_as_messages(ordered(groups[_CHOICES]), "completion.text", "assistant")
    if kind == "LLM":
        inputs = inputs or messages_from_payload(a.get("input.value"), "user")
        outputs = outputs or messages_from_payload(a.get("output.value"), "assistant")
        legacy_call = json_object(a.get("llm.function_call"))
        if legacy_call and legacy_call.get("name"):
            fields["ToolCalls"] = [tool_call(None, legacy_call["name"], legacy_call.get("arguments"))]
    elif kind == "TOOL":
        _tool_span(a, fields)
    elif kind == "RETRIEVER":
        inputs = inputs or ([text_message("user", a["input.value"])] if a.get("input.value") else [])
        outputs = outputs or _documents(ordered(groups.get(_DOCUMENTS)))
    elif kind == "EMBEDDING":
        texts = [e["embedding.text"] for e in ordered(groups.get(_EMBEDDINGS)) if e.get("embedding.text")]
        if texts:
            inputs = [message("user", [text_part(t) for t in texts[: limits.MAX_PARTS]])]
    fields["InputMessages"] = inputs
    if "OutputMessages" not in fields:
        fields["OutputMessages"] = outputs
    if _TOOLS in groups:
        fields["Tools"] = _tools(ordered(groups[_TOOLS]))
    return compact(fields)


MAPPER = Mapper(
    name="openinference",
    extract=extract,
    # OpenInference's own llm.* keys, not OpenLLMetry's (llm.request.type, llm.usage.*).
    prefixes=("openinference.", "llm.token_count.", "llm.input_messages.", "llm.model_name"),
)
