"""`setup()`: the tracer provider, the OTLP exporter and the installed instrumentors, in one call."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openinference.instrumentation import TracerProvider
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from tracehouse.instrumentation._context import ContextSpanProcessor
from tracehouse.instrumentation._instrumentors import enable

log = logging.getLogger("tracehouse.instrumentation")

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
DEFAULT_ENDPOINTS = {GRPC: "http://127.0.0.1:4317", HTTP_PROTOBUF: "http://127.0.0.1:4318"}

# The SDK's BatchSpanProcessor holds 2048 spans by default and drops the oldest waiting ones past that,
# logging one warning: a burst of concurrent LLM calls (each with its chain, tool and HTTP spans) or a
# collector restart of a few seconds fills it. Measured here: a burst of 10,000 spans lost about 1,800 with
# the SDK's defaults and none with these (tests/test_instrumented_setup.py). 32768 spans absorb about 30 s
# of 1,000 spans/s; the memory they may hold is the queue times the span size (2-20 KB for LLM spans with
# their messages), so lower it with `max_queue_size` or OTEL_BSP_MAX_QUEUE_SIZE where memory is tight.
# Exports go out in batches of 1024 spans (a few MB, far below the collector's request limit), at least
# every second.
MAX_QUEUE_SIZE = 32768
MAX_EXPORT_BATCH_SIZE = 1024
SCHEDULE_DELAY_MILLIS = 1000


@dataclass
class _State:
    provider: TracerProvider | None = None
    config: dict[str, Any] = field(default_factory=dict)
    instrumentors: dict[str, Any] = field(default_factory=dict)
    shut_down: bool = False


_state = _State()
_lock = threading.Lock()


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def resolve_protocol(protocol: str | None) -> str:
    """`protocol`, else OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL, else gRPC."""
    value = (protocol or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") or GRPC).lower()
    if value == "http":
        value = HTTP_PROTOBUF
    if value not in (GRPC, HTTP_PROTOBUF):
        raise ValueError(f"protocol must be 'grpc' or 'http/protobuf', not {value!r}")
    return value


def resolve_endpoint(endpoint: str | None, protocol: str) -> str:
    """Where spans go. For gRPC the collector's address; for HTTP the full `/v1/traces` URL.

    `endpoint` and OTEL_EXPORTER_OTLP_ENDPOINT are base URLs (`/v1/traces` is added for HTTP);
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as it is, as the OTel specification says."""
    if endpoint is None:
        traces = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if traces:
            return traces
    base = endpoint or _env("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINTS[protocol]
    if "://" not in base:
        base = "http://" + base
    if protocol == HTTP_PROTOBUF and not base.rstrip("/").endswith("/v1/traces"):
        return base.rstrip("/") + "/v1/traces"
    return base


def _exporter(protocol: str, endpoint: str, headers: Mapping[str, str] | None) -> SpanExporter:
    # headers=None lets the exporter read OTEL_EXPORTER_OTLP_(TRACES_)HEADERS itself.
    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint, headers=dict(headers) if headers else None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=endpoint, headers=dict(headers) if headers else None)


def _bsp_setting(value: int | None, env: str, default: int) -> int | None:
    """An explicit value, else None when the OTEL_BSP_* variable is set (the SDK reads it), else ours."""
    if value is not None:
        return value
    return None if _env(env) else default


def setup(
    service_name: str,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    instrument: bool | Iterable[str] = True,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    schedule_delay_millis: int | None = None,
) -> TracerProvider:
    """Send this process's spans to tracehouse and instrument the installed LLM libraries.

    Builds a tracer provider (OpenInference's, with its large attribute limits, so long message lists are
    not cut at the SDK's 128 attributes) with `service.name` and `resource_attributes` (OTEL_RESOURCE_ATTRIBUTES
    is merged in, explicit values win), a `ContextSpanProcessor` for `tagged()`, and a batch processor
    exporting over OTLP: `protocol` "grpc" or "http/protobuf" and `endpoint` default to the standard
    OTEL_EXPORTER_OTLP_* variables, else gRPC to http://127.0.0.1:4317. It becomes the global provider.

    `instrument=True` turns on every installed OpenInference instrumentor (openai, anthropic, langchain,
    llama_index, bedrock, ...); a list of names turns on those only; False none. `enabled_instrumentors()`
    says which run. Calling it again returns the same provider (a different configuration is ignored with
    a warning) and only turns on instrumentors not yet running.
    """
    config = {
        "service_name": service_name,
        "endpoint": endpoint,
        "protocol": protocol,
        "headers": dict(headers or {}),
        "resource_attributes": dict(resource_attributes or {}),
        "max_queue_size": max_queue_size,
        "max_export_batch_size": max_export_batch_size,
        "schedule_delay_millis": schedule_delay_millis,
    }
    with _lock:
        if _state.shut_down:
            raise RuntimeError("tracehouse.instrumentation was shut down; the global provider cannot be replaced")
        if _state.provider is None:
            _state.provider = _build(config)
            _state.config = config
        elif config != _state.config:
            log.warning("tracehouse: setup() already ran; keeping its first configuration")
        provider = _state.provider
        if instrument is not False:
            wanted = None if instrument is True else list(instrument)
            enabled, unavailable = enable(provider, wanted, _state.instrumentors)
            if enabled:
                log.info("tracehouse: instrumented %s", ", ".join(enabled))
            if wanted is not None and unavailable:
                log.warning("tracehouse: not installed, not instrumented: %s", ", ".join(unavailable))
    return provider


def _build(config: dict[str, Any]) -> TracerProvider:
    protocol = resolve_protocol(config["protocol"])
    endpoint = resolve_endpoint(config["endpoint"], protocol)
    resource = Resource.create({**config["resource_attributes"], SERVICE_NAME: config["service_name"]})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(ContextSpanProcessor())
    provider.add_span_processor(
        BatchSpanProcessor(
            _exporter(protocol, endpoint, config["headers"]),
            max_queue_size=_bsp_setting(config["max_queue_size"], "OTEL_BSP_MAX_QUEUE_SIZE", MAX_QUEUE_SIZE),
            max_export_batch_size=_bsp_setting(
                config["max_export_batch_size"], "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", MAX_EXPORT_BATCH_SIZE
            ),
            schedule_delay_millis=_bsp_setting(
                config["schedule_delay_millis"], "OTEL_BSP_SCHEDULE_DELAY", SCHEDULE_DELAY_MILLIS
            ),
        )
    )
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        log.warning(
            "tracehouse: another global tracer provider was already set; the instrumentors use tracehouse's, "
            "spans started through opentelemetry.trace.get_tracer() do not"
        )
    log.info("tracehouse: exporting spans of %s over %s to %s", config["service_name"], protocol, endpoint)
    return provider


def enabled_instrumentors() -> tuple[str, ...]:
    """The names of the instrumentors `setup()` turned on."""
    return tuple(sorted(_state.instrumentors))


def flush(timeout_millis: int = 30000) -> bool:
    """Export every finished span now (end of a script, a serverless handler, a test). True when done."""
    provider = _state.provider
    return provider.force_flush(timeout_millis) if provider is not None and not _state.shut_down else True


def shutdown(timeout_millis: int = 30000) -> None:
    """Flush, stop the exporter and the instrumentors. The provider also shuts down at interpreter exit."""
    with _lock:
        provider = _state.provider
        if provider is None or _state.shut_down:
            return
        provider.force_flush(timeout_millis)
        for instrumentor in _state.instrumentors.values():
            try:
                instrumentor.uninstrument()
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.debug("tracehouse: uninstrument failed", exc_info=True)
        _state.instrumentors.clear()
        provider.shutdown()
        _state.shut_down = True
