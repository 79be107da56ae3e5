"""Assembles the collector: store, spool and drainer (or direct writer), pipeline, receivers, query endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import ssl
import sys
import sysconfig
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from tracehouse.collector import prompt_registry, store
from tracehouse.collector.auth import Authenticator
from tracehouse.collector.config import Config
from tracehouse.collector.encryption import sealer_for
from tracehouse.collector.errors import Invalid, PipelineError
from tracehouse.collector.forget import ROUTE_PATH as FORGET_PATH
from tracehouse.collector.forget import ForgetRoute
from tracehouse.collector.logs import LogLimiter
from tracehouse.collector.metrics import CollectorMetrics
from tracehouse.collector.pipeline import Pipeline
from tracehouse.collector.processing import Processed, process_body
from tracehouse.collector.query import QueryEndpoint, ReadOnlySql, query_limits
from tracehouse.collector.receivers.grpc import GrpcReceiver
from tracehouse.collector.receivers.http import HttpReceiver
from tracehouse.collector.receivers.limits import ConnectionLimits, raise_open_file_limit
from tracehouse.collector.reviews import REVIEW_ROUTE, SPANS_ROUTE, ReviewProcessor
from tracehouse.collector.runtime import lock_store, remove_runtime_info, write_runtime_info
from tracehouse.collector.scores import ScoreProcessor
from tracehouse.collector.spool import Spool
from tracehouse.collector.stages import default_stages
from tracehouse.collector.workers import WorkerPool
from tracehouse.collector.writer import DirectWriter, SpoolDrainer, StoreUnavailable, TraceStore

log = logging.getLogger("tracehouse")
_limited = LogLimiter(log)
FAULT_SPOOL_READ_ENV = "TRACEHOUSE_FAULT_SPOOL_READ_ERROR_FILE"


def _spans_route(pipeline: Pipeline) -> Callable[[web.Request, bytes], Awaitable[web.Response]]:
    """POST /spans on the local query endpoint (its key): OTLP/JSON spans the collector's own commands make
    (`tracehouse replay`), into the same pipeline as any span, for the tenant given (`?tenant=`)."""

    async def handle(request: web.Request, body: bytes) -> web.Response:
        try:
            result = await pipeline.export(body, True, "replay", request.query.get("tenant") or None)
        except Invalid as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except PipelineError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"accepted": result.accepted, "rejected": result.rejected})

    return handle


def _review_route(pipeline: Pipeline) -> Callable[[web.Request, bytes], Awaitable[web.Response]]:
    """POST /reviews on the local query endpoint (its key, so the operator's, not a tenant's): `tracehouse
    review set` writes through the pipeline, redacted and durable like POST /v1/reviews."""

    async def handle(_request: web.Request, body: bytes) -> web.Response:
        try:
            ids = await pipeline.export_reviews(body, None)
        except Invalid as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except PipelineError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"ids": ids})

    return handle


def _ops_routes(
    metrics: CollectorMetrics, spool: Spool | None, sink: SpoolDrainer | DirectWriter, pipeline: Pipeline
) -> list:
    """/healthz (the process is up), /readyz (spans that are acknowledged get stored: the drainer or writer
    runs and succeeds, the store answers, the spool takes writes and is under budget; requests get processed:
    the worker processes, if any, are not being restarted), /metrics."""

    counted_failures = 0

    def refresh() -> None:
        nonlocal counted_failures
        sink.update_gauges()
        if spool is not None:
            metrics.spool_bytes.set(spool.pending_bytes)
            metrics.spool_oldest_age.set(spool.oldest_age_seconds())
            metrics.spool_sync_failures.inc(spool.sync_failures - counted_failures)
            counted_failures = spool.sync_failures

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        problems = sink.problems() + pipeline.problems()
        body: dict[str, object] = {}
        if spool is not None:
            if spool.full:
                problems.append("spool at its disk budget")
            if spool.sync_error:
                problems.append(f"spool cannot write to disk: {spool.sync_error}")
            body["drainer"] = sink.status()
            body["spool"] = {
                "pending_bytes": spool.pending_bytes,
                "budget_bytes": spool.budget_bytes,
                "oldest_unsent_age_seconds": round(spool.oldest_age_seconds(), 3),
                "write_failures": spool.sync_failures,
                "last_write_error": spool.sync_error,
            }
        else:
            body["writer"] = sink.status()
        refresh()
        status = {"status": "ready" if not problems else "not ready", "problems": problems, **body}
        return web.json_response(status, status=200 if not problems else 503)

    async def prometheus(_request: web.Request) -> web.Response:
        refresh()
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", prometheus)]


def _fault_spool_read_file(config: Config) -> Path | None:
    """The drainer's fault hook (tests): while this file exists its spool reads fail with EMFILE.
    Read from the environment until Config has a `fault_spool_read_error_file` field."""
    value = getattr(config, "fault_spool_read_error_file", "") or os.environ.get(FAULT_SPOOL_READ_ENV, "")
    return Path(value) if value else None


async def serve(config: Config) -> None:
    """Start everything in order; whatever started is stopped in reverse order, also when start-up
    fails half-way (a port in use, a bad certificate), so no server outlives the event loop."""
    async with contextlib.AsyncExitStack() as running:
        await _serve(config, running)


def _loop_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """asyncio logs every failed accept when the process is out of file descriptors (hundreds of lines a
    second per listener, each retry): one line a minute says it."""
    if context.get("message", "").startswith("socket.accept() out of system resource"):
        _limited.warning("accept-out-of-resources", "a listener cannot accept: %s", context.get("exception"))
        return
    loop.default_exception_handler(context)


async def _serve(config: Config, running: contextlib.AsyncExitStack) -> None:
    raise_open_file_limit()  # idle connections must not starve the spool and the store of descriptors
    asyncio.get_running_loop().set_exception_handler(_loop_errors)
    lock = lock_store(config)
    if lock:
        running.callback(lock.close)
    metrics = CollectorMetrics()
    fault_file = Path(config.fault_store_unavailable_file) if config.fault_store_unavailable_file else None
    trace_store = TraceStore(
        config.store_url, fault_file, cluster=config.cluster, retention=config.retention, metrics=metrics
    )
    running.callback(trace_store.close)
    try:
        await asyncio.to_thread(trace_store.ensure_ready)
    except StoreUnavailable as exc:
        log.warning("starting without the store (spans wait in the spool): %s", exc)

    stages = default_stages(config)  # built here too: a bad price file or rule stops start-up at once
    scores = ScoreProcessor.from_config(config)  # POST /v1/scores: the same redaction rules as spans
    reviews = ReviewProcessor.from_config(config)
    # Each worker process builds its own stages from the same config and runs process_body with them.
    pool: WorkerPool[Processed] | None = None
    if config.workers:
        pool = WorkerPool(
            config.workers, process_body, default_stages, (config,), stall_seconds=config.worker_stall_seconds
        )
    if pool is not None:
        running.callback(pool.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(pool.start)  # before the receivers: the first requests do not wait for it
    spool: Spool | None = None
    sink: SpoolDrainer | DirectWriter
    if config.spool:
        spool = Spool(config.spool_dir, config.spool_budget_bytes, sealer=sealer_for(config.encryption))
        spool.open()
        running.callback(spool.close)
        sink = SpoolDrainer(
            spool,
            trace_store,
            metrics,
            config.batch_max_rows,
            config.batch_linger_ms,
            config.deadletter_dir,
            fault_read_file=_fault_spool_read_file(config),
            max_bytes=config.batch_max_bytes,
        )
    else:
        sink = DirectWriter(trace_store, metrics, config.batch_max_rows, max_bytes=config.batch_max_bytes)
    pipeline = Pipeline(
        stages,
        metrics,
        spool=spool,
        writer=sink if spool is None else None,
        max_inflight_bytes=config.max_inflight_bytes,
        workers=pool,
        scores=scores,
        reviews=reviews,
    )

    authenticator = Authenticator.from_config(config)
    tls: tuple[bytes, bytes] | None = None
    ssl_context: ssl.SSLContext | None = None
    if config.tls_cert_file:
        tls = (Path(config.tls_cert_file).read_bytes(), Path(config.tls_key_file).read_bytes())
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    limits = ConnectionLimits.from_config(config)
    grpc_receiver = GrpcReceiver(
        pipeline, config.host, config.grpc_port, config.max_request_bytes, authenticator, tls, limits=limits
    )
    http_receiver = HttpReceiver(
        pipeline, config.host, config.http_port, config.max_request_bytes, authenticator, ssl_context, limits=limits
    )
    http_receiver.extra_routes = _ops_routes(metrics, spool, sink, pipeline)
    read_only = ReadOnlySql(lambda: store.connect(config.store_url), query_limits(config))
    query_endpoint = QueryEndpoint(
        read_only,
        config.query_host,
        config.query_port,
        config.query_read_key,
        limits=limits,
        tenant_keys=config.query_read_keys,
    )
    query_endpoint.admin_routes[FORGET_PATH] = ForgetRoute(config, spool, sink).handle
    query_endpoint.admin_routes[REVIEW_ROUTE] = _review_route(pipeline)
    query_endpoint.admin_routes[SPANS_ROUTE] = _spans_route(pipeline)
    query_endpoint.admin_routes[prompt_registry.ROUTE_PATH] = prompt_registry.PromptsRoute(config).handle
    prompt_rows = prompt_registry.query_rows(read_only.run)
    http_receiver.prompt_lookup = lambda tenant, name, label, number: prompt_registry.lookup(
        prompt_rows, tenant, name, label, number
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    grace = config.shutdown_grace_seconds
    sink.start()
    # Shutdown, in reverse: stop taking requests, let the in-flight ones finish, drain, close cleanly.
    running.push_async_callback(sink.stop, grace)
    await grpc_receiver.start()
    running.push_async_callback(grpc_receiver.stop, grace)
    await http_receiver.start()
    running.push_async_callback(http_receiver.stop)
    await query_endpoint.start()
    running.push_async_callback(query_endpoint.stop)
    info = {
        "pid": os.getpid(),
        "grpc_endpoint": f"{config.host}:{grpc_receiver.port}",
        "http_endpoint": f"{'https' if tls else 'http'}://{config.host}:{http_receiver.port}",
        "tls": bool(tls),
        "api_keys_required": authenticator.required,
        "grpc_port": grpc_receiver.port,
        "http_port": http_receiver.port,
        "query_url": query_endpoint.url,
        "query_key": query_endpoint.key,
        "store": store.redact_url(config.store_url),
    }
    write_runtime_info(config.endpoint_file, info)
    running.callback(remove_runtime_info, config.endpoint_file)
    print(
        "tracehouse collector ready\n"
        f"  OTLP/gRPC  {info['grpc_endpoint']}\n"
        f"  OTLP/HTTP  {info['http_endpoint']}/v1/traces\n"
        f"  metrics    {info['http_endpoint']}/metrics  (/healthz, /readyz)\n"
        f"  store      {info['store']}" + (f"  (spool: {config.spool_dir})" if spool else "") + "\n"
        f"  SQL        {cli_command()} sql --data-dir {shlex.quote(str(config.data_dir))}"
        ' "SELECT count() FROM otel_traces"',
        flush=True,
    )
    await stop.wait()
    log.info("shutting down")


def cli_command() -> str:
    """How a shell runs this installation's `tracehouse`: the bare name when PATH finds this one, else its
    script's absolute path (after `make run` it is in .venv/bin, which is not on PATH), else `python -m`."""
    ours = shutil.which("tracehouse", path=sysconfig.get_path("scripts"))
    on_path = shutil.which("tracehouse")
    if ours and on_path and os.path.samefile(ours, on_path):
        return "tracehouse"
    if ours:
        return shlex.quote(os.path.abspath(ours))
    return f"{shlex.quote(sys.executable)} -m tracehouse.collector"
