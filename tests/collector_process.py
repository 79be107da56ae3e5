"""Run the real collector as a subprocess for tests, and query it the way users do."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

STORE_DIR = "clickhouse"  # the embedded store inside a data dir (Config.store_dir)


def migrate_store_template(root: Path) -> Path:
    """A data dir whose store `tracehouse migrate` brought to the current schema, to copy from: the ~26
    migrations and views cost a fresh collector seconds of DDL at start, a copy of their result milliseconds.
    Only for tests about something else (unencrypted, no cluster); schema tests migrate their own stores."""
    data_dir = Path(root) / "data"
    result = subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "migrate", "--data-dir", str(data_dir)],
        capture_output=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"tracehouse migrate failed ({result.returncode}): {result.stderr.decode()}")
    return data_dir


def seed_store(data_dir: Path, template: Path) -> None:
    """Give a data dir that has no store yet a copy of the template's migrated store (symlinks and modes kept)."""
    target = Path(data_dir) / STORE_DIR
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(Path(template) / STORE_DIR, target, symlinks=True)


class CollectorProcess:
    """`tracehouse serve` on free ports and its own data dir.

    With `store_template` (a data dir from migrate_store_template), a data dir without a store starts from a
    copy of that migrated store instead of an empty one."""

    def __init__(
        self,
        data_dir: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        store_template: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.store_template = store_template
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict = {}
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-collector.log"

    def start(self, timeout: float = 60) -> CollectorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.store_template is not None:
            seed_store(self.data_dir, self.store_template)
        endpoint_file = self.data_dir / "collector.json"
        env = {**os.environ, **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command() + self.extra_args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}:\n{self.log()}")
            try:
                info = json.loads(endpoint_file.read_text())
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"collector did not start within {timeout}s:\n{self.log()}")

    def command(self) -> list[str]:
        """`tracehouse serve` on this data dir and free ports (extra flags come after and win)."""
        return [sys.executable, "-m", "tracehouse.collector", "serve", "--data-dir", str(self.data_dir)] + [
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--batch-linger-ms",
            "50",
        ]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def grpc_endpoint(self) -> str:
        return self.info["grpc_endpoint"]

    @property
    def http_endpoint(self) -> str:
        return self.info["http_endpoint"]

    @property
    def traces_url(self) -> str:
        return self.http_endpoint + "/v1/traces"

    def stop(self, timeout: float = 30) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def spool_bytes(http_endpoint: str) -> float:
    """The collector's own gauge of spool bytes not yet in ClickHouse."""
    # A test collector with TLS uses a self-signed certificate: no verification for this probe.
    context = ssl._create_unverified_context() if http_endpoint.startswith("https") else None
    with urllib.request.urlopen(http_endpoint + "/metrics", timeout=10, context=context) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("tracehouse_spool_bytes "):
                return float(line.split()[1])
    raise AssertionError("tracehouse_spool_bytes missing from /metrics")


def wait_drained(data_dir: Path, timeout: float = 60) -> None:
    """Acknowledged means durable in the spool; wait until a running collector moved it into ClickHouse."""
    try:
        info = json.loads((Path(data_dir) / "collector.json").read_text())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if spool_bytes(info["http_endpoint"]) == 0:
                return
        except OSError:
            return  # the collector is gone: the CLI will open the store itself
        time.sleep(0.02)
    raise TimeoutError(f"spool of {data_dir} not drained within {timeout}s")


def tracehouse_sql(data_dir: Path, query: str, fmt: str = "jsonl", check: bool = True) -> subprocess.CompletedProcess:
    """Run the `tracehouse sql` command line, as a user would (after the spool drained)."""
    wait_drained(data_dir)
    result = subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "sql", "--data-dir", str(data_dir), "--format", fmt, query],
        capture_output=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"tracehouse sql failed ({result.returncode}): {result.stderr.decode()}")
    return result


def running_collector(data_dir: Path) -> dict | None:
    """The collector.json of a collector that still runs on `data_dir`, else None."""
    try:
        info = json.loads((Path(data_dir) / "collector.json").read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if info.get("query_url") else None


def sql_rows(data_dir: Path, query: str) -> list[dict]:
    """Rows of a query as `tracehouse sql --format jsonl` prints them (64-bit integers may arrive as strings).

    With a collector running, the query goes where that command sends it, the collector's SQL endpoint, without
    a new interpreter per query (the command line itself is driven by test_sql and the README tests)."""
    wait_drained(data_dir)
    info = running_collector(data_dir)
    if info is None:
        out = tracehouse_sql(data_dir, query, "jsonl").stdout
    else:
        request = urllib.request.Request(
            info["query_url"].rstrip("/") + "/?default_format=JSONEachRow",
            data=query.encode(),
            headers={"X-ClickHouse-Key": info["query_key"]},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                out = response.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"query failed ({error.code}): {error.read().decode(errors='replace')}") from None
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]
