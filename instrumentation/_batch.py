"""Provider batch jobs, traced: every request of an OpenAI Batch or an Anthropic Message Batch gets an LLM span
(priced by the collector at batch rates), and the app's handler of its result a child span whose status says
whether the result was really processed.

```python
from tracehouse.instrumentation import batch

requests = [batch.request(f"ticket-{t.id}", model="gpt-4o-mini", messages=[...]) for t in tickets]
submitted = batch.submit(client, requests, purpose="ticket-summaries")    # one submission span
...                                                                        # hours later, any process
summary = batch.collect(client, submitted.batch_id, handle)                # one LLM span per request
```

- `request()` records the span current when the request was built (its enqueuing trace) and the prompt a
  `prompts.render()` just tagged; `submit()` uploads and creates the batch with the client given (the
  official `openai` or `anthropic` SDK client, recognised by its methods: no import of either here).
- OpenAI batches are of chat completions (the default) or of the Responses API (`submit(..., endpoint=
  batch.RESPONSES)`, requests with `input` and `instructions`): the handler gets the SDK's ChatCompletion or
  Response, the span the same messages, answer, tool calls and tokens (cached, cache writes, reasoning) either way.
- `collect()` reads the results once the batch ended and calls `handler(result)` for every succeeded
  request. A request counts as `handled` only when the handler returned; otherwise `handler_failed` (the
  exception recorded), `provider_failed`, `expired` or `canceled`.
- State for a collect in another process: the provider's batch metadata (OpenAI: the submission span, purpose
  and submission time) and a local JSON file, `$TRACEHOUSE_BATCH_STATE_DIR/<batch_id>.json` (default
  `$XDG_STATE_HOME/tracehouse/batches`, else `~/.local/state/tracehouse/batches`), holding ids only: custom ids,
  models, trace and span ids, purpose, submission time, prompt name and version. No prompt or message content
  touches that disk. `<batch_id>.collected` beside it lists the requests already collected (one JSON line
  each, appended once their spans are exported), so a second collect emits nothing twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from openinference.instrumentation import (
    get_input_attributes,
    get_llm_attributes,
    get_output_attributes,
    get_span_kind_attributes,
    suppress_tracing,
)
from openinference.semconv.trace import SpanAttributes
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags

from tracehouse.instrumentation import attributes as names

STATE_DIR_ENV = "TRACEHOUSE_BATCH_STATE_DIR"
OPENAI, ANTHROPIC = "openai", "anthropic"
CHAT_COMPLETIONS = "/v1/chat/completions"
RESPONSES = "/v1/responses"
TRACER_NAME = "tracehouse.instrumentation.batch"
SUBMIT_SPAN, HANDLE_SPAN = "batch submit", "batch handle"
# The request spans are named as OpenInference names the live calls.
REQUEST_SPAN = {CHAT_COMPLETIONS: "ChatCompletion", RESPONSES: "Response", ANTHROPIC: "Messages"}

# OpenAI batch metadata: 16 pairs at most; tracehouse takes these three, the app the rest.
META_SUBMISSION = "tracehouse_submission"  # "<trace id>-<span id>" of the submission span
META_PURPOSE = "tracehouse_purpose"
META_SUBMITTED_AT = "tracehouse_submitted_at"
_OPENAI_METADATA_PAIRS = 16
_OPENAI_PENDING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_ANTHROPIC_PENDING = frozenset({"in_progress", "canceling"})
_MAX_CUSTOM_ID = 64  # both providers' limit
_STATE_VERSION = 1
# What a request span's status says when the provider gave no result.
_NO_RESULT = {"expired": "expired", "cancelled": "canceled", "canceled": "canceled", "failed": "errored"}
_OUTCOME_OF_STATE = {"errored": "provider_failed", "expired": "expired", "canceled": "canceled"}

Handler = Callable[["BatchResult"], Any]


class BatchError(Exception):
    """A batch call that cannot go on; the message names the batch or request and the problem."""


class BatchRequestError(BatchError, ValueError):
    """A request list the providers would refuse (no requests, a missing or repeated custom id, ...)."""


class BatchNotFound(BatchError, LookupError):
    """The provider does not know the batch id."""


class BatchStateMissing(BatchError, LookupError):
    """Neither a local state file nor the provider's batch metadata says this batch was submitted by tracehouse."""


# ----------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: the provider's request body, and where it was enqueued from."""

    custom_id: str
    body: dict[str, Any]
    trace_id: str = ""  # the enqueuing span's ids, hex ('' when built outside any span)
    span_id: str = ""
    prompt: dict[str, str] = field(default_factory=dict)  # llm.prompt_template.* of a prompts.render() before

    @property
    def model(self) -> str:
        model = self.body.get("model")
        return model if isinstance(model, str) else ""


def request(custom_id: str, /, **body: Any) -> BatchRequest:
    """A batch request: `custom_id` (how its result comes back) and the body of the live call it replaces
    (`model`, `messages`, ...). Records the current span as its enqueuing trace and takes the prompt that the
    last `prompts.render()` in this context tagged, as the next live call would."""
    if not isinstance(custom_id, str) or not custom_id:
        raise BatchRequestError(f"batch request: custom_id must be a non-empty string, got {custom_id!r}")
    context = trace.get_current_span().get_span_context()
    trace_id = format(context.trace_id, "032x") if context.is_valid else ""
    span_id = format(context.span_id, "016x") if context.is_valid else ""
    return BatchRequest(custom_id, dict(body), trace_id, span_id, _take_rendered_prompt())


def _take_rendered_prompt() -> dict[str, str]:
    """The prompt tags `prompts.render()` left for the next LLM call (only when that module is in use)."""
    prompts = sys.modules.get("tracehouse.instrumentation._prompts")
    if prompts is None:
        return {}
    pending = prompts._pending.get()
    if pending is None:
        return {}
    prompts._pending.set(None)
    return dict(pending.attributes)


# ------------------------------------------------------------------------------------------------- state


def state_dir() -> Path:
    """Where batch state files live: $TRACEHOUSE_BATCH_STATE_DIR, else $XDG_STATE_HOME/tracehouse/batches."""
    explicit = os.environ.get(STATE_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME", "").strip() or str(Path.home() / ".local" / "state")
    return Path(base) / "tracehouse" / "batches"


def state_path(batch_id: str) -> Path:
    if not batch_id or "/" in batch_id or batch_id.startswith(".") or "\0" in batch_id:
        raise BatchError(f"batch id {batch_id!r} is not a provider batch id")
    return state_dir() / f"{batch_id}.json"


def _collected_path(batch_id: str) -> Path:
    return state_path(batch_id).with_suffix(".collected")


def _write_state(batch_id: str, state: dict[str, Any]) -> Path:
    """Atomically, readable by the owner only (ids, but of the app's records)."""
    path = state_path(batch_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(state, out, separators=(",", ":"))
    os.replace(temporary, path)
    return path


def _read_state(batch_id: str) -> dict[str, Any] | None:
    path = state_path(batch_id)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except ValueError as error:
        raise BatchError(f"batch {batch_id}: state file {path} is not JSON: {error}") from None
    if not isinstance(state, dict) or state.get("batch_id") != batch_id:
        raise BatchError(f"batch {batch_id}: state file {path} is not this batch's state")
    return state


def _read_collected(batch_id: str) -> dict[str, str]:
    """custom id -> outcome of the requests collected before (a torn last line, from a crash, is ignored)."""
    collected: dict[str, str] = {}
    try:
        lines = _collected_path(batch_id).read_text().splitlines()
    except FileNotFoundError:
        return collected
    for line in lines:
        try:
            entry = json.loads(line)
            collected[entry["custom_id"]] = entry["outcome"]
        except (ValueError, KeyError, TypeError):
            continue
    return collected


# Requests collected between two exports of their spans (each export is a flush of the app's span processor).
_RECORD_EVERY = 64


def _private_append(path: Path) -> IO[str]:
    """A state file opened for appending, readable by its owner only (as the state file itself is), whatever
    the umask and whether the directory was made by tracehouse or was there before."""
    handle = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
    os.chmod(path, 0o600)  # one written before this version (umask: 0644)
    return handle


@contextlib.contextmanager
def _collect_lock(batch_id: str) -> Iterator[None]:
    """One collect of a batch at a time on this machine (two workers would emit every span twice)."""
    path = state_path(batch_id).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _private_append(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- providers


def _provider_of(client: Any) -> str:
    """openai or anthropic, from the client's module or its methods (the SDKs are never imported here)."""
    module = type(client).__module__.split(".", 1)[0]
    if module in (OPENAI, ANTHROPIC):
        return module
    if hasattr(getattr(getattr(client, "messages", None), "batches", None), "results"):
        return ANTHROPIC
    if hasattr(getattr(client, "batches", None), "create") and hasattr(getattr(client, "files", None), "content"):
        return OPENAI
    raise BatchError(f"batch: {type(client).__qualname__} is neither an openai nor an anthropic client")


def _as_dict(value: Any) -> dict[str, Any]:
    """An SDK model (pydantic) or a dict, as a plain dict."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True)
    return dict(vars(value))


def _is_not_found(error: Exception) -> bool:
    return getattr(error, "status_code", None) == 404


@contextlib.contextmanager
def _provider_call(batch_id: str, provider: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if _is_not_found(error):
            raise BatchNotFound(f"batch {batch_id}: {provider} knows no such batch ({error})") from error
        raise


@dataclass
class _Result:
    """One request's result as the provider reported it."""

    custom_id: str
    state: str  # succeeded | errored | expired | canceled
    response: dict[str, Any] = field(default_factory=dict)
    error_type: str = ""
    error_message: str = ""
    typed: Any = None  # the SDK's own object for the response, when it gave one


@dataclass
class _Status:
    ended: bool
    pending: int
    status: str
    metadata: dict[str, str]


def _lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


class _OpenAI:
    name = OPENAI

    def submit(self, client: Any, requests: Sequence[BatchRequest], endpoint: str, metadata: dict[str, str]) -> str:
        lines = "".join(
            json.dumps({"custom_id": r.custom_id, "method": "POST", "url": endpoint, "body": r.body}) + "\n"
            for r in requests
        )
        uploaded = client.files.create(file=("batch.jsonl", lines.encode()), purpose="batch")
        created = client.batches.create(
            input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h", metadata=metadata
        )
        return created.id

    def status(self, client: Any, batch_id: str) -> _Status:
        with _provider_call(batch_id, self.name):
            found = client.batches.retrieve(batch_id)
        self._found = found
        counts = _as_dict(getattr(found, "request_counts", None))
        pending = max(int(counts.get("total", 0)) - int(counts.get("completed", 0)) - int(counts.get("failed", 0)), 0)
        ended = found.status not in _OPENAI_PENDING
        return _Status(ended, 0 if ended else pending, found.status, dict(getattr(found, "metadata", None) or {}))

    def endpoint(self) -> str:
        return self._found.endpoint

    def results(self, client: Any, batch_id: str) -> Iterator[_Result]:
        found = self._found
        for file_id in (found.output_file_id, found.error_file_id):
            if not file_id:
                continue
            for line in _lines(client.files.content(file_id).text):
                yield self._result(line)

    @staticmethod
    def _result(line: dict[str, Any]) -> _Result:
        custom_id = line.get("custom_id", "")
        response, error = line.get("response") or {}, line.get("error") or {}
        if response and response.get("status_code") == 200:
            return _Result(custom_id, "succeeded", response.get("body") or {})
        if error:
            code = error.get("code") or ""
            state = {"batch_expired": "expired", "batch_cancelled": "canceled"}.get(code, "errored")
            return _Result(custom_id, state, {}, code or "error", error.get("message") or "")
        body_error = (response.get("body") or {}).get("error") or {}
        error_type = body_error.get("type") or body_error.get("code") or f"http_{response.get('status_code')}"
        return _Result(custom_id, "errored", {}, str(error_type), body_error.get("message") or "")

    def request_bodies(self, client: Any, batch_id: str) -> dict[str, dict[str, Any]]:
        """The requests as uploaded: the input file stays at OpenAI for the batch's life."""
        try:
            text = client.files.content(self._found.input_file_id).text
        except Exception:  # noqa: BLE001 - the spans go out without their input messages
            return {}
        return {line["custom_id"]: line.get("body") or {} for line in _lines(text) if "custom_id" in line}

    @staticmethod
    def typed(endpoint: str, body: dict[str, Any]) -> Any:
        """The SDK's own type for a response body, so a handler reads it as it reads a live call's: built as the
        SDK builds a live response, without validation, so a field this SDK version requires and an older
        results file lacks (Responses' `cache_write_tokens`) still gives a Response."""
        try:
            if endpoint == CHAT_COMPLETIONS:
                from openai.types.chat import ChatCompletion

                return ChatCompletion.model_construct(**body)
            if endpoint == RESPONSES:
                from openai.types.responses import Response

                return Response.model_construct(**body)
        except Exception:  # noqa: BLE001 - an SDK without these types: the dict
            return body
        return body


class _Anthropic:
    name = ANTHROPIC

    def submit(self, client: Any, requests: Sequence[BatchRequest], endpoint: str, metadata: dict[str, str]) -> str:
        created = client.messages.batches.create(
            requests=[{"custom_id": r.custom_id, "params": r.body} for r in requests]
        )
        return created.id

    def status(self, client: Any, batch_id: str) -> _Status:
        with _provider_call(batch_id, self.name):
            found = client.messages.batches.retrieve(batch_id)
        counts = _as_dict(getattr(found, "request_counts", None))
        ended = found.processing_status not in _ANTHROPIC_PENDING
        return _Status(ended, 0 if ended else int(counts.get("processing", 0)), found.processing_status, {})

    def endpoint(self) -> str:
        return ANTHROPIC

    def results(self, client: Any, batch_id: str) -> Iterator[_Result]:
        with _provider_call(batch_id, self.name):
            decoded = client.messages.batches.results(batch_id)
        for item in decoded:
            outcome = item.result
            state = outcome.type
            if state == "succeeded":
                yield _Result(item.custom_id, state, _as_dict(outcome.message), typed=outcome.message)
            elif state == "errored":
                error = _as_dict(outcome.error)
                inner = error.get("error") or error
                yield _Result(item.custom_id, state, {}, inner.get("type") or "error", inner.get("message") or "")
            else:
                yield _Result(item.custom_id, state)

    def request_bodies(self, client: Any, batch_id: str) -> dict[str, dict[str, Any]]:
        return {}  # the Message Batches API does not return the requests

    @staticmethod
    def typed(endpoint: str, body: dict[str, Any]) -> Any:
        return body


_ADAPTERS: dict[str, type[_OpenAI] | type[_Anthropic]] = {OPENAI: _OpenAI, ANTHROPIC: _Anthropic}
# The batches this process submitted, by id: request bodies and prompt tags (template and variables included),
# so a collect here gets the input messages (Anthropic returns none) and the prompt without either ever
# being written to disk.
_submitted_bodies: dict[str, dict[str, dict[str, Any]]] = {}
_submitted_prompts: dict[str, dict[str, dict[str, str]]] = {}


# ------------------------------------------------------------------------------------------------- submit


@dataclass(frozen=True)
class Submitted:
    """What `submit()` did: the provider's batch id, and where its state lives."""

    batch_id: str
    provider: str
    purpose: str
    request_count: int
    models: tuple[str, ...]
    submitted_at: float
    state_path: Path
    trace_id: str  # the submission span's ids
    span_id: str


def _check_requests(requests: Sequence[BatchRequest]) -> None:
    if not requests:
        raise BatchRequestError("batch submit: no requests")
    seen: set[str] = set()
    for position, item in enumerate(requests):
        if not isinstance(item, BatchRequest):
            raise BatchRequestError(f"batch submit: request {position} is a {type(item).__name__}, not batch.request()")
        if len(item.custom_id) > _MAX_CUSTOM_ID:
            raise BatchRequestError(
                f"batch submit: custom_id {item.custom_id!r} is longer than {_MAX_CUSTOM_ID} characters"
            )
        if item.custom_id in seen:
            raise BatchRequestError(f"batch submit: custom_id {item.custom_id!r} appears twice")
        seen.add(item.custom_id)
        if not item.model:
            raise BatchRequestError(f"batch submit: request {item.custom_id!r} names no model")


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise BatchRequestError(f"batch submit: metadata {key!r} must map a string to a string")
        if key.startswith("tracehouse_"):
            raise BatchRequestError(f"batch submit: metadata key {key!r} is reserved for tracehouse")
        checked[key] = value
    if len(checked) > _OPENAI_METADATA_PAIRS - 3:
        raise BatchRequestError(
            f"batch submit: {len(checked)} metadata pairs; OpenAI keeps {_OPENAI_METADATA_PAIRS}, "
            f"tracehouse uses 3, so at most {_OPENAI_METADATA_PAIRS - 3}"
        )
    return checked


def _ids(context: SpanContext) -> tuple[str, str]:
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _span_context(trace_id: str, span_id: str) -> SpanContext | None:
    try:
        context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(1))
    except (TypeError, ValueError):
        return None
    return context if context.is_valid else None


def _tracer(tracer_provider: Any) -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)


def submit(
    client: Any,
    requests: Sequence[BatchRequest],
    *,
    purpose: str,
    metadata: Mapping[str, str] | None = None,
    endpoint: str = CHAT_COMPLETIONS,
    tracer_provider: Any = None,
) -> Submitted:
    """Create the batch with the provider and record one submission span, linked to every request's enqueuing
    span (the first OTEL_SPAN_LINK_COUNT_LIMIT, 128 by default: each request's span links its own at collect).
    `endpoint` is OpenAI's (/v1/chat/completions or /v1/responses); `metadata` goes to OpenAI's batch metadata
    (13 pairs at most) and onto the spans."""
    provider = _provider_of(client)
    requests = list(requests)
    _check_requests(requests)
    checked_metadata = _check_metadata(metadata)
    if not isinstance(purpose, str) or not purpose:
        raise BatchRequestError("batch submit: purpose must be a non-empty string")
    if provider == OPENAI and endpoint not in (CHAT_COMPLETIONS, RESPONSES):
        raise BatchRequestError(f"batch submit: endpoint {endpoint!r} is not {CHAT_COMPLETIONS} or {RESPONSES}")
    models = tuple(sorted({r.model for r in requests}))
    links = [
        Link(context, _link_attributes(r))
        for r in requests
        if (context := _span_context(r.trace_id, r.span_id)) is not None
    ]
    submitted_at = time.time()
    span_attributes: dict[str, Any] = {
        names.BATCH_OPERATION: names.BATCH_OPERATION_SUBMIT,
        names.BATCH_PROVIDER: provider,
        names.BATCH_PURPOSE: purpose,
        names.BATCH_REQUEST_COUNT: len(requests),
        names.BATCH_MODELS: models,
        names.BATCH_SUBMITTED_AT: submitted_at,
    }
    if checked_metadata:
        span_attributes[SpanAttributes.METADATA] = json.dumps(checked_metadata)
    with _tracer(tracer_provider).start_as_current_span(
        SUBMIT_SPAN, attributes=span_attributes, links=links, start_time=int(submitted_at * 1e9)
    ) as span:
        trace_id, span_id = _ids(span.get_span_context())
        provider_metadata = {
            **checked_metadata,
            META_SUBMISSION: f"{trace_id}-{span_id}",
            META_PURPOSE: purpose[:512],
            META_SUBMITTED_AT: repr(submitted_at),
        }
        with suppress_tracing():  # the SDK's file and batch calls are no LLM calls (OpenInference traces them as such)
            batch_id = _ADAPTERS[provider]().submit(client, requests, endpoint, provider_metadata)
        span.set_attribute(names.BATCH_ID, batch_id)
        state = {
            "version": _STATE_VERSION,
            "batch_id": batch_id,
            "provider": provider,
            "endpoint": endpoint if provider == OPENAI else ANTHROPIC,
            "purpose": purpose,
            "submitted_at": submitted_at,
            "submission": {"trace_id": trace_id, "span_id": span_id},
            "requests": {r.custom_id: _request_state(r) for r in requests},
        }
        path = _write_state(batch_id, state)
    _submitted_bodies[batch_id] = {r.custom_id: r.body for r in requests}
    _submitted_prompts[batch_id] = {r.custom_id: r.prompt for r in requests if r.prompt}
    return Submitted(batch_id, provider, purpose, len(requests), models, submitted_at, path, trace_id, span_id)


def _link_attributes(item: BatchRequest) -> dict[str, str]:
    linked = {names.BATCH_CUSTOM_ID: item.custom_id}
    for key in (SpanAttributes.LLM_PROMPT_TEMPLATE_VERSION, names.PROMPT_TEMPLATE_NAME):
        if item.prompt.get(key):
            linked[key] = item.prompt[key]
    return linked


def _request_state(item: BatchRequest) -> dict[str, str]:
    """Ids only: nothing of the request's content."""
    kept = {"model": item.model, "trace_id": item.trace_id, "span_id": item.span_id}
    if item.prompt.get(names.PROMPT_TEMPLATE_NAME):
        kept["prompt_name"] = item.prompt[names.PROMPT_TEMPLATE_NAME]
    if item.prompt.get(SpanAttributes.LLM_PROMPT_TEMPLATE_VERSION):
        kept["prompt_version"] = item.prompt[SpanAttributes.LLM_PROMPT_TEMPLATE_VERSION]
    return {key: value for key, value in kept.items() if value}


# ------------------------------------------------------------------------------------------------ collect


@dataclass(frozen=True)
class BatchResult:
    """One succeeded request, as the handler gets it."""

    batch_id: str
    custom_id: str
    response: Any  # the SDK's type when it parses (ChatCompletion, Response, anthropic Message), else the body
    body: dict[str, Any]  # the response as JSON
    request: dict[str, Any] | None  # the request body, when known (OpenAI: always; Anthropic: same process)

    @property
    def text(self) -> str:
        """The answer's text (chat completions, responses, messages alike)."""
        return "".join(part.get("content") or "" for part in _openinference_output(self.body))


@dataclass
class CollectSummary:
    """What one `collect()` did."""

    batch_id: str
    status: str  # the provider's batch status
    pending: int = 0  # requests the provider has not finished (then nothing was collected)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(names.BATCH_OUTCOMES, 0))
    already_collected: int = 0  # requests a collect before this one handled: skipped, no span
    outcomes: dict[str, str] = field(default_factory=dict)  # custom id -> outcome, this run's

    @property
    def ended(self) -> bool:
        return self.pending == 0 and self.status not in _OPENAI_PENDING | _ANTHROPIC_PENDING

    @property
    def emitted(self) -> int:
        """Request spans this run emitted."""
        return sum(self.counts.values())


def collect(
    client: Any,
    batch_id: str,
    handler: Handler,
    *,
    requests: Sequence[BatchRequest] | None = None,
    tracer_provider: Any = None,
) -> CollectSummary:
    """Read a batch's results and emit one LLM span per request not collected before, calling `handler` for
    every succeeded one (in a child span). A batch still running: a summary with its pending count, no span.
    `requests` (the list given to submit) supplies input messages that the provider does not return
    (Anthropic, from another process). The handler runs at least once per request: it should be idempotent."""
    provider = _provider_of(client)
    adapter = _ADAPTERS[provider]()
    path = state_path(batch_id)
    state = _read_state(batch_id)
    with suppress_tracing():
        status = adapter.status(client, batch_id)
    if state is None:
        state = _state_from_metadata(batch_id, provider, status.metadata, path)
    if state.get("provider") != provider:
        raise BatchError(f"batch {batch_id}: submitted to {state.get('provider')}, collected with a {provider} client")
    summary = CollectSummary(batch_id, status.status, status.pending)
    if not status.ended:
        return summary
    if provider == OPENAI:
        state["endpoint"] = adapter.endpoint()
    with _collect_lock(batch_id):
        collected = _read_collected(batch_id)
        summary.already_collected = len(collected)
        with suppress_tracing():
            fresh = [r for r in adapter.results(client, batch_id) if r.custom_id not in collected]
        seen = {r.custom_id for r in fresh} | set(collected)
        no_result = _NO_RESULT.get(status.status, "errored")
        fresh += [
            _Result(custom_id, no_result, {}, no_result, f"no result from the provider (batch {status.status})")
            for custom_id in state.get("requests", {})
            if custom_id not in seen
        ]
        if not fresh:
            return summary
        bodies = _submitted_bodies.get(batch_id) or {r.custom_id: r.body for r in requests or ()}
        if not bodies:
            with suppress_tracing():
                bodies = adapter.request_bodies(client, batch_id)
        prompts = _submitted_prompts.get(batch_id) or {r.custom_id: r.prompt for r in requests or () if r.prompt}
        emitter = _Emitter(batch_id, state, adapter, _tracer(tracer_provider), handler, bodies, prompts)
        spans = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        with _private_append(_collected_path(batch_id)) as log:
            for start in range(0, len(fresh), _RECORD_EVERY):
                lines = []
                for result in fresh[start : start + _RECORD_EVERY]:
                    outcome = emitter.emit(result)
                    summary.counts[outcome] += 1
                    summary.outcomes[result.custom_id] = outcome
                    lines.append(json.dumps({"custom_id": result.custom_id, "outcome": outcome}) + "\n")
                # Recorded once their spans left the process: a record ahead of the export lost the spans of a
                # crash in between for good (a second collect skips what is recorded). A crash now runs those
                # handlers again (at least once, as documented) and emits their spans again.
                flush = getattr(spans, "force_flush", None)
                if flush is not None and flush() is False:
                    raise BatchError(
                        f"batch {batch_id}: the spans of {len(lines)} request(s) could not be exported; nothing "
                        "recorded for them: collect again"
                    )
                log.write("".join(lines))
                log.flush()
    return summary


def _state_from_metadata(batch_id: str, provider: str, metadata: Mapping[str, str], path: Path) -> dict[str, Any]:
    """A batch submitted on another machine: what OpenAI's batch metadata kept (no enqueuing links then)."""
    submission = metadata.get(META_SUBMISSION, "")
    trace_id, _, span_id = submission.partition("-")
    if not submission or _span_context(trace_id, span_id) is None:
        raise BatchStateMissing(
            f"batch {batch_id}: no state file at {path} and the provider's batch metadata has no tracehouse "
            f"submission (was it submitted with tracehouse.instrumentation.batch.submit? set {STATE_DIR_ENV} "
            "to the submitting machine's state directory)"
        )
    try:
        submitted_at = float(metadata.get(META_SUBMITTED_AT, ""))
    except ValueError:
        submitted_at = time.time()
    return {
        "version": _STATE_VERSION,
        "batch_id": batch_id,
        "provider": provider,
        "purpose": metadata.get(META_PURPOSE, ""),
        "submitted_at": submitted_at,
        "submission": {"trace_id": trace_id, "span_id": span_id},
        "requests": {},
    }


class _Emitter:
    """The spans of one collect run: per request an LLM span, and for a succeeded one its handler's span."""

    def __init__(
        self,
        batch_id: str,
        state: dict[str, Any],
        adapter: _OpenAI | _Anthropic,
        tracer: trace.Tracer,
        handler: Handler,
        bodies: Mapping[str, dict[str, Any]],
        prompts: Mapping[str, dict[str, str]],
    ) -> None:
        self.prompts = prompts
        self.batch_id = batch_id
        self.state = state
        self.adapter = adapter
        self.tracer = tracer
        self.handler = handler
        self.bodies = bodies
        self.endpoint = state.get("endpoint") or CHAT_COMPLETIONS
        self.start_ns = int(float(state.get("submitted_at") or time.time()) * 1e9)
        submission = state.get("submission") or {}
        self.submission = _span_context(submission.get("trace_id", ""), submission.get("span_id", ""))
        self.common = {
            names.BATCH_ID: batch_id,
            names.BATCH_PURPOSE: state.get("purpose", ""),
            names.BATCH_SUBMITTED_AT: float(state.get("submitted_at") or 0.0),
        }

    def emit(self, result: _Result) -> str:
        known = self.state.get("requests", {}).get(result.custom_id, {})
        body = self.bodies.get(result.custom_id)
        links = []
        if self.submission is not None:
            links.append(Link(self.submission, {names.BATCH_OPERATION: names.BATCH_OPERATION_SUBMIT}))
        enqueued = _span_context(known.get("trace_id", ""), known.get("span_id", ""))
        if enqueued is not None:
            links.append(Link(enqueued, {names.BATCH_CUSTOM_ID: result.custom_id}))
        span_attributes = {
            **self.common,
            names.BATCH_OPERATION: names.BATCH_OPERATION_REQUEST,
            names.BATCH_CUSTOM_ID: result.custom_id,
            names.BATCH_REQUEST_STATE: result.state,
            **_llm_attributes(self.adapter.name, self.endpoint, body, result.response, known.get("model", "")),
        }
        if known.get("prompt_name"):
            span_attributes[names.PROMPT_TEMPLATE_NAME] = known["prompt_name"]
        if known.get("prompt_version"):
            span_attributes[SpanAttributes.LLM_PROMPT_TEMPLATE_VERSION] = known["prompt_version"]
        span_attributes.update(self.prompts.get(result.custom_id, {}))
        name = REQUEST_SPAN.get(self.endpoint, "ChatCompletion")
        span = self.tracer.start_span(name, attributes=span_attributes, links=links, start_time=self.start_ns)
        try:
            outcome = self._finish(span, result, body)
        finally:
            span.end()
        return outcome

    def _finish(self, span: trace.Span, result: _Result, body: dict[str, Any] | None) -> str:
        if result.state != "succeeded":
            outcome = _OUTCOME_OF_STATE.get(result.state, "provider_failed")
            span.set_attribute(names.BATCH_OUTCOME, outcome)
            span.set_attribute("error.type", result.error_type or result.state)
            detail = result.error_message or f"request {result.state}"
            span.set_status(Status(StatusCode.ERROR, f"{result.state}: {detail}"))
            return outcome
        typed = result.typed if result.typed is not None else self.adapter.typed(self.endpoint, result.response)
        handed = BatchResult(self.batch_id, result.custom_id, typed, result.response, body)
        with (
            trace.use_span(span, end_on_exit=False),
            self.tracer.start_as_current_span(
                HANDLE_SPAN,
                attributes={
                    **self.common,
                    names.BATCH_OPERATION: names.BATCH_OPERATION_HANDLE,
                    names.BATCH_CUSTOM_ID: result.custom_id,
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as handling,
        ):
            try:
                self.handler(handed)
            except Exception as error:  # noqa: BLE001 - the handler's failure is the request's outcome
                handling.record_exception(error)
                described = f"{type(error).__name__}: {error}"
                handling.set_status(Status(StatusCode.ERROR, described))
                handling.set_attribute(names.BATCH_OUTCOME, "handler_failed")
                span.set_attribute(names.BATCH_OUTCOME, "handler_failed")
                span.set_attribute("error.type", type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, f"handler failed: {described}"))
                return "handler_failed"
            handling.set_attribute(names.BATCH_OUTCOME, "handled")
            handling.set_status(Status(StatusCode.OK))
        span.set_attribute(names.BATCH_OUTCOME, "handled")
        span.set_status(Status(StatusCode.OK))
        return "handled"


# ------------------------------------------------------------------------------------ OpenInference attributes


def _llm_attributes(
    provider: str, endpoint: str, body: dict[str, Any] | None, response: dict[str, Any], known_model: str
) -> dict[str, Any]:
    """The attributes OpenInference's instrumentor gives the live call: kind, provider, model, parameters,
    messages, tools, usage (cache reads and writes included in the prompt count), input and output values."""
    body = body or {}
    if provider == ANTHROPIC:
        inputs, tools = _anthropic_input(body), body.get("tools")
        output, tokens = _anthropic_output(response), _anthropic_tokens(response.get("usage") or {})
        finish = response.get("stop_reason")
    else:
        inputs = _openai_input(body) if endpoint == CHAT_COMPLETIONS else _responses_input(body)
        tools = body.get("tools")
        output = _openinference_output(response)
        tokens = _openai_tokens(response.get("usage") or {})
        finish = _openai_finish(response)
    parameters = {k: v for k, v in body.items() if k not in ("messages", "tools", "system", "input", "instructions")}
    request_model = body.get("model") or known_model
    found: dict[str, Any] = {
        **get_span_kind_attributes("llm"),
        **get_llm_attributes(
            provider=provider,
            system=provider,
            model_name=response.get("model") or request_model or None,
            invocation_parameters=parameters or None,
            input_messages=inputs or None,
            output_messages=output or None,
            token_count=tokens or None,
            tools=[{"json_schema": tool} for tool in tools] if isinstance(tools, list) else None,
        ),
    }
    if tokens.get("reasoning"):
        found["llm.token_count.completion_details.reasoning"] = tokens.pop("reasoning")
    if body:
        found.update(get_input_attributes(body))
    if response:
        found.update(get_output_attributes(response))
    if finish:
        found["llm.finish_reason"] = str(finish)
    return {key: value for key, value in found.items() if value is not None}


def _text_of(content: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """(plain text, OpenInference contents) of a message content that is a string or a list of parts."""
    if isinstance(content, str):
        return content, []
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "image_url":
            parts.append({"type": "image", "image": {"url": (part.get("image_url") or {}).get("url", "")}})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):  # Responses: the URL itself
            parts.append({"type": "image", "image": {"url": part["image_url"]}})
    return None, parts


def _openai_calls(calls: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id", ""),
            "function": {
                "name": (call.get("function") or {}).get("name", ""),
                "arguments": (call.get("function") or {}).get("arguments", ""),
            },
        }
        for call in calls or ()
        if isinstance(call, dict)
    ]


def _openai_input(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = []
    for raw in body.get("messages") or ():
        if not isinstance(raw, dict):
            continue
        text, parts = _text_of(raw.get("content"))
        message: dict[str, Any] = {"role": raw.get("role", "user")}
        if text is not None:
            message["content"] = text
        elif parts:
            message["contents"] = parts
        if raw.get("tool_calls"):
            message["tool_calls"] = _openai_calls(raw["tool_calls"])
        if raw.get("tool_call_id"):
            message["tool_call_id"] = raw["tool_call_id"]
        messages.append(message)
    return messages


def _responses_input(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    raw = body.get("input")
    if isinstance(raw, str):
        return [*messages, {"role": "user", "content": raw}]
    for item in raw or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call":  # an earlier turn's call: the assistant's, as in a chat history
            messages.append({"role": "assistant", "tool_calls": _responses_calls([item])})
        elif kind == "function_call_output":
            output = item.get("output")
            content = output if isinstance(output, str) else _joined_text(output)
            messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": content})
        elif "role" in item:  # an easy input message or a `message` item
            text, parts = _text_of(item.get("content"))
            messages.append({"role": item["role"], **({"content": text} if text is not None else {"contents": parts})})
    return messages


def _responses_calls(items: Any) -> list[dict[str, Any]]:
    """The `function_call` items of a Responses input or output, as OpenInference tool calls."""
    return [
        {
            "id": item.get("call_id", ""),
            "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
        }
        for item in items or ()
        if isinstance(item, dict) and item.get("type") == "function_call"
    ]


def _openinference_output(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The answer of a chat completion, a response or an Anthropic message, as OpenInference messages."""
    if "choices" in response:
        choice = (response.get("choices") or [{}])[0].get("message") or {}
        message: dict[str, Any] = {"role": choice.get("role", "assistant")}
        if isinstance(choice.get("content"), str):
            message["content"] = choice["content"]
        if choice.get("tool_calls"):
            message["tool_calls"] = _openai_calls(choice["tool_calls"])
        return [message]
    if response.get("type") == "message":
        return _anthropic_output(response)
    if "output" in response:  # /v1/responses: the reasoning summaries, as OpenInference has them, then the answer
        items = [item for item in response.get("output") or () if isinstance(item, dict)]
        reasoning = [_reasoning_summary(item) for item in items if item.get("type") == "reasoning"]
        texts = [_joined_text(item.get("content")) for item in items if item.get("type") == "message"]
        message = {"role": "assistant", "content": "".join(texts)}
        calls = _responses_calls(items)
        if calls:
            message["tool_calls"] = calls
        summaries = [
            {"role": "assistant", "contents": [{"type": "reasoning", "text": text}]} for text in reasoning if text
        ]
        return [*summaries, message]
    return []


def _reasoning_summary(item: Mapping[str, Any]) -> str:
    """A reasoning item's summary text ('' when the request asked for none: the reasoning itself is hidden)."""
    summary = item.get("summary")
    parts = summary if isinstance(summary, list) else ()
    return "\n".join(part["text"] for part in parts if isinstance(part, dict) and isinstance(part.get("text"), str))


def _openai_finish(response: Mapping[str, Any]) -> str | None:
    """A chat completion's finish reason; for a response, the one a chat completion would have had: its
    incomplete reason (max_output_tokens, content_filter), tool_calls when it ended on a call, else its status."""
    if "choices" in response:
        return ((response.get("choices") or [{}])[0]).get("finish_reason")
    incomplete = (response.get("incomplete_details") or {}).get("reason")
    if incomplete:
        return str(incomplete)
    if response.get("status") == "completed" and _responses_calls(response.get("output")):
        return "tool_calls"
    return response.get("status")


def _openai_tokens(usage: Mapping[str, Any]) -> dict[str, Any]:
    if not usage:
        return {}
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    reasoning = (usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}).get(
        "reasoning_tokens"
    )
    tokens: dict[str, Any] = {"prompt": prompt, "completion": completion, "total": usage.get("total_tokens")}
    cache = {"cache_read": details.get("cached_tokens"), "cache_write": details.get("cache_write_tokens")}
    if any(cache.values()):
        tokens["prompt_details"] = {kind: count for kind, count in cache.items() if count}
    if reasoning:
        tokens["reasoning"] = reasoning
    return {key: value for key, value in tokens.items() if value is not None}


def _joined_text(content: Any) -> str:
    text, parts = _text_of(content)
    return text if text is not None else "".join(part.get("text", "") for part in parts)


def _anthropic_input(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        messages.append({"role": "system", "content": _joined_text(body["system"])})
    for raw in body.get("messages") or ():
        if not isinstance(raw, dict):
            continue
        content = raw.get("content")
        blocks = [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []
        results = [block for block in blocks if block.get("type") == "tool_result"]
        for block in results:  # a user turn of tool results: one tool message each, as OpenInference has them
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id", ""),
                    "content": _joined_text(block.get("content")),
                }
            )
        if results:
            continue
        text, parts = _text_of(content)
        message: dict[str, Any] = {"role": raw.get("role", "user")}
        if text is not None:
            message["content"] = text
        elif parts:
            message["contents"] = parts
        calls = _anthropic_calls(blocks)
        if calls:
            message["tool_calls"] = calls
        messages.append(message)
    return messages


def _anthropic_calls(blocks: Any) -> list[dict[str, Any]]:
    if not isinstance(blocks, list):
        return []
    return [
        {
            "id": block.get("id", ""),
            "function": {"name": block.get("name", ""), "arguments": json.dumps(block.get("input") or {})},
        }
        for block in blocks
        if isinstance(block, dict) and block.get("type") == "tool_use"
    ]


def _anthropic_output(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not response:
        return []
    blocks = response.get("content") or []
    message: dict[str, Any] = {
        "role": response.get("role", "assistant"),
        "content": "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"),
    }
    calls = _anthropic_calls(blocks)
    if calls:
        message["tool_calls"] = calls
    return [message]


def _anthropic_tokens(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic's input_tokens leaves out the cache reads and writes; OpenInference's prompt count has them."""
    if not usage:
        return {}
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + written
    completion = usage.get("output_tokens") or 0
    tokens: dict[str, Any] = {"prompt": prompt, "completion": completion, "total": prompt + completion}
    details = {key: value for key, value in (("cache_read", read), ("cache_write", written)) if value}
    if details:
        tokens["prompt_details"] = details
    return tokens


def pending_requests(batch_id: str) -> list[str]:
    """The custom ids of a batch's requests not collected yet, from the local state (no provider call)."""
    state = _read_state(batch_id)
    if state is None:
        raise BatchStateMissing(f"batch {batch_id}: no state file at {state_path(batch_id)}")
    collected = _read_collected(batch_id)
    return [custom_id for custom_id in state.get("requests", {}) if custom_id not in collected]
