"""`tracehouse` command line: serve, migrate, sql."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

from tracehouse.collector.config import Config, ConfigError, add_flags, load_args

log = logging.getLogger("tracehouse")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line naming the problem, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        sys.stdout.write(f"tracehouse {installed_version()}\n")  # stdout, as argparse's own version action
        parser.exit(0)


def installed_version() -> str:
    """The version of the installed `tracehouse` distribution (pip's metadata, not a copy in the code)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tracehouse")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand takes the flags of the settings it uses, all derived from Config's fields."""
    parser = _Parser(
        prog="tracehouse",
        description="OpenTelemetry-native observability pipeline for LLM applications, on ClickHouse.",
    )
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the collector (OTLP gRPC :4317 and HTTP :4318)")
    add_flags(serve, "serve")

    migrate = sub.add_parser("migrate", help="apply the schema migrations to the store")
    add_flags(migrate, "migrate")

    from tracehouse.collector import prices_cli

    prices_cli.add_parser(sub)

    sql = sub.add_parser("sql", help="run a read-only SQL query over the spans")
    add_flags(sql, "sql")
    sql.add_argument("query", help="the SQL query; - reads it from standard input")
    sql.add_argument(
        "--format",
        "-f",
        default="table",
        help="table, csv, tsv (ClickHouse's CSV and TSV: no header row), json, jsonl, or a ClickHouse output"
        " format name such as CSVWithNames or JSONEachRow (default table)",
    )

    from tracehouse.collector import report

    report.add_parser(sub)

    from tracehouse.collector import retention_cli

    retention_cli.add_parser(sub)

    from tracehouse.collector import forget

    forget.add_parser(sub)
    from tracehouse.collector import review_cli

    review_cli.add_parser(sub)
    from tracehouse.collector import replay

    replay.add_parser(sub)
    from tracehouse.collector import prompts_cli

    prompts_cli.add_parser(sub)
    from tracehouse.collector import export_cli

    export_cli.add_parser(sub)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    found = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return found[0] if found else None


def commands_overview(parser: argparse.ArgumentParser, summary: str | None = None) -> str:
    """A parser's subcommands, one line each: what `tracehouse` (or `tracehouse prices`) alone prints."""
    subcommands = _subcommands(parser)
    assert subcommands is not None, parser.prog
    rows = [(choice.dest, choice.help or "") for choice in subcommands._choices_actions]
    width = max(len(name) for name, _ in rows)
    lines = [f"usage: {parser.prog} COMMAND [flags]", ""]
    if summary or parser.description:
        lines += [summary or parser.description or "", ""]
    lines += ["commands:", *(f"  {name:<{width}}  {text}" for name, text in rows), ""]
    footer = f"`{parser.prog} COMMAND --help` shows a command's flags"
    if any(isinstance(action, _Version) for action in parser._actions):
        footer += f"; `{parser.prog} --version` the installed version"
    return "\n".join([*lines, footer + "."]) + "\n"


def _overview(parser: argparse.ArgumentParser, words: list[str]) -> str | None:
    """The overview to print for `tracehouse` alone, or a command with subcommands alone; else None."""
    if not words:
        return commands_overview(parser)
    subcommands = _subcommands(parser)
    if len(words) == 1 and subcommands is not None and words[0] in subcommands.choices:
        command = subcommands.choices[words[0]]
        if _subcommands(command) is not None:
            summary = next(c.help for c in subcommands._choices_actions if c.dest == words[0])
            return commands_overview(command, summary)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    overview = _overview(parser, sys.argv[1:] if argv is None else argv)
    if overview is not None:
        # Like docker, kubectl and cargo: the commands on stdout, exit 0 (git prints its usage and exits 1).
        sys.stdout.write(overview)
        return 0
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        prog = " ".join(filter(None, ("tracehouse", args.command, getattr(args, "prices_command", None))))
        print(f"{prog}: unrecognized arguments: {' '.join(unknown)} (see {prog} --help)", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    try:
        config = load_args(args)
        logging.getLogger().setLevel(config.log_level)
        if config.log_level != "DEBUG":
            # We report store errors ourselves, in one line; the driver's own warnings only repeat them.
            for driver in ("clickhouse_connect", "urllib3"):
                logging.getLogger(driver).setLevel(logging.ERROR)
        return _run(args, config)
    except ConfigError as exc:
        print(f"tracehouse: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"tracehouse: {exc}; the collector needs: pip install 'tracehouse[collector]'", file=sys.stderr)
        return 2
    except Exception as exc:
        message = _failure(exc)
        if message is None:
            raise
        log.debug("details", exc_info=True)
        print(f"tracehouse: {message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, config: Config) -> int:
    from tracehouse.collector import store

    # Before anything opens the store or the spool: the keys the data dir needs (encryption at rest).
    store.use_encryption(config.data_dir, config.encryption, config.is_embedded)
    if args.command == "serve":
        return _serve(config)
    opens_store = args.command in (
        "migrate",
        "sql",
        "report",
        "retention",
        "forget",
        "review",
        "replay",
        "prompts",
        "export",
    ) or getattr(args, "prices_command", "") in ("unknown", "reprice")
    if opens_store:
        from tracehouse.collector.files import PRIVATE_UMASK, use_private_files

        # A command that only finds what is stored creates no data dir where there is none: it says so instead.
        finds_only = args.command in ("sql", "report", "export", "forget") and not config.data_dir.exists()
        if config.is_embedded and not finds_only:
            use_private_files(config)
        else:
            os.umask(PRIVATE_UMASK)
    if args.command == "migrate":
        return _migrate(config)
    if args.command == "prices":
        from tracehouse.collector import prices_cli

        return prices_cli.run(args, config)
    if args.command == "retention":
        from tracehouse.collector import retention_cli

        return retention_cli.run(args, config)
    if args.command == "forget":
        from tracehouse.collector import forget

        return forget.run(args, config, sys.stdout)
    if args.command == "review":
        from tracehouse.collector import review_cli

        return review_cli.run(args, config, sys.stdout)
    if args.command == "replay":
        from tracehouse.collector import replay

        return replay.run(args, config, sys.stdout)
    if args.command == "prompts":
        from tracehouse.collector import prompts_cli

        return prompts_cli.run(args, config, sys.stdout)
    if args.command == "export":
        from tracehouse.collector import export_cli

        return export_cli.run(args, config)
    if args.command == "report":
        from tracehouse.collector import report

        return report.run(args, config, installed_version())
    return _sql(config, args.query, args.format)


def _failure(exc: BaseException) -> str | None:
    """One line for an error the user can act on (busy store, unreachable server, OS), else None: a bug."""
    if isinstance(exc, CommandFailed):
        return str(exc)
    runtime = sys.modules.get("tracehouse.collector.runtime")
    if runtime is not None and isinstance(exc, runtime.StoreBusy):
        return str(exc)
    store = sys.modules.get("tracehouse.collector.store")
    if store is not None and isinstance(exc, store.StoreUnreachable):
        return str(exc)
    driver = sys.modules.get("clickhouse_connect.driver.exceptions")
    if driver is not None and isinstance(exc, driver.ClickHouseError):
        return f"ClickHouse: {store.describe_error(exc) if store else str(exc).splitlines()[0]}"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


class CommandFailed(Exception):
    """A start-up check that failed; the message names the problem and the fix."""


def _check_listen(config: Config) -> None:
    """Each fixed port must be free before anything starts: a clear message instead of a half-started
    collector (grpc's own bind error, and its objects outliving the event loop)."""
    listeners = (
        ("OTLP/gRPC", "--grpc-port", config.host, config.grpc_port),
        ("OTLP/HTTP", "--http-port", config.host, config.http_port),
        ("query endpoint", "--query-port", config.query_host, config.query_port),
    )
    for what, flag, host, port in listeners:
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise CommandFailed(
                f"cannot listen on {host!r}: {exc.strerror}; set --host to an address of this machine"
            ) from None
        errors = []
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    errors.append(exc.errno)
        if errno.EADDRINUSE in errors:
            raise CommandFailed(
                f"port {port} on {host} ({what}) is already in use by another program;"
                f" stop it or choose another port with {flag} (0 picks a free one)"
            )
        if errors and len(errors) == len(addresses):
            if errors[0] in (errno.EACCES, errno.EPERM):
                raise CommandFailed(f"port {port} ({what}) needs privileges; choose a port above 1023 with {flag}")
            where = f"{host} port {port}" if port else host
            raise CommandFailed(f"cannot listen on {where} ({what}): {os.strerror(errors[0])}; check --host and {flag}")


def _serve(config: Config) -> int:
    import asyncio

    from tracehouse.collector.files import use_private_files

    _check_listen(config)  # first: a port in use leaves no new data dir behind
    use_private_files(config)
    from tracehouse.collector.service import serve

    try:
        asyncio.run(_cleanly(serve(config)))
    except RuntimeError as exc:
        if not str(exc).startswith("Failed to bind"):  # grpc's error, when a port was taken after the check
            raise
        where = str(exc).partition(";")[0].removeprefix("Failed to bind to address ")
        print(f"tracehouse: cannot listen on {where} (OTLP/gRPC); check --host and --grpc-port", file=sys.stderr)
        return 1
    return 0


async def _cleanly(start: Coroutine[Any, Any, None]) -> None:
    """Run `start`; if it fails half-way, stop the servers it had started while the loop still runs.

    A started grpc.aio server stays alive inside grpc and shuts down from its finalizer by scheduling
    a task on the loop: after asyncio.run has closed the loop, that ends in "Exception ignored ...
    Event loop is closed". aiohttp runners left set up leak their sockets the same way."""
    import gc

    try:
        await start
    except Exception:
        grpc_aio = sys.modules.get("grpc.aio")
        web = sys.modules.get("aiohttp.web")
        for obj in gc.get_objects():
            try:
                if grpc_aio is not None and isinstance(obj, grpc_aio.Server):
                    await obj.stop(None)
                elif web is not None and isinstance(obj, web.BaseRunner):
                    await obj.cleanup()
            except Exception as exc:  # the start error matters more than a failed clean-up
                log.debug("clean-up after a failed start: %s", exc)
        raise


def _migrate(config: Config) -> int:
    from tracehouse.collector import store
    from tracehouse.collector.runtime import StoreBusy, lock_store

    try:
        lock = lock_store(config)
    except StoreBusy as exc:
        print(f"tracehouse: {exc} (a running collector applies migrations itself at start)", file=sys.stderr)
        return 1
    try:
        client = store.connect(config.store_url)
        try:
            applied = store.migrate(client, config.cluster, retention_settings=config.retention)
        finally:
            client.close()
    finally:
        if lock:
            lock.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def _sql(config: Config, query: str, fmt: str) -> int:
    from tracehouse.collector.query import QueryCancelled, QueryFailed, read_query

    try:
        if query == "-":
            query = sys.stdin.read()
        # read_query keeps this thread free for Ctrl-C and stops the query before it returns.
        result = read_query(config, query, fmt)
    except (QueryCancelled, KeyboardInterrupt):
        print("tracehouse: cancelled", file=sys.stderr, flush=True)
        return 130
    except QueryFailed as exc:
        print(f"tracehouse: {exc}", file=sys.stderr)
        return 1
    if not result.body and result.format.startswith("Pretty"):
        print("0 rows", file=sys.stderr)  # Pretty formats print nothing at all for an empty result
    sys.stdout.buffer.write(result.body)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
