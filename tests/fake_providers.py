"""Local fakes of the providers' other APIs, beside tests/fake_openai.py's Chat Completions, in one server.

`FakeProviders` is a `FakeOpenAI` (same port, same recording) that also serves:

- `POST /v1/responses`, OpenAI's Responses API: `input` as a string or items (messages, `function_call`,
  `function_call_output`), `instructions`, function tools; non-streaming and streaming (the SSE events
  `response.created` ... `response.completed`, the last one carrying the whole response with its usage);
- `POST /v1/messages`, Anthropic's Messages API: `system` as a string or blocks, content blocks (`text`,
  `tool_use`, `tool_result`), tools; non-streaming and streaming (`message_start` ... `message_stop`).
  Prompt caching works as Anthropic's does: the prefix up to the last `cache_control` breakpoint is
  written to the cache the first time (`cache_creation_input_tokens`) and read from it after
  (`cache_read_input_tokens`); `input_tokens` counts only the rest, as Anthropic reports it.

Both answer like the chat fake: a tool call when tools are offered and the last turn is not a tool result
(arguments from the last capitalized word of the user's text), an answer from the tool results when it is,
else "Fake answer to: <question>". Every answered call is kept in `exchanges` (tests/fake_openai.py).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from fake_openai import CHUNK_DELAY, FIRST_CHUNK_DELAY, SNAPSHOTS, FakeOpenAI, cached_tokens, count_tokens

# Dated snapshots Anthropic answers with for a model alias.
ANTHROPIC_SNAPSHOTS = {
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
}


def _capitalized_word(text: str) -> str:
    words = re.findall(r"\b[A-Z][\w-]*", text)
    return words[-1] if words else "example"


def sample_arguments(schema: dict[str, Any], user_text: str) -> dict[str, Any]:
    """Arguments that fit a JSON schema, the strings taken from the user's text ("in Paris?" -> "Paris")."""
    word = _capitalized_word(user_text)
    samples = {"string": word, "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    return {name: samples.get(properties.get(name, {}).get("type", "string"), word) for name in required}


def _pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or [text]


class FakeProviders(FakeOpenAI):
    """Chat Completions, Responses and Anthropic Messages on one local server."""

    def __init__(self) -> None:
        super().__init__()
        self._anthropic_cache: set[tuple[str, str]] = set()

    @property
    def anthropic_base_url(self) -> str:
        """Anthropic's SDK adds `/v1/messages` itself."""
        return self.base_url.removesuffix("/v1")

    def serve(self, handler: Any, path: str, body: dict[str, Any]) -> bool:
        if path == "/v1/responses":
            self._responses(handler, body)
            return True
        if path == "/v1/messages":
            self._messages(handler, body)
            return True
        return False

    # -- OpenAI Responses API --------------------------------------------------------------------------

    def _responses(self, handler: Any, body: dict[str, Any]) -> None:
        number = self.next_call()
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else list(items or [])
        output, text = self._responses_output(body, items, number)
        prompt = 3 + count_tokens(str(body.get("instructions") or ""))
        prompt += sum(4 + count_tokens(json.dumps(item)) for item in items)
        prompt += sum(count_tokens(json.dumps(tool)) for tool in body.get("tools") or [])
        completion = count_tokens(text)
        model = str(body["model"])
        response = {
            "id": f"resp_fake{number:04d}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": SNAPSHOTS.get(model, model),
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": cached_tokens(prompt)},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion,
            },
            "user": None,
            "metadata": {},
        }
        streamed = bool(body.get("stream"))
        self.record(handler, body, response, streamed)
        if not streamed:
            handler._send_json(200, response)
            return
        events = [("response.created", {"response": {**response, "status": "in_progress", "output": []}})]
        for index, item in enumerate(output):
            if item["type"] == "message":
                text_item = item["content"][0]["text"]
                events.append(("response.output_item.added", {"output_index": index, "item": {**item, "content": []}}))
                part = {"type": "output_text", "text": "", "annotations": []}
                head = {"item_id": item["id"], "output_index": index, "content_index": 0}
                events.append(("response.content_part.added", {**head, "part": part}))
                events += [("response.output_text.delta", {**head, "delta": piece}) for piece in _pieces(text_item)]
                events.append(("response.output_text.done", {**head, "text": text_item}))
                events.append(("response.content_part.done", {**head, "part": item["content"][0]}))
            else:
                events.append(
                    ("response.output_item.added", {"output_index": index, "item": {**item, "arguments": ""}})
                )
                head = {"item_id": item["id"], "output_index": index}
                events.append(("response.function_call_arguments.delta", {**head, "delta": item["arguments"]}))
                events.append(("response.function_call_arguments.done", {**head, "arguments": item["arguments"]}))
            events.append(("response.output_item.done", {"output_index": index, "item": item}))
        events.append(("response.completed", {"response": response}))
        _stream(
            handler, [(name, {"type": name, "sequence_number": n, **data}) for n, (name, data) in enumerate(events)]
        )

    def _responses_output(
        self, body: dict[str, Any], items: list[dict[str, Any]], number: int
    ) -> tuple[list[dict[str, Any]], str]:
        last = items[-1] if items else {}
        if body.get("tools") and last.get("type") != "function_call_output":
            tool = body["tools"][0]
            arguments = json.dumps(sample_arguments(tool.get("parameters") or {}, _responses_user_text(items)))
            call = {
                "type": "function_call",
                "id": f"fc_fake{number:04d}",
                "call_id": f"call_fake{number:04d}",
                "name": tool["name"],
                "arguments": arguments,
                "status": "completed",
            }
            return [call], arguments
        if last.get("type") == "function_call_output":
            results = [str(item.get("output")) for item in items if item.get("type") == "function_call_output"]
            text = "Based on the tool results: " + "; ".join(results)
        else:
            text = "Fake answer to: " + _responses_user_text(items)
        message = {
            "type": "message",
            "id": f"msg_fake{number:04d}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        return [message], text

    # -- Anthropic Messages API ------------------------------------------------------------------------

    def _messages(self, handler: Any, body: dict[str, Any]) -> None:
        number = self.next_call()
        content, stop_reason = self._anthropic_reply(body, number)
        total, cached_prefix, prefix_tokens = _anthropic_prompt(body)
        model = str(body["model"])
        read = write = 0
        if cached_prefix:
            key = (model, cached_prefix)
            with self._lock:
                hit = key in self._anthropic_cache
                self._anthropic_cache.add(key)
            read, write = (prefix_tokens, 0) if hit else (0, prefix_tokens)
        output = sum(count_tokens(block.get("text") or json.dumps(block.get("input"))) for block in content)
        usage = {
            "input_tokens": total - read - write,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "output_tokens": output,
        }
        response = {
            "id": f"msg_fake{number:04d}",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_SNAPSHOTS.get(model, model),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        streamed = bool(body.get("stream"))
        self.record(handler, body, response, streamed)
        if not streamed:
            handler._send_json(200, response)
            return
        start_usage = {**usage, "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"message": {**response, "content": [], "stop_reason": None, "usage": start_usage}})
        ]
        for index, block in enumerate(content):
            if block["type"] == "text":
                events.append(("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
                events += [
                    ("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
                    for piece in _pieces(block["text"])
                ]
            else:
                events.append(("content_block_start", {"index": index, "content_block": {**block, "input": {}}}))
                partial = json.dumps(block["input"])
                delta = {"type": "input_json_delta", "partial_json": partial}
                events.append(("content_block_delta", {"index": index, "delta": delta}))
            events.append(("content_block_stop", {"index": index}))
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        events.append(("message_delta", {"delta": delta, "usage": {"output_tokens": output}}))
        events.append(("message_stop", {}))
        _stream(handler, [(name, {"type": name, **data}) for name, data in events])

    def _anthropic_reply(self, body: dict[str, Any], number: int) -> tuple[list[dict[str, Any]], str]:
        messages = body.get("messages") or []
        last_blocks = _blocks(messages[-1].get("content")) if messages else []
        answered = any(block.get("type") == "tool_result" for block in last_blocks)
        user_text = _anthropic_user_text(messages)
        if body.get("tools") and not answered:
            tool = body["tools"][0]
            arguments = sample_arguments(tool.get("input_schema") or {}, user_text)
            call = {"type": "tool_use", "id": f"toolu_fake{number:04d}", "name": tool["name"], "input": arguments}
            return [call], "tool_use"
        if answered:
            results = [_result_text(block) for block in last_blocks if block.get("type") == "tool_result"]
            return [{"type": "text", "text": "Based on the tool results: " + "; ".join(results)}], "end_turn"
        return [{"type": "text", "text": "Fake answer to: " + user_text}], "end_turn"


def _stream(handler: Any, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Server-sent events, chunked, the first one after FIRST_CHUNK_DELAY (time to first token is measurable)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    time.sleep(FIRST_CHUNK_DELAY)
    for name, data in events:
        handler._write_chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        time.sleep(CHUNK_DELAY)
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, dict)]


def _result_text(block: dict[str, Any]) -> str:
    return " ".join(part.get("text", "") for part in _blocks(block.get("content")))


def _anthropic_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            texts = [block.get("text", "") for block in _blocks(message.get("content")) if block.get("type") == "text"]
            if texts:
                return " ".join(texts)
    return ""


def _responses_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(part.get("text", "") for part in content or [] if isinstance(part, dict))
    return ""


def _anthropic_prompt(body: dict[str, Any]) -> tuple[int, str, int]:
    """(prompt tokens, the prefix up to the last cache_control breakpoint ("" without one), its tokens)."""
    pieces: list[tuple[str, bool]] = []  # (text, a breakpoint after it), in the order Anthropic caches
    for tool in body.get("tools") or []:
        pieces.append((json.dumps(tool), "cache_control" in tool))
    for block in _blocks(body.get("system")):
        pieces.append((block.get("text", ""), "cache_control" in block))
    for message in body.get("messages") or []:
        for block in _blocks(message.get("content")):
            text = block.get("text") or json.dumps(block.get("input") or block.get("content") or "")
            pieces.append((text, "cache_control" in block))
    total = 3 + sum(count_tokens(text) for text, _ in pieces)
    breakpoints = [index for index, (_, marked) in enumerate(pieces) if marked]
    cached = pieces[: breakpoints[-1] + 1] if breakpoints else []
    return total, "".join(text for text, _ in cached), sum(count_tokens(text) for text, _ in cached)
