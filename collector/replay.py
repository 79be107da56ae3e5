"""`tracehouse replay`: send a logged call again, to another model or with another prompt, and compare.

tracehouse replay SPAN_ID [--model M] [--system-prompt TEXT|@FILE] [--temperature T] [--max-tokens N]
                  [--endpoint URL] [--api-key-env VAR] [--provider openai|anthropic] [--allow-redacted]
tracehouse replay --where CONDITION [--since 7d] [--limit N] [--concurrency C] [overrides...]

The request is rebuilt from the stored call (system prompt, messages with their tool calls and tool
results, tools, parameters), the overrides applied, and sent to an OpenAI-compatible Chat Completions
endpoint or Anthropic's Messages API. The replay is stored as a new LLM span in its own trace, with an OTLP
link to the original and `tracehouse.replay_of` (llm_calls.replay_of), through the collector's own pipeline
(normalized, priced, redacted: the running collector's, else the same stages in this process).

What cannot be replayed is said, not guessed: content with redaction placeholders (unless --allow-redacted),
content dropped by sampling, a provider the command cannot speak, a missing API key (named). Nothing is
sent anywhere unless the user runs the command; endpoint and key come from the flags or OPENAI_BASE_URL /
OPENAI_API_KEY / ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tracehouse.collector.config import add_flags
from tracehouse.collector.stages.normalize.messages import SYSTEM_ROLES
from tracehouse.instrumentation import attributes

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

REPLAY_OF = attributes.REPLAY_OF
PROVIDERS = ("openai", "anthropic")
DEFAULT_ENDPOINTS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
ENDPOINT_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# Providers whose calls speak the OpenAI Chat Completions wire format (others need --provider).
OPENAI_COMPATIBLE = {"openai", "azure", "azure_openai", "openrouter", "groq", "together", "deepseek", "mistral", "xai"}
REQUEST_TIMEOUT = 120.0
_PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|CARD|IBAN|SSN|IP|SECRET|REDACTED)(?::[0-9a-f]{16})?\]|\[[A-Z_]+\]")
_CALL_COLUMNS = """id, trace_id, tenant_id, service, feature, provider, model, request_model, system_prompt, messages,
    tools, invocation_parameters, temperature, max_tokens, response, tool_calls, finish_reason, prompt_tokens,
    completion_tokens, toFloat64(cost_usd) AS cost, latency_ms_total, error, status, content_sampled,
    redaction_counts"""


class ReplayFailed(Exception):
    """This call cannot be replayed as asked; the message says why and what would make it possible."""


@dataclass
class Overrides:
    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    provider: str | None = None
    endpoint: str | None = None
    api_key_env: str | None = None
    allow_redacted: bool = False


@dataclass
class Outcome:
    """One side of the comparison: what a call answered and what it cost."""

    model: str
    text: str
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    latency_ms: float
    error: str = ""


@dataclass
class Replay:
    original_id: str
    before: Outcome
    after: Outcome
    span_id: str = ""
    trace_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return (self.before.text, _calls_key(self.before.tool_calls)) != (
            self.after.text,
            _calls_key(self.after.tool_calls),
        )


def _calls_key(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c.get("name", ""), json.dumps(c.get("arguments"), sort_keys=True)) for c in calls]


# --- the stored call ------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    from tracehouse.collector.query import string_literal

    return string_literal(value)


def _rows(config: Config, sql: str) -> list[dict[str, Any]]:
    from tracehouse.collector.query import QueryFailed, read_rows

    try:
        return read_rows(config, sql)
    except QueryFailed as exc:
        raise ReplayFailed(str(exc)) from None


def load_call(config: Config, span_id: str) -> dict[str, Any]:
    value = span_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{16}", value):
        raise ReplayFailed(f"SPAN_ID {span_id!r}: a span id is 16 hex digits, as OTLP/JSON writes it")
    calls = _rows(config, f"SELECT {_CALL_COLUMNS} FROM llm_calls WHERE id = {_quote(value)} LIMIT 2")
    if not calls:
        raise ReplayFailed(f"no LLM call with span id {value} in the store")
    if len(calls) > 1:
        raise ReplayFailed(f"span id {value} is in several tenants; replay one by its own store")
    return calls[0]


def _json(text: str, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _text_of(message: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in message.get("content") or [] if p.get("type") == "text")


def redacted_parts(call: dict[str, Any]) -> list[str]:
    """Where the stored call carries redaction placeholders (its replay would send those, not the text)."""
    parts = []
    if _PLACEHOLDER.search(call.get("system_prompt") or ""):
        parts.append("the system prompt")
    for n, message in enumerate(_json(call.get("messages") or "", [])):
        if _PLACEHOLDER.search(_text_of(message)) or _PLACEHOLDER.search(json.dumps(message.get("tool_calls", []))):
            parts.append(f"message {n + 1} ({message.get('role', '?')})")
    if not parts and call.get("redaction_counts"):
        kinds = ", ".join(sorted(call["redaction_counts"]))
        parts.append(f"its attributes ({kinds} redacted)")
    return parts


def check_replayable(call: dict[str, Any], overrides: Overrides) -> str:
    """The provider to speak; raises ReplayFailed saying why the call cannot be replayed as asked."""
    if not _json(call.get("messages") or "", []):
        if str(call.get("content_sampled")) in ("dropped", "0"):
            raise ReplayFailed(f"call {call['id']}: its content was dropped by sampling; nothing to replay")
        raise ReplayFailed(f"call {call['id']}: no input messages were recorded; nothing to replay")
    provider = overrides.provider or (call.get("provider") or "").lower()
    if provider in OPENAI_COMPATIBLE:
        provider = "openai"
    if provider not in PROVIDERS:
        raise ReplayFailed(
            f"call {call['id']}: provider {call.get('provider') or 'unknown'!r} is not one this command speaks"
            " (OpenAI-compatible Chat Completions or Anthropic Messages): pass --provider openai|anthropic"
            " to send it to a compatible endpoint"
        )
    redacted = redacted_parts(call)
    if redacted and not overrides.allow_redacted:
        raise ReplayFailed(
            f"call {call['id']}: redaction placeholders in {', '.join(redacted)}: the replay would send them"
            " instead of the text; --allow-redacted replays it as stored"
        )
    return provider


# --- requests -------------------------------------------------------------------------------------------


def _system_and_messages(call: dict[str, Any], overrides: Overrides) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt that opened the conversation, and the conversation as stored: a system or developer
    message later in it stays where it sat (normalize lifts only the opening ones into system_prompt)."""
    messages = _json(call.get("messages") or "", [])
    system = call.get("system_prompt") or ""
    if overrides.system_prompt is not None:
        system = overrides.system_prompt
    return system, messages


def _parameters(call: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    params = {}
    stored = _json(call.get("invocation_parameters") or "", {})
    if isinstance(stored, dict):
        params.update({k: v for k, v in stored.items() if k in ("temperature", "top_p", "max_tokens", "stop", "seed")})
    if call.get("temperature") is not None:
        params.setdefault("temperature", call["temperature"])
    if call.get("max_tokens"):
        params.setdefault("max_tokens", call["max_tokens"])
    if overrides.temperature is not None:
        params["temperature"] = overrides.temperature
    if overrides.max_tokens is not None:
        params["max_tokens"] = overrides.max_tokens
    return params


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def openai_request(call: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    system, stored = _system_and_messages(call, overrides)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in stored:
        role = message.get("role", "user")
        out: dict[str, Any] = {"role": role, "content": _text_of(message)}
        if message.get("tool_calls"):
            out["tool_calls"] = [
                {
                    "id": c.get("id") or f"call_{n}",
                    "type": "function",
                    "function": {"name": c.get("name", ""), "arguments": _arguments_text(c.get("arguments", {}))},
                }
                for n, c in enumerate(message["tool_calls"])
            ]
            out["content"] = out["content"] or None
        if role == "tool":
            out["tool_call_id"] = message.get("tool_call_id", "")
        messages.append(out)
    body: dict[str, Any] = {
        "model": overrides.model or call.get("request_model") or call["model"],
        "messages": messages,
    }
    tools = _json(call.get("tools") or "", [])
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    k: v
                    for k, v in (
                        ("name", t.get("name")),
                        ("description", t.get("description")),
                        ("parameters", t.get("parameters")),
                    )
                    if v is not None
                },
            }
            for t in tools
        ]
    body.update(_parameters(call, overrides))
    return body


def anthropic_request(call: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    system, stored = _system_and_messages(call, overrides)
    messages: list[dict[str, Any]] = []
    for message in stored:
        role = message.get("role", "user")
        if role in SYSTEM_ROLES:  # Anthropic takes system text only in `system`: a later one joins it there
            system = "\n\n".join(text for text in (system, _text_of(message)) if text)
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _text_of(message),
            }
            if messages and messages[-1]["role"] == "user" and isinstance(messages[-1]["content"], list):
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
            continue
        blocks: list[dict[str, Any]] = [{"type": "text", "text": _text_of(message)}] if _text_of(message) else []
        for n, c in enumerate(message.get("tool_calls") or []):
            arguments = c.get("arguments", {})
            if isinstance(arguments, str):
                arguments = _json(arguments, {"input": arguments})
            blocks.append(
                {"type": "tool_use", "id": c.get("id") or f"toolu_{n}", "name": c.get("name", ""), "input": arguments}
            )
        messages.append({"role": "assistant" if role == "assistant" else "user", "content": blocks})
    params = _parameters(call, overrides)
    body: dict[str, Any] = {
        "model": overrides.model or call.get("request_model") or call["model"],
        "messages": messages,
        "max_tokens": params.pop("max_tokens", 1024),
    }
    if system:
        body["system"] = system
    tools = _json(call.get("tools") or "", [])
    if tools:
        body["tools"] = [
            {
                "name": t.get("name"),
                "description": t.get("description", ""),
                "input_schema": t.get("parameters") or {"type": "object"},
            }
            for t in tools
        ]
    body.update({k: v for k, v in params.items() if k in ("temperature", "top_p")})
    return body


def _endpoint_and_key(provider: str, overrides: Overrides) -> tuple[str, str]:
    endpoint = overrides.endpoint or os.environ.get(ENDPOINT_ENV[provider]) or DEFAULT_ENDPOINTS[provider]
    variable = overrides.api_key_env or KEY_ENV[provider]
    key = os.environ.get(variable, "")
    if not key:
        raise ReplayFailed(f"no API key for {provider}: set {variable} (or name another variable with --api-key-env)")
    return endpoint.rstrip("/"), key


def send(provider: str, body: dict[str, Any], endpoint: str, key: str) -> tuple[dict[str, Any], float]:
    """POST the request; (the parsed answer, latency in ms). Raises ReplayFailed with the provider's message."""
    if provider == "openai":
        url, headers = endpoint + "/chat/completions", {"Authorization": f"Bearer {key}"}
    else:
        url, headers = endpoint + "/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={**headers, "Content-Type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise ReplayFailed(f"{url} answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
        raise ReplayFailed(f"{url}: {getattr(exc, 'reason', exc)}") from None
    return answer, (time.perf_counter() - started) * 1000


def parse_answer(provider: str, answer: dict[str, Any], fallback_model: str) -> Outcome:
    if provider == "openai":
        choice = (answer.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        calls = [
            {
                "id": c.get("id", ""),
                "name": c["function"]["name"],
                "arguments": _json(c["function"].get("arguments", ""), c["function"].get("arguments")),
            }
            for c in message.get("tool_calls") or []
        ]
        usage = answer.get("usage") or {}
        return Outcome(
            answer.get("model") or fallback_model,
            message.get("content") or "",
            calls,
            choice.get("finish_reason") or "",
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            None,
            0.0,
        )
    blocks = answer.get("content") or []
    calls = [
        {"id": b.get("id", ""), "name": b.get("name", ""), "arguments": b.get("input", {})}
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    usage = answer.get("usage") or {}
    return Outcome(
        answer.get("model") or fallback_model,
        "".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
        calls,
        answer.get("stop_reason") or "",
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        None,
        0.0,
    )


# --- the replay's span ------------------------------------------------------------------------------------


def _attribute(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _message_attributes(prefix: str, role: str, text: str, calls: list[dict[str, Any]], tool_call_id: str = "") -> dict:
    out: dict[str, Any] = {f"{prefix}.message.role": role}
    if text:
        out[f"{prefix}.message.content"] = text
    if tool_call_id:
        out[f"{prefix}.message.tool_call_id"] = tool_call_id
    for n, call in enumerate(calls):
        out[f"{prefix}.message.tool_calls.{n}.tool_call.id"] = call.get("id", "")
        out[f"{prefix}.message.tool_calls.{n}.tool_call.function.name"] = call.get("name", "")
        out[f"{prefix}.message.tool_calls.{n}.tool_call.function.arguments"] = _arguments_text(
            call.get("arguments", {})
        )
    return out


def replay_span(
    call: dict[str, Any], provider: str, request: dict[str, Any], outcome: Outcome, started_ns: int
) -> tuple[bytes, str, str]:
    """The replay as an OTLP/JSON request (OpenInference attributes, like an instrumented call): its body, the
    new trace id and span id. In its own trace, linked to the original span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    attributes: dict[str, Any] = {
        "openinference.span.kind": "LLM",
        "llm.provider": provider,
        "llm.model_name": outcome.model,
        "llm.invocation_parameters": json.dumps(
            {k: v for k, v in request.items() if k not in ("messages", "tools", "system")}
        ),
        "llm.token_count.prompt": outcome.prompt_tokens,
        "llm.token_count.completion": outcome.completion_tokens,
        REPLAY_OF: call["id"],
    }
    if call.get("feature"):
        attributes["tracehouse.feature"] = call["feature"]
    if outcome.finish_reason:
        attributes["llm.finish_reason"] = outcome.finish_reason
    _, messages = _system_and_messages(call, Overrides())
    if provider == "anthropic":
        system = request.get("system", "")
    else:
        system = next((m["content"] for m in request["messages"] if m["role"] == "system"), "")
    entries = [("system", system, [], "")] if system else []
    entries += [
        (m.get("role", "user"), _text_of(m), m.get("tool_calls") or [], m.get("tool_call_id", "")) for m in messages
    ]
    for n, (role, text, calls, tool_call_id) in enumerate(entries):
        attributes.update(_message_attributes(f"llm.input_messages.{n}", role, text, calls, tool_call_id))
    attributes.update(_message_attributes("llm.output_messages.0", "assistant", outcome.text, outcome.tool_calls))
    for n, tool in enumerate(_json(call.get("tools") or "", [])):
        attributes[f"llm.tools.{n}.tool.json_schema"] = json.dumps({"type": "function", "function": tool})
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "replay",
        "kind": 3,
        "startTimeUnixNano": str(started_ns),
        "endTimeUnixNano": str(started_ns + int(outcome.latency_ms * 1_000_000)),
        "attributes": [_attribute(k, v) for k, v in attributes.items()],
        "links": [
            {"traceId": call["trace_id"], "spanId": call["id"], "attributes": [_attribute(REPLAY_OF, call["id"])]}
        ],
        "status": {"code": 2, "message": outcome.error} if outcome.error else {"code": 1},
    }
    resource = {"attributes": [_attribute("service.name", call.get("service") or "tracehouse-replay")]}
    body = {
        "resourceSpans": [
            {"resource": resource, "scopeSpans": [{"scope": {"name": "tracehouse.replay"}, "spans": [span]}]}
        ]
    }
    return json.dumps(body).encode(), trace_id, span_id


class SpanSink:
    """Where replays go: the running collector's pipeline (its local endpoint, for the call's tenant), else the
    same stages in this process into the store, opened once (under the store lock) for a whole batch."""

    def __init__(self, config: Config) -> None:
        from tracehouse.collector.runtime import read_runtime_info

        self._config = config
        self._info = read_runtime_info(config) if config.is_embedded else None
        self._lock = threading.Lock()
        self._store_lock: Any = None
        self._client: Any = None
        self._trace_store: Any = None
        self._stages: Any = None

    @property
    def through_collector(self) -> bool:
        return self._info is not None and bool(self._info.get("query_url"))

    def store(self, body: bytes, tenant: str) -> None:
        from tracehouse.collector.reviews import SPANS_ROUTE
        from tracehouse.collector.runtime import CollectorRefused, post_to_collector

        if self.through_collector:
            path = SPANS_ROUTE + "?" + urllib.parse.urlencode({"tenant": tenant})
            try:
                if post_to_collector(self._info, path, body, 60) is not None:
                    return
            except CollectorRefused as exc:
                raise ReplayFailed(f"the collector refused the replay's span: {exc}") from None
            self._info = None  # it just stopped: on the store from now on
        from tracehouse.collector.processing import process_body

        with self._lock:
            self._open()
            processed = process_body(self._stages, body, True, tenant or None)
            if processed.rows:
                self._trace_store.insert(processed.header, processed.payload)

    def cost(self, span_id: str) -> float | None:
        """The replay's cost as the pipeline priced it (the same pricer as every call), once it landed."""
        sql = f"SELECT toFloat64(cost_usd) AS cost, cost_source FROM llm_calls WHERE id = {_quote(span_id)}"
        deadline = time.monotonic() + (10.0 if self.through_collector else 0.0)
        while True:
            if self.through_collector:
                rows = _rows(self._config, sql)
            else:
                with self._lock:
                    self._open()
                    found = self._client.query(sql).result_rows
                rows = [{"cost": cost, "cost_source": source} for cost, source in found]
            if rows:
                return rows[0]["cost"] if rows[0]["cost_source"] != "unknown" else None
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def _open(self) -> None:
        if self._trace_store is not None:
            return
        from tracehouse.collector import store
        from tracehouse.collector.runtime import StoreBusy, lock_store
        from tracehouse.collector.stages import default_stages
        from tracehouse.collector.writer import TraceStore

        config = self._config
        try:
            self._store_lock = lock_store(config)
        except StoreBusy as exc:
            raise ReplayFailed(f"{exc}; and no collector answers on its endpoint") from None
        self._client = store.connect(config.store_url)
        store.migrate(self._client, config.cluster, retention_settings=config.retention)
        self._stages = default_stages(config)
        self._trace_store = TraceStore(config.store_url, cluster=config.cluster, retention=config.retention)

    def close(self) -> None:
        for thing in (self._trace_store, self._client, self._store_lock):
            if thing is not None:
                thing.close()


# --- one replay and many --------------------------------------------------------------------------------


def _before(call: dict[str, Any]) -> Outcome:
    response = _json(call.get("response") or "", [])
    text = "".join(_text_of(m) for m in response if m.get("role") in ("assistant", None))
    calls = _json(call.get("tool_calls") or "", [])
    return Outcome(
        call.get("model") or "",
        text,
        calls if isinstance(calls, list) else [],
        call.get("finish_reason") or "",
        int(call.get("prompt_tokens") or 0),
        int(call.get("completion_tokens") or 0),
        call.get("cost"),
        float(call.get("latency_ms_total") or 0),
        call.get("error") or "",
    )


def replay_call(config: Config, call: dict[str, Any], overrides: Overrides, sink: SpanSink) -> Replay:
    provider = check_replayable(call, overrides)
    endpoint, key = _endpoint_and_key(provider, overrides)  # before anything is sent or stored
    request = openai_request(call, overrides) if provider == "openai" else anthropic_request(call, overrides)
    started_ns = time.time_ns()
    try:
        answer, latency = send(provider, request, endpoint, key)
        after = parse_answer(provider, answer, request["model"])
        after.latency_ms = latency
    except ReplayFailed as exc:
        after = Outcome(request["model"], "", [], "", 0, 0, None, (time.time_ns() - started_ns) / 1e6, str(exc))
    body, trace_id, span_id = replay_span(call, provider, request, after, started_ns)
    sink.store(body, call.get("tenant_id") or "")
    after.cost = sink.cost(span_id)
    return Replay(call["id"], _before(call), after, span_id, trace_id)


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}"


def comparison(replay: Replay) -> list[str]:
    before, after = replay.before, replay.after
    lines = [f"replay of {replay.original_id} -> span {replay.span_id} (trace {replay.trace_id})", ""]
    rows = [
        ("model", before.model, after.model),
        ("finish reason", before.finish_reason or "-", after.finish_reason or "-"),
        ("tool calls", _calls_text(before.tool_calls), _calls_text(after.tool_calls)),
        (
            "tokens in/out",
            f"{before.prompt_tokens}/{before.completion_tokens}",
            f"{after.prompt_tokens}/{after.completion_tokens}",
        ),
        ("cost", _money(before.cost), _money(after.cost)),
        ("latency", f"{before.latency_ms:.0f} ms", f"{after.latency_ms:.0f} ms"),
        ("error", before.error or "-", after.error or "-"),
    ]
    width = max(len(r[1]) for r in rows)
    lines.append(f"{'':<14}  {'original':<{width}}  replay")
    lines += [f"{name:<14}  {old:<{width}}  {new}" for name, old, new in rows]
    lines += ["", "response:"]
    if before.text == after.text:
        lines.append("  (unchanged)" if after.text else "  (no text either time)")
    else:
        diff = difflib.unified_diff(
            before.text.splitlines(), after.text.splitlines(), "original", "replay", lineterm="", n=2
        )
        lines += [f"  {line}" for line in diff]
    return lines


def _calls_text(calls: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c.get('name')}({_arguments_text(c.get('arguments', {}))})" for c in calls) or "-"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def batch(
    config: Config, calls: list[dict[str, Any]], overrides: Overrides, concurrency: int, err: IO[str], sink: SpanSink
) -> tuple[list[Replay], list[tuple[str, str]], bool]:
    """Replay many calls, `concurrency` at a time; Ctrl-C stops cleanly. (done, (span id, why) of the ones that
    could not be replayed, whether it was interrupted)."""
    done: list[Replay] = []
    skipped: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    tty = err.isatty()

    def one(call: dict[str, Any]) -> None:
        if stop.is_set():
            return
        try:
            result = replay_call(config, call, overrides, sink)
        except ReplayFailed as exc:
            with lock:
                skipped.append((call["id"], str(exc)))
            return
        with lock:
            done.append(result)
            count = len(done) + len(skipped)
        if tty:
            print(f"\rreplayed {count}/{len(calls)}", end="", file=err, flush=True)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency))
    interrupted = False
    try:
        futures = [pool.submit(one, call) for call in calls]
        for future in concurrent.futures.as_completed(futures):
            future.result()
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if tty:
        print(file=err)
    return done, skipped, interrupted


def summary(done: list[Replay], skipped: list[tuple[str, str]], interrupted: bool, total: int) -> list[str]:
    lines = [f"replayed {len(done)} of {total} call(s)" + (" (stopped by Ctrl-C)" if interrupted else "")]
    if done:
        changed = sum(r.changed for r in done)
        errors_before = sum(bool(r.before.error) for r in done)
        errors_after = sum(bool(r.after.error) for r in done)
        rows = [
            ("changed", f"{changed} of {len(done)}", ""),
            ("error rate", f"{errors_before / len(done):.0%}", f"{errors_after / len(done):.0%}"),
            ("mean cost", _money(_mean([r.before.cost for r in done])), _money(_mean([r.after.cost for r in done]))),
            (
                "mean latency",
                f"{_mean([r.before.latency_ms for r in done]) or 0:.0f} ms",
                f"{_mean([r.after.latency_ms for r in done]) or 0:.0f} ms",
            ),
        ]
        lines.append(f"{'':<13}  {'original':<14}  replay")
        lines += [f"{name:<13}  {old:<14}  {new}" for name, old, new in rows]
        worst = sorted(done, key=_regression, reverse=True)[:5]
        worst = [r for r in worst if _regression(r) > (0, 0.0)]
        if worst:
            lines.append("worst regressions:")
            for r in worst:
                why = r.after.error or f"cost {_money(r.before.cost)} -> {_money(r.after.cost)}"
                lines.append(f"  {r.original_id} -> {r.span_id}  {why}")
    for span_id, why in skipped:
        lines.append(f"not replayed {span_id}: {why}")
    return lines


def _regression(replay: Replay) -> tuple[int, float]:
    """New errors first, then the largest cost increase."""
    new_error = int(bool(replay.after.error) and not replay.before.error)
    increase = (replay.after.cost or 0.0) - (replay.before.cost or 0.0)
    return new_error, max(increase, 0.0)


# --- command line ---------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    command = subparsers.add_parser(
        "replay", help="send a logged call (or many) again, to another model or prompt, and compare"
    )
    add_flags(command, "replay")
    command.add_argument("span_id", nargs="?", metavar="SPAN_ID", help="the call to replay (16 hex digits)")
    command.add_argument("--where", help="replay every call matching this SQL condition over llm_calls")
    command.add_argument(
        "--since", default="7d", help="with --where: calls at or after (a date, or 7d, 24h); default 7d"
    )
    command.add_argument("--limit", type=int, default=50, help="with --where: at most this many calls (default 50)")
    command.add_argument("--concurrency", type=int, default=4, help="with --where: calls in flight at once (default 4)")
    command.add_argument("--model", help="send to this model instead")
    command.add_argument("--system-prompt", help="replace the system prompt: TEXT, or @FILE to read it from a file")
    command.add_argument("--temperature", type=float, help="override the temperature")
    command.add_argument("--max-tokens", type=int, help="override the maximum output tokens")
    command.add_argument("--endpoint", help="the provider's base URL (default OPENAI_BASE_URL / ANTHROPIC_BASE_URL)")
    command.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="the variable holding the API key (default OPENAI_API_KEY / ANTHROPIC_API_KEY)",
    )
    command.add_argument("--provider", choices=PROVIDERS, help="speak this API whatever the call's provider was")
    command.add_argument(
        "--allow-redacted",
        action="store_true",
        help="replay calls whose content carries redaction placeholders, as stored",
    )
    return command


def _overrides(args: argparse.Namespace) -> Overrides:
    system = args.system_prompt
    if system is not None and system.startswith("@"):
        try:
            system = Path(system[1:]).read_text()
        except OSError as exc:
            raise ReplayFailed(f"--system-prompt {system}: {exc.strerror or exc}") from None
    if args.max_tokens is not None and args.max_tokens < 1:
        raise ReplayFailed(f"--max-tokens {args.max_tokens}: at least 1")
    return Overrides(
        args.model,
        system,
        args.temperature,
        args.max_tokens,
        args.provider,
        args.endpoint,
        args.api_key_env,
        args.allow_redacted,
    )


def run(args: argparse.Namespace, config: Config, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    try:
        overrides = _overrides(args)
        if (args.span_id is None) == (args.where is None):
            raise ReplayFailed("give a SPAN_ID, or --where CONDITION for many calls (not both)")
        if args.span_id is not None:
            call = load_call(config, args.span_id)
            sink = SpanSink(config)
            try:
                replay = replay_call(config, call, overrides, sink)
            finally:
                sink.close()
            print("\n".join(comparison(replay)), file=out)
            return 0 if not replay.after.error else 1
        if not 1 <= args.limit <= 10_000:
            raise ReplayFailed(f"--limit {args.limit}: between 1 and 10000")
        from tracehouse.collector.prices_cli import parse_when

        try:
            since = parse_when(args.since)
        except ValueError as exc:
            raise ReplayFailed(f"--since: {exc}") from None
        sql = (
            f"SELECT {_CALL_COLUMNS} FROM llm_calls WHERE ({args.where})"
            f" AND ts >= parseDateTime64BestEffort({_quote(since.isoformat())}, 9) AND replay_of = ''"
            f" ORDER BY ts DESC LIMIT {args.limit}"
        )
        calls = _rows(config, sql)
        sink = SpanSink(config)
        try:
            done, skipped, interrupted = batch(config, calls, overrides, args.concurrency, err, sink)
        finally:
            sink.close()
        print("\n".join(summary(done, skipped, interrupted, len(calls))), file=out)
        return 130 if interrupted else 0
    except ReplayFailed as exc:
        print(f"tracehouse: replay: {exc}", file=sys.stderr)
        return 1
