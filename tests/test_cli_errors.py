"""Every mistake a new user makes with the `tracehouse` command ends in one clear line naming the problem
and the fix, a non-zero exit code, and no traceback. Each case runs the real command."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

LINE_LIMIT = 2  # the message, and at most one warning before it


def tracehouse(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACEHOUSE_")}
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
        cwd=cwd,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess, *fragments: str, code: int | None = None) -> str:
    stderr = result.stderr.strip()
    assert result.returncode != 0, f"exit 0:\n{result.stdout}\n{stderr}"
    if code is not None:
        assert result.returncode == code, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = stderr.splitlines()
    assert 1 <= len(lines) <= LINE_LIMIT, stderr
    message = lines[-1]
    for fragment in fragments:
        assert fragment in message, message
    return message


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return tracehouse(
        "serve", "--data-dir", str(tmp_path / "data"), "--grpc-port", "0", "--http-port", "0", *args, env=env
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--log-level", "LOUD"), ("--log-level", "'LOUD'", "DEBUG, INFO, WARNING, ERROR, CRITICAL")),
        (("--workers", "-1"), ("--workers", "between 0 and 64", "-1")),
        (("--http-port", "99999"), ("--http-port", "between 0 and 65535", "99999")),
        (("--batch-max-rows", "0"), ("--batch-max-rows", "at least 1", "got 0")),
        (("--grpc-port", "abc"), ("--grpc-port", "must be an integer", "'abc'")),
        (("--shutdown-grace-seconds", "soon"), ("--shutdown-grace-seconds", "must be a number")),
        (("--clickhouse-url", "foo://bar"), ("'foo://bar' is not a ClickHouse URL", "chdb:///", "http(s)://")),
        (("--clickhouse-url", "chdb://relative/store"), ("chdb URL needs an absolute path",)),
        (("--grpc-port", "4400", "--http-port", "4400"), ("both 4400", "two ports")),
        (("--no-such-flag",), ("unrecognized arguments: --no-such-flag", "tracehouse serve --help")),
    ],
)
def test_bad_flags(tmp_path, args, fragments):
    assert_one_clear_line(serve(tmp_path, *args), *fragments, code=2)
    assert not (tmp_path / "data" / "clickhouse").exists()


def test_log_level_is_case_insensitive(tmp_path):
    result = tracehouse("prices", "show", "gpt-4o", "--data-dir", str(tmp_path), env={"TRACEHOUSE_LOG_LEVEL": "debug"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"TRACEHOUSE_GRPC_PORT": "abc"}, ("TRACEHOUSE_GRPC_PORT", "must be an integer", "'abc'")),
        ({"TRACEHOUSE_GRPC_PROT": "9999"}, ("TRACEHOUSE_GRPC_PROT", "did you mean TRACEHOUSE_GRPC_PORT")),
        ({"TRACEHOUSE_LOG_LEVEL": "chatty"}, ("TRACEHOUSE_LOG_LEVEL", "'chatty'")),
        ({"TRACEHOUSE_CONFIG": "/nonexistent/tracehouse.toml"}, ("/nonexistent/tracehouse.toml does not exist",)),
    ],
)
def test_bad_environment(tmp_path, env, fragments):
    assert_one_clear_line(serve(tmp_path, env=env), *fragments, code=2)


def test_a_port_in_use(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        for flag, what in (("--grpc-port", "OTLP/gRPC"), ("--http-port", "OTLP/HTTP"), ("--query-port", "query")):
            result = serve(tmp_path, flag, port)
            assert_one_clear_line(result, f"port {port}", what, "already in use", flag, code=1)
            assert not (tmp_path / "data").exists()  # refused before it made a data dir


def test_an_address_not_on_this_machine(tmp_path):
    result = serve(tmp_path, "--host", "192.0.2.1")  # TEST-NET-1: never a local address
    assert_one_clear_line(result, "cannot listen on 192.0.2.1", "--host", code=1)


def test_migrate_against_an_unreachable_server():
    url = f"http://ingest:s3cret@127.0.0.1:{_free_port()}/tracehouse"
    message = assert_one_clear_line(tracehouse("migrate", "--clickhouse-url", url), code=1)
    assert "cannot open the store at http://ingest:***@127.0.0.1" in message
    assert "Connection refused" in message and "--clickhouse-url" in message
    assert "s3cret" not in message


def test_sql_against_an_unreachable_server():
    url = f"http://127.0.0.1:{_free_port()}/tracehouse"
    assert_one_clear_line(tracehouse("sql", "--clickhouse-url", url, "SELECT 1"), "Connection refused", code=1)


@pytest.mark.parametrize(
    "command",
    [
        ("sql", "SELECT 1"),
        ("report",),
        ("export", "--format", "jsonl", "--out", "out.jsonl"),
        ("forget", "--user", "a"),
    ],
)
def test_a_read_on_a_data_dir_with_no_store_says_so_and_creates_nothing(tmp_path, command):
    """Run from the wrong directory, `tracehouse sql` said "no store" but left an empty .tracehouse/data (its
    lock file and temp dir) behind; report and export said it as a panel's or a flag's error ("--where: no
    store")."""
    result = tracehouse(*command, cwd=tmp_path)
    message = assert_one_clear_line(result, "no store in .tracehouse/data", "start `tracehouse serve` first", code=1)
    assert "panel" not in message and "--where" not in message, message
    assert list(tmp_path.iterdir()) == []


def test_a_data_dir_that_is_a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("")
    for command in (("serve", "--grpc-port", "0", "--http-port", "0"), ("migrate",), ("sql", "SELECT 1")):
        result = tracehouse(*command, "--data-dir", str(path))
        assert_one_clear_line(result, f"cannot use {path} as the data dir", "not a directory", "--data-dir", code=2)


def test_a_data_dir_under_a_missing_root():
    result = tracehouse("migrate", "--data-dir", "/proc/no-such-dir/data")
    assert_one_clear_line(result, "/proc/no-such-dir/data", "--data-dir", code=2)


@pytest.fixture
def read_only_dir(tmp_path):
    path = tmp_path / "ro"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only file system here")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_a_data_dir_on_a_read_only_file_system(read_only_dir):
    for data_dir in (read_only_dir, read_only_dir / "sub"):
        for command in (("serve", "--grpc-port", "0", "--http-port", "0"), ("migrate",), ("sql", "SELECT 1")):
            result = tracehouse(*command, "--data-dir", str(data_dir))
            if command[0] == "sql" and not data_dir.exists():  # a read of a data dir that is not there
                assert_one_clear_line(result, f"no store in {data_dir}", code=1)
                continue
            assert_one_clear_line(result, str(data_dir), "read-only file system", "--data-dir", code=2)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def test_tls_files_that_are_not_a_certificate_and_its_key(tmp_path):
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    cert, key, other_key = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "other.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t", "-keyout", key, "-out", cert
    )
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", other_key)

    result = serve(tmp_path, "--tls-cert-file", str(not_pem), "--tls-key-file", str(key))
    assert_one_clear_line(result, "tls_cert_file", str(not_pem), "not a PEM certificate", code=2)
    result = serve(tmp_path, "--tls-cert-file", str(cert), "--tls-key-file", str(not_pem))
    assert_one_clear_line(result, "tls_key_file", str(not_pem), "not a PEM private key", code=2)
    result = serve(tmp_path, "--tls-cert-file", str(cert), "--tls-key-file", str(other_key))
    assert_one_clear_line(result, "do not load as a pair", "the key must be the certificate's", code=2)


def test_a_price_file_with_a_syntax_error(tmp_path):
    price_file = tmp_path / "prices.toml"
    price_file.write_text("[[price]]\nmodel = \n")
    result = serve(tmp_path, env={"TRACEHOUSE_PRICE_FILE": str(price_file)})
    assert_one_clear_line(result, f"price file {price_file}", "not valid TOML", "line 2", code=2)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("grpc_prot = 9999\n", ("unknown setting 'grpc_prot'", "did you mean 'grpc_port'?")),
        ("[sampling]\nslow_m = 100\n", ("[sampling]", "'slow_m'", "did you mean 'slow_ms'?")),
        ("[pricing]\nfile = 'p.toml'\n", ("[pricing]", "'file'", "known: price_file")),
        ("[redaction]\nenabeld = false\n", ("[redaction]", "'enabeld'", "did you mean 'enabled'?")),
        (
            "[redaction.content_free]\nservice = ['batch']\n",
            ("[redaction.content_free]", "'service'", "did you mean 'services'?"),
        ),
        ("grpc_port = [\n", ("not valid TOML",)),
    ],
)
def test_a_config_file_with_a_mistake(tmp_path, text, fragments):
    config = tmp_path / "tracehouse.toml"
    config.write_text(text)
    assert_one_clear_line(serve(tmp_path, "--config", str(config)), *fragments, code=2)
    assert not (tmp_path / "data" / "clickhouse").exists()


def test_version_is_the_installed_distributions():
    import tomllib
    from importlib.metadata import version

    result = tracehouse("--version")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == f"tracehouse {version('tracehouse')}\n"
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    assert version("tracehouse") == project["version"]  # the editable install is of this checkout


@pytest.mark.parametrize(
    ("args", "commands"),
    [
        (
            (),
            ["serve", "migrate", "prices", "sql", "report", "retention", "forget", "review", "replay", "prompts"]
            + ["export"],
        ),
        (("prices",), ["show", "unknown", "reprice"]),
    ],
)
def test_no_command_lists_the_commands_one_line_each(args, commands):
    """Like docker, kubectl and cargo: the commands on stdout and exit 0, not a usage error."""
    from tracehouse.collector.cli import build_parser

    result = tracehouse(*args)
    assert result.returncode == 0 and result.stderr == "", result.stderr

    def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    parser = build_parser()
    for word in args:
        parser = subcommands(parser).choices[word]
    helps = {a.dest: a.help for a in subcommands(parser)._choices_actions}
    listed = [line.split(None, 1) for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == [[name, helps[name]] for name in commands]
    assert result.stdout.startswith(f"usage: {' '.join(('tracehouse', *args))} COMMAND")
    assert "--help" in result.stdout.splitlines()[-1]


def test_an_unknown_command_is_one_line():
    assert_one_clear_line(tracehouse("serv"), "invalid choice: 'serv'", "tracehouse --help", code=2)
