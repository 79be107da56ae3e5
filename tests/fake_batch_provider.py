"""A local stand-in for the providers' batch APIs, for the official SDKs pointed at it (`base_url`):

- OpenAI: POST /v1/files (multipart upload), GET /v1/files/ID/content, POST /v1/batches, GET /v1/batches/ID.
- Anthropic: POST /v1/messages/batches, GET /v1/messages/batches/ID, GET /v1/messages/batches/ID/results (JSONL).

A batch stays in progress while `hold` is set, and ends on the first retrieve after. What each request gets is
set per custom id in `outcomes` ("error": the provider refuses it, "expired", "canceled", "incomplete": the
answer stops at the output token limit); every other request succeeds with a deterministic answer (`usage_for`)
whose usage has cached tokens, and with a tool call when the request offers tools. An OpenAI batch answers in
the shape of its endpoint: chat completions, or for /v1/responses Response objects as the Responses API
returns them (a reasoning item, then a `message` of `output_text` or a `function_call`; usage with
`input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`). Unknown ids get the
provider's 404. Every request received is kept in `requests`.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERROR, EXPIRED, CANCELED, INCOMPLETE = "error", "expired", "canceled", "incomplete"
OPENAI_RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
RESPONSES_ENDPOINT = "/v1/responses"
RESPONSES_MODEL = "gpt-5-mini-2025-08-07"  # what a /v1/responses batch answers with (a reasoning model)
ANTHROPIC_RESPONSE_MODEL = "claude-sonnet-4-5-20250929"
PROVIDER_ERROR = "max_tokens is too large for this model"


@dataclass
class Received:
    method: str
    path: str
    body: bytes


def usage_for(provider: str, index: int) -> dict[str, int]:
    """The usage the fake answers the index-th request of a batch with: cache reads (and writes) included.
    `provider` is openai (chat completions), responses (OpenAI's Responses API) or anthropic."""
    if provider == "responses":
        prompt, cached, written, completion, reasoning = 2000 + 10 * index, 1536, 128, 400 + index, 256
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion,
        }
    if provider == "openai":
        prompt, cached, completion = 1200 + 10 * index, 1024, 50 + index
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
    return {
        "input_tokens": 300 + 10 * index,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
        "output_tokens": 80 + index,
    }


def answer_text(custom_id: str) -> str:
    return f"Summary of {custom_id}."


def reasoning_summary(custom_id: str) -> str:
    return f"Reading ticket {custom_id}."


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class FakeBatchProvider:
    def __init__(self) -> None:
        self.hold = False
        # False: Responses usage without `cache_write_tokens`, as results files written before OpenAI added it.
        self.responses_cache_writes = True
        self.outcomes: dict[str, str] = {}
        self.requests: list[Received] = []
        self.files: dict[str, bytes] = {}
        self.openai_batches: dict[str, dict[str, Any]] = {}
        self.anthropic_batches: dict[str, dict[str, Any]] = {}
        self.anthropic_inputs: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._instance = secrets.token_hex(4)
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                provider.requests.append(Received("GET", self.path, b""))
                self._send(*provider.get(self.path.split("?", 1)[0]))

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                provider.requests.append(Received("POST", self.path, body))
                self._send(*provider.post(self.path.split("?", 1)[0], body, self.headers.get("Content-Type", "")))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ---------------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> FakeBatchProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    def _next_id(self, prefix: str) -> str:
        """Unique across fakes too (as the providers' ids are): two fakes' batches can land in one store."""
        with self._lock:
            self._counter += 1
            return f"{prefix}{self._instance}{self._counter:06d}"

    # ------------------------------------------------------------------------------------------------ routing

    def get(self, path: str) -> tuple[int, Any] | tuple[int, Any, str]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
            if parts[2] not in self.files:
                return self._openai_404("file", parts[2])
            return 200, self.files[parts[2]], "application/octet-stream"
        if parts[:2] == ["v1", "batches"] and len(parts) == 3:
            batch = self.openai_batches.get(parts[2])
            if batch is None:
                return self._openai_404("batch", parts[2])
            return 200, self._openai_advance(batch)
        if parts[:3] == ["v1", "messages", "batches"] and len(parts) in (4, 5):
            batch = self.anthropic_batches.get(parts[3])
            if batch is None:
                return 404, {"type": "error", "error": {"type": "not_found_error", "message": f"No batch {parts[3]}"}}
            if len(parts) == 4:
                return 200, self._anthropic_advance(batch)
            if batch["processing_status"] != "ended":
                return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "not ended"}}
            return 200, self._anthropic_results(parts[3]), "application/binary"
        return 404, {"error": {"message": f"no route {path}"}}

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
        if path == "/v1/files":
            return self._upload(body, content_type)
        if path == "/v1/batches":
            return self._openai_create(json.loads(body))
        if path == "/v1/messages/batches":
            return self._anthropic_create(json.loads(body))
        return 404, {"error": {"message": f"no route {path}"}}

    @staticmethod
    def _openai_404(kind: str, identifier: str) -> tuple[int, Any]:
        message = f"No {kind} found with id '{identifier}'."
        return 404, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}

    # --------------------------------------------------------------------------------------------------- OpenAI

    def _upload(self, body: bytes, content_type: str) -> tuple[int, Any]:
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        content = fields["file"].get_payload(decode=True)
        purpose = fields["purpose"].get_content().strip()
        file_id = self._next_id("file-")
        self.files[file_id] = content
        return 200, {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": fields["file"].get_filename(),
            "purpose": purpose,
            "status": "processed",
        }

    def _openai_create(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("input_file_id") not in self.files:
            return self._openai_404("file", str(body.get("input_file_id")))
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].splitlines() if line.strip()]
        batch_id = self._next_id("batch_")
        self.openai_batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "in_progress",
            "created_at": int(time.time()),
            "metadata": body.get("metadata") or {},
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "output_file_id": None,
            "error_file_id": None,
            "_lines": lines,
        }
        return 200, self._public(self.openai_batches[batch_id])

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in batch.items() if not key.startswith("_")}

    def _openai_advance(self, batch: dict[str, Any]) -> dict[str, Any]:
        if batch["status"] == "in_progress" and not self.hold:
            self._openai_finish(batch)
        return self._public(batch)

    def _openai_finish(self, batch: dict[str, Any]) -> None:
        outputs, errors = [], []
        for index, line in enumerate(batch["_lines"]):
            custom_id = line["custom_id"]
            outcome = self.outcomes.get(custom_id)
            entry: dict[str, Any] = {"id": f"batch_req_{index}", "custom_id": custom_id}
            if outcome == ERROR:
                errors.append(entry | {"response": {"status_code": 400, "request_id": f"req_{index}", "body": {
                    "error": {"message": PROVIDER_ERROR, "type": "invalid_request_error", "param": "max_tokens",
                              "code": None}}}, "error": None})  # fmt: skip
            elif outcome in (EXPIRED, CANCELED):
                code = "batch_expired" if outcome == EXPIRED else "batch_cancelled"
                errors.append(entry | {"response": None, "error": {"code": code, "message": f"request {outcome}"}})
            else:
                answer = self._openai_response if batch["endpoint"] == RESPONSES_ENDPOINT else self._openai_completion
                body = answer(line["body"], custom_id, index, outcome == INCOMPLETE)
                if not self.responses_cache_writes and "output" in body:
                    del body["usage"]["input_tokens_details"]["cache_write_tokens"]
                outputs.append(
                    entry
                    | {"response": {"status_code": 200, "request_id": f"req_{index}", "body": body}, "error": None}
                )
        if any(self.outcomes.get(line["custom_id"]) == EXPIRED for line in batch["_lines"]):
            batch["status"], batch["expired_at"] = "expired", int(time.time())
        else:
            batch["status"], batch["completed_at"] = "completed", int(time.time())
        batch["request_counts"] = {"total": len(batch["_lines"]), "completed": len(outputs), "failed": len(errors)}
        for key, lines in (("output_file_id", outputs), ("error_file_id", errors)):
            if lines:
                file_id = self._next_id("file-")
                self.files[file_id] = "".join(json.dumps(line) + "\n" for line in lines).encode()
                batch[key] = file_id

    @staticmethod
    def _openai_completion(request: dict[str, Any], custom_id: str, index: int, incomplete: bool) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer_text(custom_id), "refusal": None}
        finish = "stop"
        if incomplete:
            message["content"], finish = answer_text(custom_id)[:10], "length"
        elif request.get("tools"):
            name = request["tools"][0]["function"]["name"]
            message["content"] = None
            message["tool_calls"] = [{"id": f"call_{index}", "type": "function", "function": {
                "name": name, "arguments": json.dumps({"ticket": custom_id})}}]  # fmt: skip
            finish = "tool_calls"
        return {
            "id": f"chatcmpl-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": OPENAI_RESPONSE_MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage_for("openai", index),
            "system_fingerprint": "fp_fake",
        }

    @staticmethod
    def _openai_response(request: dict[str, Any], custom_id: str, index: int, incomplete: bool) -> dict[str, Any]:
        """A Response object as /v1/responses returns it (and a batch output line's `response.body` holds)."""
        summary = [{"type": "summary_text", "text": reasoning_summary(custom_id)}]
        asked = (request.get("reasoning") or {}).get("summary")  # the summary only when the request asks for one
        output: list[dict[str, Any]] = [{"id": f"rs_{index}", "type": "reasoning", "summary": summary if asked else []}]
        status, incomplete_details = "completed", None
        tools = request.get("tools") or []
        if incomplete:  # the output token limit hit mid-answer
            status, incomplete_details = "incomplete", {"reason": "max_output_tokens"}
            output.append({"id": f"msg_{index}", "type": "message", "status": "incomplete", "role": "assistant",
                           "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                                        "text": answer_text(custom_id)[:10]}]})  # fmt: skip
        elif tools:
            output.append({"id": f"fc_{index}", "type": "function_call", "status": "completed",
                           "call_id": f"call_{index}", "name": tools[0]["name"],
                           "arguments": json.dumps({"ticket": custom_id})})  # fmt: skip
        else:
            output.append({"id": f"msg_{index}", "type": "message", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                                        "text": answer_text(custom_id)}]})  # fmt: skip
        return {
            "id": f"resp_{index}",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": incomplete_details,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": RESPONSES_MODEL,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": "medium", "summary": None},
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [{"description": None, "strict": True, **tool} for tool in tools],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage_for("responses", index),
            "user": None,
            "metadata": {},
        }

    # ------------------------------------------------------------------------------------------------ Anthropic

    def _anthropic_create(self, body: dict[str, Any]) -> tuple[int, Any]:
        batch_id = self._next_id("msgbatch_")
        now = time.time()
        self.anthropic_inputs[batch_id] = body["requests"]
        self.anthropic_batches[batch_id] = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {
                "processing": len(body["requests"]),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": _iso(now),
            "expires_at": _iso(now + 86400),
            "ended_at": None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": None,
        }
        return 200, self.anthropic_batches[batch_id]

    def _anthropic_advance(self, batch: dict[str, Any]) -> dict[str, Any]:
        if batch["processing_status"] == "in_progress" and not self.hold:
            counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
            for item in self.anthropic_inputs[batch["id"]]:
                outcome = self.outcomes.get(item["custom_id"])
                counts[{ERROR: "errored", EXPIRED: "expired", CANCELED: "canceled"}.get(outcome, "succeeded")] += 1
            batch.update(
                processing_status="ended",
                request_counts=counts,
                ended_at=_iso(time.time()),
                results_url=f"{self.url}/v1/messages/batches/{batch['id']}/results",
            )
        return batch

    def _anthropic_results(self, batch_id: str) -> bytes:
        lines = []
        for index, item in enumerate(self.anthropic_inputs[batch_id]):
            custom_id, outcome = item["custom_id"], self.outcomes.get(item["custom_id"])
            if outcome == ERROR:
                result: dict[str, Any] = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": PROVIDER_ERROR}}}  # fmt: skip
            elif outcome in (EXPIRED, CANCELED):
                result = {"type": outcome}
            else:
                result = {"type": "succeeded", "message": self._anthropic_message(item["params"], custom_id, index)}
            lines.append({"custom_id": custom_id, "result": result})
        return "".join(json.dumps(line) + "\n" for line in lines).encode()

    @staticmethod
    def _anthropic_message(params: dict[str, Any], custom_id: str, index: int) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": answer_text(custom_id)}]
        stop = "end_turn"
        if params.get("tools"):
            content.append({"type": "tool_use", "id": f"toolu_{index}", "name": params["tools"][0]["name"],
                            "input": {"ticket": custom_id}})  # fmt: skip
            stop = "tool_use"
        return {
            "id": f"msg_{index}",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_RESPONSE_MODEL,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage_for("anthropic", index),
        }
