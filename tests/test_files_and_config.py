"""What the collector writes is its user's alone and stays in its data dir; a setting nobody reads is an error.

A real collector runs with umask 022 and TMPDIR pointing at an empty directory: after spans went
through the spool into chDB, no file or directory under the data dir is open to group or others, and
nothing was ever created in TMPDIR (its mtime would move even for a file created and removed).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from collector_process import CollectorProcess, sql_rows, wait_drained
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracehouse.collector.auth import Authenticator
from tracehouse.collector.config import (
    DEPLOY_ENV,
    SECTION_ENV,
    SECTIONS,
    SETTINGS,
    Config,
    ConfigError,
    env_var,
    flag,
    help_text,
    load_config,
    markdown_table,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "the plaintext prompt nobody else may read"


def _spans(count: int) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "private-files"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("files")
    for i in range(count):
        with tracer.start_as_current_span(f"llm-{i}", attributes={"input.value": SECRET, "llm.model_name": "gpt-4o"}):
            pass
    return list(memory.get_finished_spans())


def _tracehouse(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def _open_to_others(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(root)} {stat.filemode(mode)}")
    return found


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A collector started under umask 022 with TMPDIR at an empty dir, fed spans, drained and stopped."""
    base = tmp_path_factory.mktemp("private")
    shared_tmp = base / "shared-tmp"
    shared_tmp.mkdir()
    before = shared_tmp.stat().st_mtime_ns
    data_dir = base / "data"
    previous = os.umask(0o022)
    try:
        collector = CollectorProcess(data_dir, "--batch-max-rows", "50", env={"TMPDIR": str(shared_tmp)}).start()
        try:
            private_tmp = data_dir / "tmp"
            tmp_created = private_tmp.stat().st_mtime_ns
            exporter = HttpExporter(endpoint=collector.traces_url, timeout=30)
            spans = _spans(200)
            for i in range(0, len(spans), 40):
                assert exporter.export(spans[i : i + 40]) == SpanExportResult.SUCCESS
            wait_drained(data_dir)
        finally:
            collector.stop()
        # With no collector running, `tracehouse sql` opens the store itself (and migrate writes to it).
        sql = _tracehouse(
            "sql", "--data-dir", str(data_dir), "--format", "tsv", "SELECT count() FROM otel_traces",
            env={"TMPDIR": str(shared_tmp)},
        )  # fmt: skip
        migrate = _tracehouse("migrate", "--data-dir", str(base / "fresh"), env={"TMPDIR": str(shared_tmp)})
    finally:
        os.umask(previous)
    return {
        "data_dir": data_dir,
        "fresh": base / "fresh",
        "shared_tmp": shared_tmp,
        "shared_tmp_untouched": shared_tmp.stat().st_mtime_ns == before,
        "private_tmp_used": private_tmp.stat().st_mtime_ns != tmp_created,
        "log": collector.log(),
        "sql": sql,
        "migrate": migrate,
    }


def test_nothing_in_the_data_dir_is_open_to_group_or_others(ingested):
    data_dir = ingested["data_dir"]
    assert ingested["sql"].returncode == 0, ingested["sql"].stderr
    assert ingested["sql"].stdout.splitlines()[-1] == "200"
    # Not vacuous: the spool, the store's parts and the lock are all there.
    assert any((data_dir / "spool").iterdir())
    assert list((data_dir / "clickhouse").rglob("*.bin")) or list((data_dir / "clickhouse").rglob("data.*"))
    assert (data_dir / "store.lock").exists()
    assert _open_to_others(data_dir) == []
    assert ingested["migrate"].returncode == 0, ingested["migrate"].stderr
    assert _open_to_others(ingested["fresh"]) == []
    # The data dir CollectorProcess made with umask 022 was 0755: the collector closed it and said so.
    assert "was readable by other users; it is now 0700" in ingested["log"]


def test_insert_files_stay_in_the_data_dir_and_are_cleaned(ingested):
    assert list(ingested["shared_tmp"].iterdir()) == []
    assert ingested["shared_tmp_untouched"], "something was created (and maybe removed) in TMPDIR"
    assert ingested["private_tmp_used"], "the chDB driver's insert files did not go through <data_dir>/tmp"
    assert list((ingested["data_dir"] / "tmp").iterdir()) == []


def test_a_crashed_runs_temporary_files_are_removed_at_start(start_collector, tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "tmp").mkdir(parents=True)
    leftover = data_dir / "tmp" / "tmpabc.native"
    leftover.write_text(SECRET)
    (data_dir / "tmp" / "pymp-old").mkdir()
    collector = start_collector(data_dir=data_dir)
    assert not leftover.exists() and not (data_dir / "tmp" / "pymp-old").exists()
    assert sql_rows(collector.data_dir, "SELECT 1 AS one") == [{"one": 1}]


# --- settings nobody reads --------------------------------------------------------------------


def _config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tracehouse.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[api_key]\n"k1" = "acme"\n', "unknown setting 'api_key'; did you mean 'api_keys'?"),
        ("grpc_prot = 9999\n", "unknown setting 'grpc_prot'; did you mean 'grpc_port'?"),
        ("[redacton]\nenabled = false\n", "did you mean 'redaction'?"),
        ("[prices]\nprice_file = 'p.toml'\n", "did you mean 'pricing'?"),
        ("api_keys = 'k1=acme'\n", "api_keys must be a table"),
        ("[grpc_port]\n", "grpc_port is a setting, not a table"),
        ("grpc_port = 4317.5\n", "grpc_port must be an integer"),
        ("log_level = 'LOUD'\n", "log level 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ],
)
def test_unknown_or_mistyped_settings_in_the_file_are_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_config_file(tmp_path, text), environ={})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "[sampling]\ncontent_shar = 0.5\n",
            "[sampling]: unknown setting 'content_shar'; did you mean 'content_share'?",
        ),
        ("[pricing]\nprice_fil = 'p.toml'\n", "[pricing]: unknown setting 'price_fil'; did you mean 'price_file'?"),
    ],
)
def test_unknown_settings_inside_tables_are_errors(tmp_path, table, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_config_file(tmp_path, table), environ={})


def test_known_tables_and_hyphenated_keys_load(tmp_path):
    text = 'grpc-port = 5000\nlog_level = "debug"\n[api_keys]\n"k1" = "acme"\n[sampling]\ncontent_share = 0.5\n'
    config = load_config(_config_file(tmp_path, text), environ={})
    assert (config.grpc_port, config.log_level) == (5000, "DEBUG")
    assert Authenticator.from_config(config).tenant("Bearer k1", None) == "acme"
    assert config.sampling.content_share == 0.5


def test_a_misspelled_environment_variable_is_an_error_and_a_far_one_a_warning(caplog):
    with pytest.raises(
        ConfigError, match="TRACEHOUSE_GRPC_PROT is not a tracehouse setting; did you mean TRACEHOUSE_GRPC_PORT"
    ):
        load_config(environ={"TRACEHOUSE_GRPC_PROT": "9999"})
    with pytest.raises(ConfigError, match="did you mean TRACEHOUSE_API_KEYS"):
        load_config(environ={"TRACEHOUSE_API_KEY": "k=acme"})
    with caplog.at_level("WARNING", logger="tracehouse"):
        config = load_config(environ={"TRACEHOUSE_HOSTNAME": "box", "TRACEHOUSE_GRAFANA_PASSWORD": "x"})
    assert config.host == Config().host
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "environment variable TRACEHOUSE_HOSTNAME is not a tracehouse setting and is ignored; "
        "did you mean TRACEHOUSE_HOST?"
    ]


def test_every_tracehouse_variable_the_code_reads_belongs_to_a_setting_or_a_section():
    """A variable read anywhere is a top-level setting's or declared by the Section that reads it."""
    fields = {env_var(name) for name in SETTINGS}
    read = {}
    for path in (ROOT / "collector").rglob("*.py"):
        if path.name == "config.py":
            continue
        for name in re.findall(r'"(TRACEHOUSE_[A-Z_]+)"', path.read_text()):
            read.setdefault(name, path.relative_to(ROOT).as_posix())
    declared = fields | set(SECTION_ENV)
    assert {name: where for name, where in read.items() if name not in declared} == {}
    assert not set(DEPLOY_ENV) & declared
    owners = {name: section.table for section in SECTIONS for name in section.env}
    assert len(owners) == sum(len(section.env) for section in SECTIONS), "a variable read by two sections"


def test_the_readme_configuration_table_is_generated_from_the_settings():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, (
        "regenerate it: python -c 'from tracehouse.collector.config import *; print(markdown_table())'"
    )
    for name in SETTINGS:
        assert f"`{env_var(name)}`" in readme


@pytest.mark.parametrize(
    "command",
    [
        ("serve",),
        ("migrate",),
        ("sql",),
        ("prices", "show"),
        ("prices", "unknown"),
        ("prices", "reprice"),
        ("retention", "status"),
        ("report",),
        ("forget",),
        ("review", "list"),
        ("review", "show"),
        ("review", "set"),
    ],
)
def test_every_subcommand_takes_the_flags_of_its_settings(command):
    """One set of flags, derived from the fields: `prices` used to lack --cluster."""
    from tracehouse.collector.cli import build_parser

    parser = build_parser()
    for word in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    flags = {option for action in parser._actions for option in action.option_strings}
    expected = {flag(name) for name, spec in SETTINGS.items() if command[0] in spec.metadata["commands"]}
    assert {"--config", "--data-dir", "--clickhouse-url", "--cluster", "--log-level"} <= flags
    assert expected <= flags
    assert {flag(name) for name in SETTINGS} & flags == expected
    text = " ".join(parser.format_help().split())
    for name, spec in SETTINGS.items():
        if command[0] in spec.metadata["commands"]:
            assert help_text(name) in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://bar", "is not a ClickHouse URL"),
        ("localhost:8123", "is not a ClickHouse URL"),
        ("chdb://relative/store", "a chdb URL needs an absolute path"),
        ("http://", "has no host"),
    ],
)
def test_store_urls_are_checked(url, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"clickhouse_url": url}, environ={})


@pytest.mark.parametrize("cluster", ["bad name!", "sharded:", "sharded:a;DROP", "x'y"])
def test_cluster_names_are_checked_when_the_config_loads(cluster):
    """Not first at migrate, where the collector's writer would retry a bad name forever."""
    with pytest.raises(ConfigError, match="is not a plain ClickHouse identifier.*NAME or sharded:NAME"):
        load_config(overrides={"clickhouse_url": "http://u:p@ch:8123/db", "cluster": cluster}, environ={})
    for good in ("tracehouse", "sharded:tracehouse", "{cluster}"):
        assert load_config(overrides={"clickhouse_url": "http://u:p@ch:8123/db", "cluster": good}, environ={})


def test_store_url_errors_do_not_show_the_password():
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"clickhouse_url": "htp://ingest:s3cret@ch:8123/db"}, environ={})
    assert "s3cret" not in str(caught.value)


def test_serve_help_shows_the_defaults_the_code_uses():
    from tracehouse.collector.cli import build_parser

    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    text = " ".join(serve.format_help().split())
    defaults = Config()
    assert f"rows per ClickHouse insert (default {defaults.batch_max_rows})" in text
    assert f"(default {defaults.grpc_port};" in text and f"(default {defaults.http_port};" in text
    assert "(default 64 MiB)" in text and "(default 1 GiB)" in text and "(default 256 MiB)" in text


def test_a_misspelled_api_keys_table_stops_serve(tmp_path):
    """Security: `[api_key]` used to be ignored, leaving the collector open to anyone."""
    config = _config_file(tmp_path, '[api_key]\n"secret-key" = "acme"\n')
    result = subprocess.run(
        [*CollectorProcess(tmp_path / "data").command(), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tracehouse: config file {config}: unknown setting 'api_key'; did you mean 'api_keys'?"
    ]
    assert not (tmp_path / "data" / "collector.json").exists()


def test_a_second_collector_names_the_pid_that_holds_the_store(collector):
    result = subprocess.run(collector.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "tracehouse:" in line]
    pid = collector.proc.pid
    assert f"is open in process {pid}; stop process {pid}, or use another --data-dir" in line
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the data dir to another user")
def test_a_shared_volume_the_collector_does_not_own_is_used_with_a_warning(tmp_path):
    """A Kubernetes fsGroup volume: group-writable, owned by another user; it cannot be chmodded, and
    that must not stop the collector (what it creates is still owner-only)."""
    data_dir = tmp_path / "volume"
    data_dir.mkdir()
    os.chown(data_dir, 12345, os.getgid())
    data_dir.chmod(0o2775)
    result = _tracehouse("migrate", "--data-dir", str(data_dir), env={})
    assert result.returncode == 0, result.stderr
    assert "is open to its group or others and owned by uid 12345: it stays so" in result.stderr
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o2775
    assert _open_to_others(data_dir / "clickhouse") == []
