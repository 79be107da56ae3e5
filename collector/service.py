"""Assembles the collector: store, writer, pipeline, receivers and the query endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from tracehouse.collector import store
from tracehouse.collector.config import Config
from tracehouse.collector.pipeline import Pipeline
from tracehouse.collector.query import QueryEndpoint, ReadOnlySql
from tracehouse.collector.receivers.grpc import GrpcReceiver
from tracehouse.collector.receivers.http import HttpReceiver
from tracehouse.collector.runtime import lock_store, remove_runtime_info, write_runtime_info
from tracehouse.collector.stages import default_stages
from tracehouse.collector.writer import BatchWriter

log = logging.getLogger("tracehouse")


async def serve(config: Config, shutdown_grace: float = 10.0) -> None:
    lock = lock_store(config)
    writer_client = store.connect(config.store_url)
    applied = store.migrate(writer_client)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    writer = BatchWriter(writer_client, config.batch_max_rows, config.batch_linger_ms)
    pipeline = Pipeline(writer, default_stages(config))
    grpc_receiver = GrpcReceiver(pipeline, config.host, config.grpc_port, config.max_request_bytes)
    http_receiver = HttpReceiver(pipeline, config.host, config.http_port, config.max_request_bytes)
    query_endpoint = QueryEndpoint(ReadOnlySql(store.connect(config.store_url)), config.query_host, config.query_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    writer.start()
    await grpc_receiver.start()
    await http_receiver.start()
    await query_endpoint.start()
    info = {
        "pid": os.getpid(),
        "grpc_endpoint": f"{config.host}:{grpc_receiver.port}",
        "http_endpoint": f"http://{config.host}:{http_receiver.port}",
        "grpc_port": grpc_receiver.port,
        "http_port": http_receiver.port,
        "query_url": query_endpoint.url,
        "query_key": query_endpoint.key,
        "store": config.store_url,
    }
    write_runtime_info(config.endpoint_file, info)
    print(
        "tracehouse collector ready\n"
        f"  OTLP/gRPC  {info['grpc_endpoint']}\n"
        f"  OTLP/HTTP  {info['http_endpoint']}/v1/traces\n"
        f"  store      {config.store_url}\n"
        f'  SQL        tracehouse sql --data-dir {config.data_dir} "SELECT count() FROM otel_traces"',
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await grpc_receiver.stop(shutdown_grace)
        await http_receiver.stop()
        await writer.close()
        await query_endpoint.stop()
        remove_runtime_info(config.endpoint_file)
        writer_client.close()
        if lock:
            lock.close()
