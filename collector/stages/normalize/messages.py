"""The canonical message shape, and converters into it from the JSON shapes conventions use.

One converter (`messages_from_obj`) reads the OTel GenAI shape (`parts`), the OpenAI shape
(`content` string or parts, `tool_calls`, `tool_call_id`), Anthropic content blocks, Vercel AI SDK
parts and Gemini parts, so every mapper lands on the same dicts. The shape itself is documented in
the package docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.values import clip, json_text, parse_json, short
from tracehouse.collector.stages.normalize.values import dumps as json_dumps

Message = dict[str, Any]
Part = dict[str, Any]

SYSTEM_ROLES = frozenset({"system", "developer"})
_ROLE_ALIASES = {
    "human": "user",
    "ai": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "chatbot": "assistant",
    "function": "tool",
    "ipython": "tool",
}
_TEXT_TYPES = frozenset({"text", "input_text", "output_text", "summary_text"})
_CALL_TYPES = frozenset({"tool_call", "tool_use", "tool-call", "function_call", "server_tool_call", "server_tool_use"})
_RESULT_TYPES = frozenset(
    {"tool_call_response", "tool_result", "tool-result", "function_call_output", "server_tool_call_response"}
)
_REASONING_TYPES = frozenset({"reasoning", "thinking", "redacted_thinking"})
_IMAGE_TYPES = frozenset({"image", "image_url", "input_image"})
_AUDIO_TYPES = frozenset({"audio", "input_audio"})
_FILE_TYPES = frozenset({"blob", "uri", "file", "file_data", "document", "input_file"})
_MODALITIES = frozenset({"image", "audio", "video"})
_MAX_URL_CHARS = 2_048


# Spellings that are already canonical, or an alias: the common roles cost one lookup.
KNOWN_ROLES: dict[str, str] = {
    **{role: role for role in ("user", "assistant", "system", "developer", "tool")},
    **_ROLE_ALIASES,
}


def normalize_role(raw: Any, default: str) -> str:
    if not isinstance(raw, str):
        return default
    known = KNOWN_ROLES.get(raw)
    if known is not None:
        return known
    role = raw.strip().lower()
    if not role:
        return default
    return short(_ROLE_ALIASES.get(role, role))


def text_part(text: str) -> Part:
    return {"type": "text", "text": text if len(text) <= limits.MAX_TEXT_CHARS else clip(text, limits.MAX_TEXT_CHARS)}


def media_part(kind: str, url: Any = None, mime_type: Any = None) -> Part:
    """An image/audio/video/file part; inline base64 data is replaced by a note of its size."""
    part: Part = {"type": kind}
    if isinstance(url, str) and url:
        if url.startswith("data:"):
            header = url[: url.find(",")] if "," in url[:256] else "data:"
            url = f"{header},…[{len(url) - len(header) - 1} chars omitted]"
        part["url"] = clip(url, _MAX_URL_CHARS)
    if isinstance(mime_type, str) and mime_type:
        part["mime_type"] = short(mime_type)
    return part


def arguments_value(raw: Any) -> Any:
    """Tool-call arguments as a JSON value; a string that is not a JSON object or array stays a string."""
    if isinstance(raw, str):
        parsed = parse_json(raw)
        return parsed if parsed is not None else clip(raw, limits.MAX_TEXT_CHARS)
    return raw


def tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"id": short(call_id), "name": short(name), "arguments": arguments_value(arguments)}


def message(
    role: str,
    content: list[Part],
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: Any = None,
    name: Any = None,
    cut: bool = False,
) -> Message:
    """`cut`: the mapper read only the first MAX_PARTS + 1 items of a longer source list (or MAX_TOOL_CALLS + 1
    calls), which need not have made as many parts or calls: the message notes it all the same."""
    calls_cut = tool_calls is not None and len(tool_calls) > limits.MAX_TOOL_CALLS
    if cut or len(content) > limits.MAX_PARTS or calls_cut:
        content = cut_content(content, calls_cut, cut)
    msg: Message = {"role": role, "content": content[: limits.MAX_PARTS]}
    if tool_calls:
        msg["tool_calls"] = tool_calls[: limits.MAX_TOOL_CALLS]
    if tool_call_id:
        msg["tool_call_id"] = short(tool_call_id)
    if name:
        msg["name"] = short(name)
    return msg


def cut_content(content: list[Part], calls_cut: bool, items_cut: bool = False) -> list[Part]:
    """A message's parts past MAX_PARTS, its tool calls past MAX_TOOL_CALLS, or the items of a source list past
    what a mapper reads leave a note in its last part (`…[...omitted]`, as clip and omitted_marker do): the typed
    form says it is not the whole message, which content_copies reads."""
    kept = content if len(content) < limits.MAX_PARTS else content[: limits.MAX_PARTS - 1]
    cut = []
    if len(kept) < len(content):
        cut.append(f"parts after the first {len(kept)}")
    elif items_cut:
        cut.append(f"the source's items after the first {limits.MAX_PARTS + 1}")
    if calls_cut:
        cut.append(f"tool calls after the first {limits.MAX_TOOL_CALLS}")
    return [*kept, text_part(f"…[{' and '.join(cut)} omitted]")]


def text_message(role: str, text: str) -> Message:
    return message(role, [text_part(text)])


def omitted_marker(count: int) -> Message:
    return {"role": "truncated", "content": [{"type": "text", "text": f"[{count} messages omitted]"}]}


def convert_list(items: list[Any], convert: Callable[[Any], list[Message]]) -> list[Message]:
    """Convert each item; past MAX_MESSAGES keep the first MESSAGES_HEAD and the latest, with a marker between."""
    out: list[Message] = []
    if len(items) <= limits.MAX_MESSAGES:
        for item in items:
            out.extend(convert(item))
        return out
    tail = limits.MAX_MESSAGES - limits.MESSAGES_HEAD
    for item in items[: limits.MESSAGES_HEAD]:
        out.extend(convert(item))
    out.append(omitted_marker(len(items) - limits.MAX_MESSAGES))
    for item in items[-tail:]:
        out.extend(convert(item))
    return out


# Written twice. Instrumentations write one message in two forms side by side: its text as one string
# and as parts (OpenInference `message.content` and `message.contents`; a `content` string next to `parts`),
# its tool calls among the parts and in a list of their own (`message.contents.N.tool_call` and
# `message.tool_calls`; Anthropic `tool_use` blocks and `tool_calls`). The second form repeats the first and
# is dropped; anything it holds that the first does not is kept. Within one form nothing is collapsed: two
# parts with the same text, or two calls with the same name and arguments, are what was written.
_FLAT_SEPARATORS = ("", "\n", "\n\n")


def repeats_parts(text: str, parts: list[Part]) -> bool:
    """Whether a message's plain-string text is the text of its parts written again: one text part's, or all of
    them joined (with nothing, a newline or a blank line between, as instrumentations flatten parts)."""
    texts = [part["text"] for part in parts if part["type"] == "text"]
    if not texts:
        return False
    if len(text) <= limits.MAX_TEXT_CHARS:
        if text in texts:
            return True
    elif clip(text, limits.MAX_TEXT_CHARS) in texts:
        return True
    return len(texts) > 1 and any(text == separator.join(texts) for separator in _FLAT_SEPARATORS)


def _same_call(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """One call written twice: the same id and name, or, without ids, the same name and arguments."""
    if a["id"] or b["id"]:
        return a["id"] == b["id"] and a["name"] == b["name"]
    return a["name"] == b["name"] and a["arguments"] == b["arguments"]


def merge_tool_calls(calls: list[dict[str, Any]], listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A message's tool calls read from its parts (`calls`), then those of its own tool-call list (`listed`) that
    do not repeat one of them; each call of `calls` stands for at most one listed call, so calls written once
    in each form are kept once each, however alike."""
    if not calls:
        return listed
    if not listed:
        return calls
    unmatched = list(calls)
    merged = list(calls)
    for call in listed:
        for index, seen in enumerate(unmatched):
            if _same_call(seen, call):
                del unmatched[index]
                break
        else:
            merged.append(call)
    return merged


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return value
    return None


def _url_of(value: Any) -> Any:
    return value.get("url") if isinstance(value, dict) else value


class _Collector:
    """Parts, tool calls and tool results found while reading one source message."""

    __slots__ = ("parts", "calls", "results", "cut")

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.calls: list[dict[str, Any]] = []
        self.results: list[Message] = []
        self.cut = False  # a source list longer than what is read (items are not parts one for one)

    def content(self, content: Any) -> None:
        if isinstance(content, str):
            if content:
                self.parts.append(text_part(content))
        elif isinstance(content, list):
            if len(content) > limits.MAX_PARTS + 1:
                self.cut = True
            for item in content[: limits.MAX_PARTS + 1]:  # one past the limit: message() notes the cut
                if isinstance(item, dict):
                    self.part(item)
                elif isinstance(item, str):
                    self.parts.append(text_part(item))
        elif isinstance(content, dict):
            self.part(content)
        elif content is not None:
            self.parts.append(text_part(json_text(content)))

    def part(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        kind = kind.strip().lower() if isinstance(kind, str) else ""
        if kind in _TEXT_TYPES or not kind:
            text = obj.get("text")
            if text is None:
                text = obj.get("content")
            if isinstance(text, str):
                self.parts.append(text_part(text))
            elif not kind:
                self._untyped(obj)
        elif kind in _CALL_TYPES:
            self.calls.append(
                tool_call(
                    _first(obj, ("id", "toolCallId", "call_id")),
                    _first(obj, ("name", "toolName")),
                    _first(obj, ("arguments", "input", "args")),
                )
            )
        elif kind in _RESULT_TYPES:
            self.results.append(
                message(
                    "tool",
                    content_parts(_first(obj, ("response", "result", "content", "output"))),
                    tool_call_id=_first(obj, ("id", "tool_use_id", "toolCallId", "call_id")),
                    name=_first(obj, ("toolName", "name")),
                )
            )
        elif kind in _REASONING_TYPES:
            text = _first(obj, ("text", "thinking", "content"))
            self.parts.append(
                {"type": "reasoning", "text": clip(text, limits.MAX_TEXT_CHARS)}
                if isinstance(text, str)
                else {"type": "reasoning"}
            )
        elif kind in _IMAGE_TYPES:
            source = obj.get("source") if isinstance(obj.get("source"), dict) else {}
            url = _url_of(_first(obj, ("image_url", "url", "image"))) or source.get("url")
            mime = _first(obj, ("mime_type", "mimeType", "media_type")) or source.get("media_type")
            self.parts.append(media_part("image", url, mime))
        elif kind in _AUDIO_TYPES:
            audio = obj.get("input_audio") if isinstance(obj.get("input_audio"), dict) else {}
            self.parts.append(media_part("audio", _url_of(obj.get("url")), audio.get("format") or obj.get("mime_type")))
        elif kind == "video":  # the canonical video part, read back as itself
            self.parts.append(media_part("video", _url_of(obj.get("url")), obj.get("mime_type")))
        elif kind in _FILE_TYPES:
            modality = obj.get("modality")
            self.parts.append(
                media_part(
                    modality if isinstance(modality, str) and modality in _MODALITIES else "file",
                    _first(obj, ("uri", "url", "file_id")),
                    _first(obj, ("mime_type", "mimeType", "media_type")),
                )
            )
        else:
            part: Part = {"type": short(kind)}
            text = _first(obj, ("text", "content"))
            if isinstance(text, str):
                part["text"] = clip(text, limits.MAX_TEXT_CHARS)
            self.parts.append(part)

    def _untyped(self, obj: dict[str, Any]) -> None:
        """Gemini parts carry no type: {text}, {functionCall}, {functionResponse}, {inlineData}, {fileData}."""
        call = obj.get("functionCall") or obj.get("function_call")
        if isinstance(call, dict):
            self.calls.append(tool_call(call.get("id"), call.get("name"), _first(call, ("args", "arguments"))))
            return
        response = obj.get("functionResponse") or obj.get("function_response")
        if isinstance(response, dict):
            self.results.append(
                message(
                    "tool",
                    content_parts(response.get("response")),
                    tool_call_id=response.get("id"),
                    name=response.get("name"),
                )
            )
            return
        data = obj.get("inlineData") or obj.get("fileData")
        if isinstance(data, dict):
            mime = data.get("mimeType") or data.get("mime_type")
            kind = mime.partition("/")[0] if isinstance(mime, str) else ""
            self.parts.append(media_part(kind if kind in _MODALITIES else "file", data.get("fileUri"), mime))

    def tool_calls(self, calls: Any) -> None:
        """OpenAI-style `tool_calls` ({id, function: {name, arguments}}) or flat ({id, name, arguments}); a call
        the content parts already hold is not added again (`merge_tool_calls`)."""
        if not isinstance(calls, list):
            return
        listed = []
        if len(calls) > limits.MAX_TOOL_CALLS + 1:
            self.cut = True
        for call in calls[: limits.MAX_TOOL_CALLS + 1]:  # one past the limit: message() notes the cut
            if not isinstance(call, dict):
                continue
            function = call.get("function") if isinstance(call.get("function"), dict) else call
            listed.append(
                tool_call(
                    _first(call, ("id", "toolCallId")),
                    _first(function, ("name", "toolName")),
                    _first(function, ("arguments", "input", "args")),
                )
            )
        self.calls = merge_tool_calls(self.calls, listed)


def content_parts(value: Any) -> list[Part]:
    """Parts for a tool result or other free value: text, parts, or the JSON text of anything else."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(item, dict) and "type" in item for item in value):
        collector = _Collector()
        collector.content(value)
        return cut_content(collector.parts, False, True) if collector.cut else collector.parts
    return [text_part(value if isinstance(value, str) else json_text(value))]


def messages_from_obj(obj: Any, default_role: str) -> list[Message]:
    """Canonical messages for one source message; tool results embedded in it become their own tool messages."""
    if isinstance(obj, str):
        return [text_message(default_role, obj)] if obj else []
    if not isinstance(obj, dict):
        return [text_message(default_role, json_text(obj))] if obj is not None else []
    role = obj.get("role")
    role = normalize_role(obj.get("author") if role is None else role, default_role)
    found = _Collector()
    parts = obj.get("parts")
    content = obj.get("content")
    if isinstance(parts, list):
        found.content(parts)
        if isinstance(content, str) and repeats_parts(content, found.parts):
            content = None  # the parts' text written a second time as a plain string
    if content is not None:
        found.content(content)
    calls = obj.get("tool_calls") or obj.get("toolCalls")
    if calls:
        found.tool_calls(calls)
    function_call = obj.get("function_call")
    if isinstance(function_call, dict):
        found.calls.append(tool_call(None, function_call.get("name"), function_call.get("arguments")))
    tool_call_id = _first(obj, ("tool_call_id", "toolCallId", "id")) if role == "tool" else None
    out = found.results
    if found.parts or found.calls or found.cut or not found.results:
        out.append(message(role, found.parts, found.calls, tool_call_id, obj.get("name"), cut=found.cut))
    return out


def messages_from_json_or_text(text: str | None, default_role: str) -> list[Message]:
    """A messages attribute: a JSON array of messages, one JSON message, or plain text as one message."""
    if not text:
        return []
    return messages_from_parsed(parse_json(text), text, default_role)


def messages_from_parsed(parsed: Any, text: str, default_role: str) -> list[Message]:
    """`messages_from_json_or_text` when the caller has parsed `text` already (`values.parse_json`)."""
    if isinstance(parsed, list):
        return convert_list(parsed, lambda item: messages_from_obj(item, default_role))
    if isinstance(parsed, dict):
        return messages_from_obj(parsed, default_role)
    return [text_message(default_role, text)]


def messages_from_payload(text: str | None, default_role: str) -> list[Message]:
    """Messages from a request/response body (input.value, output.value): its `messages`, `choices`,
    a message-like object, or the text itself."""
    if not text:
        return []
    parsed = parse_json(text)
    if isinstance(parsed, dict):
        inner = parsed.get("messages")
        if isinstance(inner, list):
            return convert_list(inner, lambda item: messages_from_obj(item, default_role))
        choices = parsed.get("choices")
        if isinstance(choices, list):
            found = [c.get("message") for c in choices if isinstance(c, dict) and isinstance(c.get("message"), dict)]
            return convert_list(found, lambda item: messages_from_obj(item, default_role))
        if "content" in parsed or "parts" in parsed:
            return messages_from_obj(parsed, default_role)
    if isinstance(parsed, list):
        return convert_list(parsed, lambda item: messages_from_obj(item, default_role))
    return [text_message(default_role, text)]


def texts(parts: Iterable[Part]) -> list[str]:
    return [part["text"] for part in parts if part.get("type") == "text" and part.get("text")]


def system_texts(parts: list[Part]) -> list[str]:
    """texts() of a system message's parts. SystemPrompt holds text only: its other parts (an image, a
    document) leave a note, so that the typed form does not pass for the whole message (content_copies)."""
    found = texts(parts)
    others = sum(part.get("type") != "text" for part in parts)
    if others:
        found.append(f"…[{others} non-text part(s) of the system message omitted]")
    return found


def split_system(messages: list[Message]) -> tuple[list[str], list[Message]]:
    """The text of the system/developer messages that open the conversation, and the conversation without
    them. One that comes later stays where it sat: SystemPrompt cannot say where in the conversation a
    message was, and the typed form is all a span keeps once its raw copies are dropped (content_copies)."""
    lead = 0
    for msg in messages:  # usually a message or two, and the system one first if any
        if msg["role"] not in SYSTEM_ROLES:
            break
        lead += 1
    if not lead:
        return [], messages
    system: list[str] = []
    for msg in messages[:lead]:
        system.extend(system_texts(msg["content"]))
    return system, messages[lead:]


def tool_calls_of(messages: list[Message]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for msg in messages:
        if "tool_calls" in msg:
            calls.extend(msg["tool_calls"])
    return calls[: limits.MAX_TOOL_CALLS]


def tool_definition(name: Any, description: Any = None, parameters: Any = None, kind: Any = None) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": short(kind) or "function", "name": short(name)}
    if isinstance(description, str) and description:
        tool["description"] = clip(description, limits.MAX_TEXT_CHARS)
    if parameters is not None:
        tool["parameters"] = arguments_value(parameters)
    return tool


def tool_from_obj(obj: Any) -> dict[str, Any] | None:
    """A tool definition from the OpenAI ({type, function: {...}}), GenAI/Vercel or Anthropic shape."""
    if isinstance(obj, str):
        obj = parse_json(obj)
    if not isinstance(obj, dict):
        return None
    function = obj.get("function") if isinstance(obj.get("function"), dict) else obj
    name = function.get("name")
    if not name:
        return None
    return tool_definition(
        name,
        function.get("description"),
        _first(function, ("parameters", "inputSchema", "input_schema", "json_schema")),
        obj.get("type"),
    )


def dumps(value: Any) -> str:
    return json_dumps(value)
