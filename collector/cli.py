"""`tracehouse` command line: serve, migrate, sql."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from tracehouse.collector.config import Config, ConfigError, load_config


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (also TRACEHOUSE_CONFIG)")
    parser.add_argument("--data-dir", help="where the embedded store lives (default ./.tracehouse/data)")
    parser.add_argument(
        "--clickhouse-url",
        help="chdb:///abs/path or http(s)://user:pass@host:8123/db (default: embedded store in the data dir)",
    )
    parser.add_argument("--cluster", help="ClickHouse cluster name: migrations run ON CLUSTER, Replicated engines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracehouse",
        description="OpenTelemetry-native observability pipeline for LLM applications, on ClickHouse.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the collector (OTLP gRPC :4317 and HTTP :4318)")
    _common(serve)
    serve.add_argument("--host", help="address the OTLP receivers listen on (default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, help="OTLP/gRPC port (default 4317; 0 picks a free one)")
    serve.add_argument("--http-port", type=int, help="OTLP/HTTP port (default 4318; 0 picks a free one)")
    serve.add_argument("--query-port", type=int, help="read-only SQL endpoint port on 127.0.0.1 (default: free)")
    serve.add_argument("--max-request-bytes", type=int, help="largest request after decompression (64 MiB)")
    serve.add_argument("--batch-max-rows", type=int, help="rows per ClickHouse insert (default 20000)")
    serve.add_argument("--batch-linger-ms", type=int, help="hold a small batch back for companions (default 0)")
    serve.add_argument(
        "--workers", type=int, help="processes for the CPU-bound pipeline stages (0: in the main process)"
    )
    serve.add_argument(
        "--spool",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="acknowledge once fsynced in the on-disk spool (default) or only once inserted (--no-spool)",
    )
    serve.add_argument("--spool-budget-bytes", type=int, help="unsent bytes the spool may hold (1 GiB)")
    serve.add_argument("--max-inflight-bytes", type=int, help="request bytes being processed at once (256 MiB)")
    serve.add_argument("--shutdown-grace-seconds", type=float, help="time to finish and drain on SIGTERM (10)")
    serve.add_argument("--tls-cert-file", help="PEM certificate chain: both OTLP receivers speak TLS")
    serve.add_argument("--tls-key-file", help="PEM private key for --tls-cert-file")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")

    migrate = sub.add_parser("migrate", help="apply the schema migrations to the store")
    _common(migrate)

    from tracehouse.collector import prices_cli

    prices_cli.add_parser(sub)

    sql = sub.add_parser("sql", help="run a read-only SQL query over the spans")
    _common(sql)
    sql.add_argument("query", help="the SQL query; - reads it from standard input")
    sql.add_argument(
        "--format",
        "-f",
        default="table",
        help="table, csv, tsv, json, jsonl, or any ClickHouse output format name (default table)",
    )
    return parser


_CONFIG_KEYS = (
    "data_dir",
    "clickhouse_url",
    "cluster",
    "host",
    "grpc_port",
    "http_port",
    "query_port",
    "max_request_bytes",
    "batch_max_rows",
    "batch_linger_ms",
    "workers",
    "spool",
    "spool_budget_bytes",
    "max_inflight_bytes",
    "shutdown_grace_seconds",
    "tls_cert_file",
    "tls_key_file",
    "log_level",
)


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {key: getattr(args, key, None) for key in _CONFIG_KEYS}
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"tracehouse: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            return _serve(config)
        if args.command == "migrate":
            return _migrate(config)
        if args.command == "prices":
            from tracehouse.collector import prices_cli

            return prices_cli.run(args, config)
        return _sql(config, args.query, args.format)
    except ImportError as exc:
        print(f"tracehouse: {exc}; the collector needs: pip install 'tracehouse[collector]'", file=sys.stderr)
        return 2


def _serve(config: Config) -> int:
    import asyncio

    from tracehouse.collector.runtime import StoreBusy
    from tracehouse.collector.service import serve

    try:
        asyncio.run(serve(config))
    except ConfigError as exc:
        print(f"tracehouse: {exc}", file=sys.stderr)
        return 2
    except StoreBusy as exc:
        print(f"tracehouse: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"tracehouse: {exc}", file=sys.stderr)
        return 1
    return 0


def _migrate(config: Config) -> int:
    from tracehouse.collector import store
    from tracehouse.collector.runtime import StoreBusy, lock_store

    try:
        lock = lock_store(config)
    except StoreBusy:
        print("tracehouse: a collector owns this store; it applies migrations itself at start", file=sys.stderr)
        return 1
    client = store.connect(config.store_url)
    applied = store.migrate(client, config.cluster)
    client.close()
    if lock:
        lock.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def _sql(config: Config, query: str, fmt: str) -> int:
    from tracehouse.collector.runtime import QueryFailed, run_read_query

    if query == "-":
        query = sys.stdin.read()
    try:
        out = run_read_query(config, query, fmt)
    except QueryFailed as exc:
        print(f"tracehouse: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
