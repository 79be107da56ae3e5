"""`score()`: send a judgement of a call or a trace (a thumbs up, a rating, an evaluator's score) to the
collector's POST /v1/scores; `current_ids()`: the current span's ids, for a front end to score later.

```python
from tracehouse.instrumentation import current_ids, score

ids = current_ids()                           # inside the request that made the LLM call
...                                           # later, when the user clicks
score("thumbs", True, trace_id=ids.trace_id, span_id=ids.span_id, comment="spot on")
```

Where it goes: `endpoint` (a collector's base URL, e.g. http://collector:4318, or the full /v1/scores URL),
else TRACEHOUSE_SCORES_ENDPOINT, else derived from the app's OTLP settings: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
(its /v1/traces becomes /v1/scores) or OTEL_EXPORTER_OTLP_ENDPOINT; an endpoint on the gRPC port 4317 is
turned into the same host's OTLP/HTTP port 4318 (scores are HTTP only); without any, http://127.0.0.1:4318.
Headers (the API key): `headers`, else OTEL_EXPORTER_OTLP_TRACES_HEADERS / OTEL_EXPORTER_OTLP_HEADERS, as the
OTLP exporter reads them. An https endpoint verifies against OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE when set.

Only the standard library (urllib): no dependency beyond the plain install. `score()` blocks until the
collector answers (at most `timeout` seconds, one retry when it asks for one); a failure is logged and
returns None, it never raises into the app. Each score carries its own id and timestamp, so the retry
cannot store it twice.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import trace

from tracehouse.instrumentation import attributes

log = logging.getLogger("tracehouse.instrumentation")

SCORES_PATH = "/v1/scores"
SCORES_ENDPOINT_ENV = "TRACEHOUSE_SCORES_ENDPOINT"
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
_GRPC_PORT, _HTTP_PORT = 4317, 4318
_MAX_RETRY_WAIT = 2.0


class SpanIds(NamedTuple):
    """A span's ids as OTLP/JSON writes them: 32 and 16 lowercase hex digits."""

    trace_id: str
    span_id: str


def current_ids() -> SpanIds | None:
    """The current span's ids (hex), or None outside a span; hand them to a front end to score later."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return SpanIds(format(context.trace_id, "032x"), format(context.span_id, "016x"))


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def scores_endpoint(endpoint: str | None = None) -> str:
    """The full /v1/scores URL: `endpoint`, else TRACEHOUSE_SCORES_ENDPOINT, else from the OTLP variables."""
    explicit = endpoint or _env(SCORES_ENDPOINT_ENV)
    base = explicit or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    if "://" not in base:
        base = "http://" + base
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    if path.endswith(SCORES_PATH):
        return urlunsplit(parts._replace(path=path))
    path = path.removesuffix("/v1/traces")
    netloc = parts.netloc
    if not explicit and parts.port == _GRPC_PORT:  # the app exports over gRPC: scores go to the HTTP port
        netloc = netloc.rsplit(":", 1)[0] + f":{_HTTP_PORT}"
    return urlunsplit(parts._replace(netloc=netloc, path=path + SCORES_PATH))


def scores_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """`headers`, else OTEL_EXPORTER_OTLP_TRACES_HEADERS / OTEL_EXPORTER_OTLP_HEADERS (`k=v,k2=v2`, URL-encoded)."""
    if headers is not None:
        return dict(headers)
    found: dict[str, str] = {}
    for entry in (_env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") or "").split(","):
        key, sep, value = entry.partition("=")
        if sep and key.strip():
            found[unquote(key.strip())] = unquote(value.strip())
    return found


def _ssl_context(url: str) -> ssl.SSLContext | None:
    if not url.startswith("https:"):
        return None
    return ssl.create_default_context(
        cafile=_env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
    )


def _now_rfc3339() -> str:
    ns = time.time_ns()
    moment = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def score(
    name: str,
    value: float | bool,
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
    comment: str | None = None,
    label: str | None = None,
    source: str = "user",
    author: str | None = None,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> str | None:
    """Score a call (its span) or a whole trace; returns the score's id, or None when it was not sent.

    Without `trace_id` the current span is scored (its trace and span ids); with a `trace_id` and no
    `span_id`, the whole trace. `value` is a number or a boolean; `label` a category; `source` one of user,
    review, eval, api. A tenant set with `tagged(tenant=...)` goes along (the collector uses it only when it
    has no API keys: with keys, the key's tenant is the score's).
    """
    try:
        if trace_id is None:
            ids = current_ids()
            if ids is None:
                log.warning("tracehouse: score(%r) outside a span and without trace_id: not sent", name)
                return None
            trace_id, span_id = ids.trace_id, span_id or ids.span_id
        body: dict[str, object] = {
            "id": uuid.uuid4().hex,
            "trace_id": trace_id,
            "name": name,
            "value": value,
            "source": source,
            "timestamp": _now_rfc3339(),
        }
        optional = {"span_id": span_id, "comment": comment, "label": label, "author": author}
        body.update({key: text for key, text in optional.items() if text is not None})
        tenant = otel_context.get_value(attributes.TENANT)
        if isinstance(tenant, str) and tenant:
            body["tenant_id"] = tenant
        url = scores_endpoint(endpoint)
        request_headers = {**scores_headers(headers), "Content-Type": "application/json"}
        data = json.dumps(body).encode()
        _send(url, data, request_headers, timeout)
        return str(body["id"])
    except Exception as exc:  # noqa: BLE001 - a score must never break the app
        log.warning("tracehouse: score(%r) not sent: %s", name, exc)
        return None


def _send(url: str, data: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST once, and once more when the collector says to retry (503, 429) or cannot be reached."""
    context = _ssl_context(url)
    deadline = time.monotonic() + timeout
    for attempt in (1, 2):
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        remaining = max(0.1, deadline - time.monotonic())
        try:
            with urllib.request.urlopen(request, timeout=remaining, context=context) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:
            message = exc.read().decode(errors="replace")[:500]
            if exc.code not in (429, 503) or attempt == 2:
                raise RuntimeError(f"{url} answered {exc.code}: {message}") from None
            wait = _retry_after(exc.headers.get("Retry-After"))
        except (urllib.error.URLError, OSError) as exc:
            if attempt == 2:
                raise RuntimeError(f"{url} unreachable: {getattr(exc, 'reason', exc)}") from None
            wait = 0.2
        if time.monotonic() + wait >= deadline:
            raise RuntimeError(f"{url} asked to retry later; no time left within {timeout}s")
        time.sleep(wait)


def _retry_after(header: str | None) -> float:
    try:
        return min(_MAX_RETRY_WAIT, max(0.0, float(header or 1)))
    except ValueError:
        return 1.0
