"""A local OpenAI-compatible HTTP server for tests: it stands in for the remote provider only.

A real HTTP server on 127.0.0.1 (threading `http.server`), so the real `openai` client, its HTTP stack and
the instrumentors wrapping it all run unchanged. It serves `POST /v1/chat/completions`:

- non-streaming and streaming (SSE); with `stream_options: {"include_usage": true}` the stream ends with a
  usage chunk whose `choices` is empty, as OpenAI's does;
- a tool call when the request has `tools` and the last message is not a tool result (string arguments
  take the last capitalized word of the last user message: "weather in Paris?" -> {"city": "Paris"}),
  and an answer built from the tool results when it is;
- an error when asked: model `error-<status>` (e.g. `error-429`, `error-500`) or the header
  `X-Fake-Status: <status>` gives that status with OpenAI's JSON error body;
- a refusal (`finish_reason: "content_filter"`) for the model `content-filter`.

Usage is computed from the request the way OpenAI reports it: `prompt_tokens` from the text (about four
characters a token plus a per-message overhead), `prompt_tokens_details.cached_tokens` by OpenAI's prompt
caching rule (prompts of 1024 tokens or more, cached in 128-token steps), and
`completion_tokens_details.reasoning_tokens` for reasoning models (o1, o3, o4, gpt-5), which count in
`completion_tokens` as they do at OpenAI. Every request is kept in `requests` for assertions, and every
answered one in `exchanges` with what the fake answered (a stream as the one response it adds up to), so a
test can compute what a call should read like from what the provider really said. Subclasses serve more
paths by overriding `serve` (tests/fake_providers.py: the Responses API and Anthropic's Messages API).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Dated snapshots OpenAI answers with for a model alias.
SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "o4-mini": "o4-mini-2025-04-16",
}
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 3, Used 3.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
FIRST_CHUNK_DELAY = 0.05  # seconds before the first streamed chunk: time to first token is measurable
CHUNK_DELAY = 0.005


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Exchange:
    """One answered request: what was asked and what the fake answered (a stream: the response it adds up to)."""

    path: str
    headers: dict[str, str]
    request: dict[str, Any]
    response: dict[str, Any]
    streamed: bool


def count_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    tokens = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in body.get("messages", []):
        tokens += 4 + count_tokens(message_text(message))
        for call in message.get("tool_calls") or []:
            tokens += count_tokens(json.dumps(call.get("function", {})))
    for tool in body.get("tools") or []:
        tokens += count_tokens(json.dumps(tool))
    return tokens


def cached_tokens(prompt: int) -> int:
    """OpenAI caches prompts of 1024 tokens or more, in 128-token increments past the first 1024."""
    return 0 if prompt < 1024 else 1024 + (prompt - 1024) // 128 * 128


def reasoning_tokens(model: str, completion: int) -> int:
    return 3 * completion if model.startswith(REASONING_PREFIXES) else 0


def usage(body: dict[str, Any], completion_text: str) -> dict[str, Any]:
    model = body.get("model", "")
    prompt = prompt_tokens(body)
    visible = count_tokens(completion_text)
    reasoning = reasoning_tokens(model, visible)
    completion = visible + reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached_tokens(prompt), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def _sample_arguments(tool: dict[str, Any], user_text: str) -> dict[str, Any]:
    schema = tool.get("function", {}).get("parameters") or {}
    words = re.findall(r"\b[A-Z][\w-]*", user_text)
    word = words[-1] if words else "example"
    samples = {"string": word, "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    return {name: samples.get(properties.get(name, {}).get("type", "string"), word) for name in required}


def _chosen_tool(body: dict[str, Any]) -> dict[str, Any]:
    tools = body["tools"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = choice.get("function", {}).get("name")
        for tool in tools:
            if tool.get("function", {}).get("name") == name:
                return tool
    return tools[0]


def reply(body: dict[str, Any], call_number: int) -> tuple[str | None, list[dict[str, Any]], str]:
    """(content, tool calls, finish reason) for a chat request."""
    messages = body.get("messages", [])
    if body.get("model") == "content-filter":
        return None, [], "content_filter"
    if body.get("tools") and body.get("tool_choice") != "none" and (not messages or messages[-1]["role"] != "tool"):
        tool = _chosen_tool(body)
        arguments = _sample_arguments(tool, _last_user_text(messages))
        call = {
            "id": f"call_fake{call_number:04d}",
            "type": "function",
            "function": {"name": tool["function"]["name"], "arguments": json.dumps(arguments)},
        }
        return None, [call], "tool_calls"
    if messages and messages[-1]["role"] == "tool":
        results = [message_text(m) for m in messages if m.get("role") == "tool"]
        return "Based on the tool results: " + "; ".join(results), [], "stop"
    return "Fake answer to: " + _last_user_text(messages), [], "stop"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client closing its keep-alive connection on exit is no error worth printing."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """The server, on a free port, in a daemon thread; use as a context manager or call start/stop."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._calls = 0
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_call(self) -> int:
        with self._lock:
            self._calls += 1
            return self._calls

    def record(
        self, handler: BaseHTTPRequestHandler, request: dict[str, Any], response: dict[str, Any], streamed: bool
    ) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.exchanges.append(Exchange(handler.path, headers, request, response, streamed))

    def serve(self, handler: Any, path: str, body: dict[str, Any]) -> bool:
        """Answer a POST to a path other than chat completions; False for a 404 (subclasses add paths)."""
        return False


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            pass

        def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("x-request-id", f"req_fake{fake.next_call():06d}")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str | None = None) -> None:
            kind, code, default = ERRORS.get(status, ("server_error", None, "Error."))
            self._send_json(
                status,
                {"error": {"message": message or default, "type": kind, "param": None, "code": code}},
                {"retry-after": "0"} if status == 429 else None,
            )

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._error(400, "We could not parse the JSON body of your request.")
                return
            fake.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if self.path.rstrip("/") != "/v1/chat/completions":
                if not fake.serve(self, self.path.split("?")[0].rstrip("/"), body):
                    self._error(404, f"Invalid URL (POST {self.path})")
                return
            status = self.headers.get("X-Fake-Status")
            model = str(body.get("model", ""))
            if status is None and model.startswith("error-") and model[6:].isdigit():
                status = model[6:]
            if status is not None:
                self._error(int(status))
                return
            if not body.get("messages"):
                self._error(400, "'messages' is a required property")
                return
            if body.get("stream"):
                self._stream(body)
            else:
                self._complete(body)

        def _complete(self, body: dict[str, Any]) -> None:
            number = fake.next_call()
            content, calls, finish_reason = reply(body, number)
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
            if finish_reason == "content_filter":
                message["refusal"] = "I can't help with that."
            if calls:
                message["tool_calls"] = calls
            completion_text = content or message["refusal"] or json.dumps(calls)
            model = str(body["model"])
            response = {
                "id": f"chatcmpl-fake{number:04d}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": SNAPSHOTS.get(model, model),
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
                "usage": usage(body, completion_text),
                "service_tier": "default",
                "system_fingerprint": "fp_fake0001",
            }
            fake.record(self, body, response, streamed=False)
            self._send_json(200, response)

        def _stream(self, body: dict[str, Any]) -> None:
            number = fake.next_call()
            content, calls, finish_reason = reply(body, number)
            model = str(body["model"])
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            base = {
                "id": f"chatcmpl-fake{number:04d}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": SNAPSHOTS.get(model, model),
                "service_tier": "default",
                "system_fingerprint": "fp_fake0001",
            }

            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                payload = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
                if include_usage:
                    payload["usage"] = None
                return payload

            chunks = [chunk({"role": "assistant", "content": "" if content is not None else None, "refusal": None})]
            if content:
                chunks += [chunk({"content": piece}) for piece in re.findall(r"\S+\s*", content)]
            for index, call in enumerate(calls):
                head = {"index": index, "id": call["id"], "type": "function"}
                chunks.append(chunk({"tool_calls": [{**head, "function": {"name": call["function"]["name"]}}]}))
                arguments = call["function"]["arguments"]
                for start in range(0, len(arguments), 8):
                    piece = {"index": index, "function": {"arguments": arguments[start : start + 8]}}
                    chunks.append(chunk({"tool_calls": [piece]}))
            chunks.append(chunk({}, finish_reason))
            stream_usage = usage(body, content or json.dumps(calls)) if include_usage else None
            if stream_usage is not None:
                chunks.append({**base, "choices": [], "usage": stream_usage})
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            choice = {"index": 0, "message": message, "finish_reason": finish_reason}
            fake.record(self, body, {**base, "choices": [choice], "usage": stream_usage}, streamed=True)

            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-request-id", f"req_fake{number:06d}")
            self.end_headers()
            time.sleep(FIRST_CHUNK_DELAY)
            for payload in chunks:
                self._write_chunk(f"data: {json.dumps(payload)}\n\n".encode())
                time.sleep(CHUNK_DELAY)
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _write_chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler
