"""OpenInference (Arize): flattened `llm.*` attributes, `input.value`/`output.value`, span kinds.

Token counts follow the OpenInference spec: `llm.token_count.prompt` already includes the
`prompt_details.cache_read|cache_write` tokens, which are breakdowns of it, as ours are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.flat import IndexedFamilies, group_indexed, ordered
from tracehouse.collector.stages.normalize.kinds import openinference_kind
from tracehouse.collector.stages.normalize.mapper import KEY_SEPARATOR, Fields, Mapper
from tracehouse.collector.stages.normalize.messages import (
    KNOWN_ROLES,
    Message,
    Part,
    convert_list,
    media_part,
    merge_tool_calls,
    message,
    messages_from_payload,
    normalize_role,
    repeats_parts,
    text_message,
    text_part,
    tool_call,
    tool_definition,
    tool_from_obj,
)
from tracehouse.collector.stages.normalize.span import SpanView
from tracehouse.collector.stages.normalize.tokens import UINT64_MAX
from tracehouse.collector.stages.normalize.values import (
    clip,
    cut,
    json_object,
    number_to_float,
    number_to_int,
    short,
    string_list,
    to_int,
)
from tracehouse.instrumentation import attributes

FIRST_TOKEN_EVENT = "First Token Stream Event"

_INPUT_MESSAGES = "llm.input_messages."
_OUTPUT_MESSAGES = "llm.output_messages."
_TOOLS = "llm.tools."
_PROMPTS = "llm.prompts."
_CHOICES = "llm.choices."
_DOCUMENTS = "retrieval.documents."
_EMBEDDINGS = "embedding.embeddings."
_INDEXED = (_INPUT_MESSAGES, _OUTPUT_MESSAGES, _TOOLS, _PROMPTS, _CHOICES, _DOCUMENTS, _EMBEDDINGS)
_FAMILIES = IndexedFamilies(_INDEXED)
_MESSAGE_LISTS = ("message.contents.", "message.tool_calls.")
# `message.contents` item types that are a tool call: the spec's `tool_use`, and the AI SDK's part type as
# openinference-vercel copies it.
_CALL_CONTENT_TYPES = frozenset({"tool_use", "tool_call", "tool-call"})
_TOOL_CALL_KEYS = ("tool_call.id", "tool_call.function.name", "tool_call.function.arguments")
# The keys a message read without the parts and tool-call machinery may have (two at most, see _message).
_PLAIN_MESSAGE_KEYS = frozenset({"message.role", "message.content", "message.tool_call_id", "message.name"})
_CACHED_PARAMETERS_CHARS = 2_048
_MAX_TEXT = limits.MAX_TEXT_CHARS
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
    if kind in _CALL_CONTENT_TYPES:
        # The call, kept in its place among the parts (the spec's `tool_use` item, with the `tool_call.*` keys of
        # `message.tool_calls`); an item without them only marks where a call listed there stood.
        if any(key in item for key in _TOOL_CALL_KEYS):
            calls.append(_tool_call(item))
        return
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
    else:
        parts.append({"type": cut(kind, limits.MAX_SHORT_CHARS)})


def _message(flat: Mapping[str, str], default_role: str) -> Message:
    """One `llm.*_messages.{i}` entry (its keys without the prefix) as a canonical message."""
    if len(flat) > 2 or (
        ("message.content" not in flat or "message.role" not in flat) and not _PLAIN_MESSAGE_KEYS.issuperset(flat)
    ):  # the common pair costs two lookups; any other key is one of a part or a call
        return _rich_message(flat, default_role)
    # Role and content, the common case, without the parts and tool-call machinery, and with the
    # common cases of normalize_role and text_part inline.
    raw_role = flat.get("message.role")
    content = flat.get("message.content")
    msg: Message = {
        "role": KNOWN_ROLES.get(raw_role or "") or normalize_role(raw_role, default_role),
        "content": [{"type": "text", "text": content if len(content) <= _MAX_TEXT else clip(content, _MAX_TEXT)}]
        if content
        else [],
    }
    tool_call_id = flat.get("message.tool_call_id")
    if tool_call_id:
        msg["tool_call_id"] = short(tool_call_id)
    name = flat.get("message.name")
    if name:
        msg["name"] = short(name)
    return msg


def _rich_message(flat: Mapping[str, str], default_role: str) -> Message:
    """A message with parts or tool calls; what it writes twice (`message.content` and `message.contents`, a call
    in both `message.contents` and `message.tool_calls`) is kept once (see messages.repeats_parts)."""
    role = normalize_role(flat.get("message.role"), default_role)
    parts: list[Part] = []
    calls: list[dict[str, Any]] = []
    nested = group_indexed(flat, _MESSAGE_LISTS)
    items = ordered(nested.get("message.contents."))
    for item in items[: limits.MAX_PARTS + 1]:  # one past the limit: message() notes a cut
        _content_item(item, parts, calls)
    content = flat.get("message.content")
    if content and not (parts and repeats_parts(content, parts)):
        parts.insert(0, text_part(content))
    listed_calls = ordered(nested.get("message.tool_calls."))
    listed = [_tool_call(call) for call in listed_calls[: limits.MAX_TOOL_CALLS + 1]]  # message() notes a cut
    if listed:
        calls = merge_tool_calls(calls, listed)
    if flat.get("message.function_call_name"):
        calls.append(
            tool_call(None, flat["message.function_call_name"], flat.get("message.function_call_arguments_json"))
        )
    cut = len(items) > limits.MAX_PARTS + 1 or len(listed_calls) > limits.MAX_TOOL_CALLS + 1
    return message(role, parts, calls, flat.get("message.tool_call_id"), flat.get("message.name"), cut=cut)


def _messages(entries: list[dict[str, str]], default_role: str) -> list[Message]:
    if len(entries) == 1:  # a single question or answer, the common case: no comprehension to set up
        return [_message(entries[0], default_role)]
    if len(entries) <= limits.MAX_MESSAGES:
        return [_message(flat, default_role) for flat in entries]
    return convert_list(entries, lambda flat: [_message(flat, default_role)])


def _builds_a_request(span: SpanView) -> bool:
    """An LLM span whose output is a chat request (a JSON object with `messages`), not an answer: it prepared a
    call and made none. openinference-instrumentation-llama-index 4.6.1 traces every method of an LLM object as an
    LLM span, `OpenAI._prepare_chat_with_tools` (which returns the kwargs of the chat call that follows) too."""
    output = span.attrs.get("output.value")
    if not output or span.attrs.get("output.mime_type") != "application/json":
        return False
    payload = json_object(output)
    return payload is not None and isinstance(payload.get("messages"), list)


def _texts_as_messages(entries: list[dict[str, str]], key: str, role: str) -> list[Message]:
    texts = [entry[key] for entry in entries if entry.get(key)]
    return convert_list(texts, lambda text: [text_message(role, text)])


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
    for entry in entries[: limits.MAX_PARTS + 1]:  # one past the limit: message() notes the cut
        part: Part = {"type": "document"}
        if entry.get("document.id"):
            part["id"] = cut(entry["document.id"], limits.MAX_SHORT_CHARS)
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


# (field, attribute) for the counts read as they are; CacheReadTokens has a second spelling.
_TOKEN_ATTRIBUTES = (
    ("InputTokens", "llm.token_count.prompt"),
    ("OutputTokens", "llm.token_count.completion"),
    ("TotalTokens", "llm.token_count.total"),
    ("CacheWriteTokens", "llm.token_count.prompt_details.cache_write"),
    ("ReasoningTokens", "llm.token_count.completion_details.reasoning"),
    ("InputAudioTokens", "llm.token_count.prompt_details.audio"),
    ("OutputAudioTokens", "llm.token_count.completion_details.audio"),
)
CACHE_READ_ATTRIBUTES = ("llm.token_count.prompt_details.cache_read", "llm.token_count.prompt_details.cache_input")
_TEMPLATE_ATTRIBUTES = (
    ("PromptTemplate", "llm.prompt_template.template"),
    ("PromptVersion", "llm.prompt_template.version"),
    ("PromptVariables", "llm.prompt_template.variables"),
)


def _token_fields(get: Callable[[str], str | None], fields: Fields) -> None:
    for field, key in _TOKEN_ATTRIBUTES:
        raw = get(key)
        if not raw:
            continue
        # to_int with its common case inline (decode renders integer attributes as plain decimals)
        try:
            count = int(raw)
        except ValueError:
            parsed = to_int(raw)
            if parsed is not None:
                fields[field] = parsed
            continue
        if 0 <= count <= UINT64_MAX:
            fields[field] = count
    count = to_int(get(CACHE_READ_ATTRIBUTES[0]) or get(CACHE_READ_ATTRIBUTES[1]))
    if count is not None:
        fields["CacheReadTokens"] = count


def _template_fields(get: Callable[[str], str | None], fields: Fields) -> None:
    for field, key in _TEMPLATE_ATTRIBUTES:
        value = get(key)
        if value:
            fields[field] = value
    # Not in the OpenInference spec, which has no template name: the tracehouse helpers set it.
    name = get(attributes.PROMPT_TEMPLATE_NAME) or get("prompt.id")
    if name:
        fields["PromptTemplateName"] = name


InvocationSettings = tuple[str | None, float | None, float | None, int | None]


def _read_parameters(raw: str) -> InvocationSettings | None:
    """(model, temperature, top_p, max_tokens) of an `llm.invocation_parameters` JSON object; None if not one."""
    params = json_object(raw)
    if params is None:
        return None
    model = params.get("model")
    return (
        model if isinstance(model, str) else None,
        number_to_float(params.get("temperature")),
        number_to_float(_first_param(params, ("top_p", "topP"))),
        number_to_int(_first_param(params, _MAX_TOKENS_KEYS)),
    )


# An app sends the same parameters call after call: parse each distinct (short) text once.
_cached_parameters = lru_cache(maxsize=1024)(_read_parameters)


def _parameters(raw: str) -> InvocationSettings | None:
    return _cached_parameters(raw) if len(raw) <= _CACHED_PARAMETERS_CHARS else _read_parameters(raw)


def extract(span: SpanView) -> Fields:
    # Only fields that hold a value are set (what `compact` keeps): the stage writes no column for the rest.
    a = span.attrs
    get = a.get
    keys = span.keys
    fields: Fields = {}
    kind = openinference_kind(get("openinference.span.kind"))
    if kind:
        fields["LlmSpanKind"] = kind
    provider = get("llm.provider") or get("llm.system")
    if provider:
        fields["LlmProvider"] = provider
    raw_params = get("llm.invocation_parameters")
    params = _parameters(raw_params) if raw_params else None
    model = get("llm.model_name") or get("embedding.model_name") or get("reranker.model_name")
    request_model = get("llm.request.model_name") or (params[0] if params else None) or model
    if request_model:
        fields["LlmRequestModel"] = request_model
    response_model = get("llm.response.model_name") or model
    if response_model:
        fields["LlmResponseModel"] = response_model
    finish_reason = get("llm.finish_reason")
    if finish_reason:
        fields["FinishReason"] = finish_reason
    raw_tags = get("tag.tags")
    if raw_tags:
        tags = string_list(raw_tags)
        if tags:
            fields["Tags"] = tags
    raw_metadata = get("metadata")
    if raw_metadata:
        metadata = json_object(raw_metadata)
        if metadata:
            fields["Metadata"] = metadata
    if span.event_names:
        ttft = span.event_offset(FIRST_TOKEN_EVENT)
        if ttft is not None:
            fields["TimeToFirstToken"] = ttft
    if _TOKEN_KEYS in keys:
        _token_fields(get, fields)
    if _TEMPLATE_KEYS in keys or "prompt.id" in a:
        _template_fields(get, fields)
    if params is not None:
        fields["InvocationParameters"] = raw_params
        _, temperature, top_p, max_tokens = params
        if temperature is not None:
            fields["Temperature"] = temperature
        if top_p is not None:
            fields["TopP"] = top_p
        if max_tokens is not None:
            fields["MaxTokens"] = max_tokens

    groups = _FAMILIES.ordered_groups(a, keys)
    entries = groups.get(_INPUT_MESSAGES)
    inputs = _messages(entries, "user") if entries else []
    entries = groups.get(_OUTPUT_MESSAGES)
    outputs = _messages(entries, "assistant") if entries else []
    if not inputs and _PROMPTS in groups:
        inputs = _texts_as_messages(groups[_PROMPTS], "prompt.text", "user")
        fields["LlmOperation"] = "text_completion"
    if not outputs and _CHOICES in groups:
        outputs = _texts_as_messages(groups[_CHOICES], "completion.text", "assistant")
    if kind == "LLM" and not inputs and not outputs and _TOKEN_KEYS not in keys and _builds_a_request(span):
        kind = fields["LlmSpanKind"] = "CHAIN"  # a step of the LLM object that called no provider: not an llm_call
    if kind == "LLM":
        inputs = inputs or messages_from_payload(get("input.value"), "user")
        outputs = outputs or messages_from_payload(get("output.value"), "assistant")
        raw_call = get("llm.function_call")
        legacy_call = json_object(raw_call) if raw_call else None
        if legacy_call and legacy_call.get("name"):
            fields["ToolCalls"] = [tool_call(None, legacy_call["name"], legacy_call.get("arguments"))]
    elif kind == "TOOL":
        _tool_span(a, fields)
    elif kind == "RETRIEVER":
        inputs = inputs or ([text_message("user", a["input.value"])] if get("input.value") else [])
        outputs = outputs or _documents(groups.get(_DOCUMENTS, []))
    elif kind == "EMBEDDING":
        texts = [e["embedding.text"] for e in groups.get(_EMBEDDINGS, ()) if e.get("embedding.text")]
        if texts:
            inputs = [message("user", [text_part(t) for t in texts[: limits.MAX_PARTS + 1]])]  # message() notes a cut
    if inputs:
        fields["InputMessages"] = inputs
    if outputs and "OutputMessages" not in fields:
        fields["OutputMessages"] = outputs
    if _TOOLS in groups:
        tools = _tools(groups[_TOOLS])
        if tools:
            fields["Tools"] = tools
        else:  # the list wins over the TOOL span's own definition even when none of its entries reads
            fields.pop("Tools", None)
    return fields


# What the shortcut for plain chat spans (fast.py) shares with extract: every attribute key extract reads (by
# name, or by prefix: the indexed lists and the key-text tests), and the readers it reuses. A key added to extract
# belongs here (tests/test_normalize_fast_paths.py records what extract reads over the pinned corpus).
READ_KEYS = frozenset(
    {
        "openinference.span.kind",
        "llm.provider",
        "llm.system",
        "llm.invocation_parameters",
        "llm.model_name",
        "embedding.model_name",
        "reranker.model_name",
        "llm.request.model_name",
        "llm.response.model_name",
        "llm.finish_reason",
        "tag.tags",
        "metadata",
        *(key for _, key in _TOKEN_ATTRIBUTES),
        *CACHE_READ_ATTRIBUTES,
        *(key for _, key in _TEMPLATE_ATTRIBUTES),
        attributes.PROMPT_TEMPLATE_NAME,
        "prompt.id",
        "input.value",
        "output.value",
        "output.mime_type",
        "llm.function_call",
        "tool.name",
        "tool.id",
        "tool.description",
        "tool.parameters",
        "tool_call.id",
    }
)
READ_PREFIXES = (*_INDEXED, _TOKEN_KEYS[1:], _TEMPLATE_KEYS[1:])
TOKEN_ATTRIBUTES = _TOKEN_ATTRIBUTES
TOKEN_KEYS = _TOKEN_KEYS
parameters = _parameters
token_fields = _token_fields


MAPPER = Mapper(
    name="openinference",
    extract=extract,
    # OpenInference's own llm.* keys, not OpenLLMetry's (llm.request.type, llm.usage.*).
    prefixes=("openinference.", "llm.token_count.", "llm.input_messages.", "llm.model_name"),
    reads=READ_KEYS,
    read_prefixes=READ_PREFIXES,
)
