"""The one configuration object: defaults < config file (TOML) < TRACEHOUSE_* env vars < CLI flags.

Top-level settings are the fields of `Config`; each field's metadata (help, bounds, which commands
take it as a flag) is the one source for the flags, `--help` and the README's configuration table.
Each stage's `[table]` is a `Section` declared beside the stage that reads it and parsed here, once,
when the configuration loads: a mistake anywhere stops every command before it touches anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import logging
import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracehouse.collector.auth import API_KEYS, READ_KEYS, ApiKeys, TenantReadKeys
from tracehouse.collector.encryption import ENCRYPTION, SHARED_MEMORY, EncryptionSettings
from tracehouse.collector.retention import RETENTION, RetentionSettings
from tracehouse.collector.settings import ConfigError, Section, as_bool, check_keys, did_you_mean
from tracehouse.collector.stages.content_copies import CONTENT_COPIES, ContentCopiesSettings
from tracehouse.collector.stages.price.settings import PRICING, PricingSettings
from tracehouse.collector.stages.redact.settings import REDACTION, RedactionSettings
from tracehouse.collector.stages.sample import SAMPLING, SamplingSettings

__all__ = ["Config", "ConfigError", "check_keys", "default", "did_you_mean", "load_config", "parse_config"]

ENV_PREFIX = "TRACEHOUSE_"
MIB = 1024 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
STORE_SCHEMES = ("chdb", "http", "https")
# The config file's tables, each parsed beside the stage (or, for api_keys, the module) that reads it.
SECTIONS: tuple[Section[Any], ...] = (
    API_KEYS,
    READ_KEYS,
    SAMPLING,
    CONTENT_COPIES,
    PRICING,
    REDACTION,
    RETENTION,
    ENCRYPTION,
)
CONFIG_ENV = ENV_PREFIX + "CONFIG"
# TRACEHOUSE_* variables that are not a top-level setting: the config file's path and the sections'.
SECTION_ENV = (CONFIG_ENV, *(name for section in SECTIONS for name in section.env))
# Read by deploy/ (compose, Grafana provisioning), not by the collector: often set in the same shell.
DEPLOY_ENV = (
    "TRACEHOUSE_INGEST_PASSWORD",
    "TRACEHOUSE_GRAFANA_PASSWORD",
    "TRACEHOUSE_DAILY_BUDGET_USD",
    "TRACEHOUSE_MIN_USER_SCORE",
    "TRACEHOUSE_ALERT_RULES_TEMPLATE",
    "TRACEHOUSE_ALERT_RULES_DIR",
)
# An unknown variable this close to a known name (difflib ratio of the part after the prefix) is a
# typo and stops the command: a misspelled TRACEHOUSE_API_KEYS would leave the collector open.
ENV_TYPO_RATIO = 0.85

# Which commands take a setting as a flag. `prices` covers its subcommands.
EVERY_COMMAND = (
    "serve",
    "migrate",
    "sql",
    "prices",
    "retention",
    "report",
    "forget",
    "review",
    "prompts",
    "replay",
    "export",
)
SERVE = ("serve",)
READS = (
    "serve",
    "sql",
    "report",
    "review",
    "replay",
    "export",
)  # the query limits bind the endpoint (serve) and reads on the store

log = logging.getLogger("tracehouse")


def setting(
    default: Any,
    help: str,
    *,
    commands: tuple[str, ...] = SERVE,
    low: float | None = None,
    high: float | None = None,
    shown: str | None = None,
    note: str = "",
) -> Any:
    """A top-level setting: `help` says what it is, `note` follows the default in --help; `shown`
    replaces the default in --help and the README; `commands` () means config file and env only."""
    metadata = {"help": help, "commands": commands, "low": low, "high": high, "shown": shown, "note": note}
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    data_dir: Path = setting(
        Path(".tracehouse/data"),
        "data directory: the embedded store, spool, dead letters, collector.json",
        commands=EVERY_COMMAND,
    )
    clickhouse_url: str = setting(
        "",
        "ClickHouse: chdb:///abs/path or http(s)://user:pass@host:8123/db",
        commands=EVERY_COMMAND,
        shown="the embedded store, chdb://<data-dir>/clickhouse",
    )
    cluster: str = setting(
        "",
        "ClickHouse cluster: NAME (migrations run ON CLUSTER with Replicated engines) or sharded:NAME"
        " (also Distributed tables sharded by trace id, schema/sharded.sql)",
        commands=EVERY_COMMAND,
        shown="none",
    )
    host: str = setting("127.0.0.1", "address the OTLP receivers listen on")
    grpc_port: int = setting(4317, "OTLP/gRPC port", note="0 picks a free one", low=0, high=65535)
    http_port: int = setting(4318, "OTLP/HTTP port", note="0 picks a free one", low=0, high=65535)
    query_host: str = setting("127.0.0.1", "address of the read-only SQL endpoint that `tracehouse sql` uses")
    query_port: int = setting(0, "read-only SQL endpoint port", low=0, high=65535, shown="a free one")
    query_read_key: str = setting(
        "",
        "a fixed key that may only read through the SQL endpoint: a provisioned Grafana's password"
        " (collector.json's key, new each start, does everything)",
        commands=(),
        shown="none",
    )
    query_max_execution_seconds: float = setting(
        30.0, "longest read query on the SQL surface, in seconds", commands=READS, low=0.1
    )
    query_max_memory_bytes: int = setting(2 * 1024 * MIB, "memory of one read query", commands=READS, low=MIB)
    query_max_result_rows: int = setting(1_000_000, "rows of one read's result", commands=READS, low=1)
    query_max_result_bytes: int = setting(256 * MIB, "bytes of one read's result", commands=READS, low=1)
    max_request_bytes: int = setting(64 * MIB, "largest OTLP request after decompression", low=1)
    max_connections: int = setting(
        0,
        "connections each OTLP listener holds, and the SQL endpoint up to 256",
        note="0: 40% of the open-file limit, at most 10000",
        low=0,
    )
    handshake_timeout_seconds: float = setting(
        10.0, "seconds a new connection has to finish TLS and send its first request (HTTP) or SETTINGS (gRPC)", low=0.1
    )
    idle_timeout_seconds: float = setting(
        60.0, "seconds after which an OTLP or SQL-endpoint connection with no request in progress is closed", low=0.1
    )
    max_connection_age_seconds: float = setting(
        1800.0, "seconds after which a gRPC connection is asked to reconnect", low=1
    )
    batch_max_rows: int = setting(50_000, "rows per ClickHouse insert", low=1)
    batch_max_bytes: int = setting(
        64 * MIB,
        "encoded rows per ClickHouse insert, in bytes (an insert ends at whichever of this and batch_max_rows comes"
        " first; a bigger single request is inserted alone)",
        low=MIB,
    )
    batch_linger_ms: int = setting(
        2000,
        "with the spool, a small batch of spans waits for companions until this long after the previous insert"
        " began (one after a quiet spell goes at once; one that can grow no more, a cap reached or another table or"
        " layout next, too)",
        note="0: insert whatever has arrived at once; without the spool there is no linger",
        low=0,
        high=60_000,
    )
    workers: int = setting(
        0,
        "processes for parse, decode, stages and encode",
        note="0: in the main process",
        low=0,
        high=64,
    )
    worker_stall_seconds: float = setting(
        5.0,
        "a worker process that gave no sign of life this long (stopped, or stuck in a call that holds the"
        " interpreter) is killed and the workers restarted; a long request is not a stall",
        note="0: never",
        low=0,
    )
    spool: bool = setting(True, "acknowledge once fsynced in the spool (on) or only once inserted (off)")
    spool_budget_bytes: int = setting(1024 * MIB, "unsent bytes the spool may hold", low=1)
    max_inflight_bytes: int = setting(256 * MIB, "request bytes being processed at once", low=1)
    shutdown_grace_seconds: float = setting(10.0, "time to finish and drain on SIGTERM", low=0)
    tls_cert_file: str = setting("", "PEM certificate chain: both OTLP receivers speak TLS", shown="off")
    tls_key_file: str = setting("", "PEM private key for the TLS certificate", shown="off")
    fault_store_unavailable_file: str = setting(
        "", "fault hook for tests: the embedded store is down while this file exists", commands=(), shown="off"
    )
    fault_spool_read_error_file: str = setting(
        "", "fault hook for tests: the drainer's spool reads fail while this file exists", commands=(), shown="off"
    )
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL", commands=EVERY_COMMAND)
    # The sections: one typed object per config-file table, parsed by its owner.
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    query_read_keys: TenantReadKeys = field(default_factory=TenantReadKeys)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    content_copies: ContentCopiesSettings = field(default_factory=ContentCopiesSettings)
    pricing: PricingSettings = field(default_factory=PricingSettings)
    redaction: RedactionSettings = field(default_factory=RedactionSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    encryption: EncryptionSettings = field(default_factory=EncryptionSettings)

    @property
    def store_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{self.store_dir.resolve()}"

    @property
    def is_embedded(self) -> bool:
        return self.store_url.startswith("chdb:")

    # The data dir's layout, named once.
    @property
    def store_dir(self) -> Path:
        """The embedded ClickHouse store."""
        return self.data_dir / "clickhouse"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def deadletter_dir(self) -> Path:
        """Rows ClickHouse refused as invalid, kept for a person to look at."""
        return self.data_dir / "deadletter"

    @property
    def temp_dir(self) -> Path:
        """The ClickHouse driver's insert files and TMPDIR: inside the private data dir; with encryption on,
        in memory (/dev/shm), since an insert file holds the rows in the clear."""
        if self.encryption.enabled:
            tag = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
            return Path(SHARED_MEMORY) / f"tracehouse-{os.getuid()}-{tag}"
        return self.data_dir / "tmp"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "store.lock"

    @property
    def endpoint_file(self) -> Path:
        """Where a running collector advertises its query endpoint."""
        return self.data_dir / "collector.json"


SETTINGS = {f.name: f for f in dataclasses.fields(Config) if "help" in f.metadata}
_SECTIONS_BY_TABLE = {section.table: section for section in SECTIONS}
_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "Path": "a path", "str": "a string"}


def default(name: str) -> Any:
    """A setting's default: the one source for the code, `--help` and the README."""
    return SETTINGS[name].default


def shown_default(name: str) -> str:
    """A setting's default as people read it: 64 MiB, on, 10."""
    spec = SETTINGS[name]
    if spec.metadata["shown"] is not None:
        return spec.metadata["shown"]
    value = spec.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int) and name.endswith("_bytes"):
        for unit, size in (("GiB", 1024**3), ("MiB", 1024**2)):
            if value and value % size == 0:
                return f"{value // size} {unit}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def help_text(name: str) -> str:
    """The setting's help with its default, as `--help` prints it."""
    meta = SETTINGS[name].metadata
    note = f"; {meta['note']}" if meta["note"] else ""
    return f"{meta['help']} (default {shown_default(name)}{note})"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """`--config` and a flag for every setting `command` takes; values are checked by load_config."""
    parser.add_argument("--config", help=f"TOML config file (also {CONFIG_ENV})")
    for name, spec in SETTINGS.items():
        if command not in spec.metadata["commands"]:
            continue
        text = help_text(name).replace("%", "%%")  # argparse formats help with %
        if spec.type == "bool":
            parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag(name), help=text)


def load_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """The Config for a parsed command line: its --config file, the environment, its flags."""
    overrides = {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}
    return load_config(getattr(args, "config", None), overrides, environ)


def markdown_table() -> str:
    """The README's configuration table, generated from the fields and the sections."""
    rows = ["| setting | flag | env | default |", "| --- | --- | --- | --- |"]
    for name, spec in SETTINGS.items():
        meta = spec.metadata
        text = f"{meta['help']} ({meta['note']})" if meta["note"] else meta["help"]
        where = f"`{flag(name)}`" if spec.metadata["commands"] else "config file"
        rows.append(f"| `{name}`: {text} | {where} | `{env_var(name)}` | {shown_default(name)} |")
    for section in SECTIONS:
        env = ", ".join(f"`{name}`" for name in section.env) or "none"
        rows.append(f"| {section.summary} | `[{section.table}]` table | {env} | see below |")
    return "\n".join(rows)


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = SETTINGS[name].type
    try:
        if isinstance(value, dict | list):
            raise ValueError
        if kind == "Path":
            return Path(str(value)).expanduser()
        if kind == "int":
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "bool":
            return as_bool(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} must be {_KINDS.get(kind, kind)}, got {value!r}") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from None


def _check_environment(env: Mapping[str, str]) -> None:
    """Stop on a near-miss of a known TRACEHOUSE_* name; warn (one line each) about other unknown ones."""
    known = [env_var(name) for name in SETTINGS] + list(SECTION_ENV)
    by_suffix = {name.removeprefix(ENV_PREFIX): name for name in known}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in known or var in DEPLOY_ENV:
            continue
        suffix = var.removeprefix(ENV_PREFIX)
        close = difflib.get_close_matches(suffix, by_suffix, n=1, cutoff=0.6)
        if close and difflib.SequenceMatcher(None, suffix, close[0]).ratio() >= ENV_TYPO_RATIO:
            raise ConfigError(
                f"{var} is not a tracehouse setting; did you mean {by_suffix[close[0]]}? (rename or unset it)"
            )
        hint = f"; did you mean {by_suffix[close[0]]}?" if close else ""
        log.warning("environment variable %s is not a tracehouse setting and is ignored%s", var, hint)


def _check_store_url(url: str, source: str) -> None:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in STORE_SCHEMES:
        raise ConfigError(
            f"{source}: {url.split('@')[-1] if '@' in url else url!r} is not a ClickHouse URL; use chdb:///absolute/path"
            " for the embedded store or http(s)://user:password@host:8123/database for a server"
        )
    if scheme.lower() == "chdb":
        if not rest.startswith("/"):
            raise ConfigError(f"{source}: a chdb URL needs an absolute path (chdb:///var/lib/tracehouse), got {url!r}")
    elif not rest.split("/", 1)[0].rpartition("@")[2]:
        raise ConfigError(f"{source}: the ClickHouse URL has no host, e.g. http://user:password@clickhouse:8123/db")


READ_KEY_MIN_LENGTH = 16


def _check_read_key(key: str, source: str) -> None:
    """A key people type into Grafana: printable, no spaces, long enough not to be guessed."""
    if len(key) < READ_KEY_MIN_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
        raise ConfigError(
            f"{source}: query_read_key must be at least {READ_KEY_MIN_LENGTH} printable ASCII characters"
            " without spaces (e.g. the output of `openssl rand -hex 16`)"
        )


def _check_tls(cert_file: str, key_file: str) -> None:
    """A certificate and key that load together, checked before any port opens."""
    for name, path, marker in (
        ("tls_cert_file", cert_file, b"-----BEGIN CERTIFICATE-----"),
        ("tls_key_file", key_file, b"PRIVATE KEY-----"),
    ):
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
        if marker not in text:
            kind = "certificate" if name == "tls_cert_file" else "private key"
            raise ConfigError(f"{name}: {path} is not a PEM {kind} (no {marker.decode().strip('-')} block)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise ConfigError(
            f"tls_cert_file {cert_file} and tls_key_file {key_file} do not load as a pair ({reason}):"
            " the key must be the certificate's, unencrypted PEM"
        ) from None


def _validate(config: Config, sources: dict[str, str]) -> None:
    def where(name: str) -> str:
        return sources.get(name, name)

    for name, spec in SETTINGS.items():
        low, high = spec.metadata["low"], spec.metadata["high"]
        if low is None and high is None:
            continue
        value = getattr(config, name)
        if (low is not None and value < low) or (high is not None and value > high):
            limit = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{where(name)}: {name} must be {limit}, got {value}")
    ports = [(n, getattr(config, n)) for n in ("grpc_port", "http_port") if getattr(config, n)]
    if len(ports) == 2 and ports[0][1] == ports[1][1]:
        raise ConfigError(f"grpc_port and http_port are both {ports[0][1]}: the two receivers need two ports")
    level = config.log_level.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{where('log_level')}: log level {config.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    config.log_level = level
    if config.clickhouse_url:
        _check_store_url(config.clickhouse_url, where("clickhouse_url"))
    if config.cluster and config.is_embedded:
        raise ConfigError("cluster needs a ClickHouse server: set clickhouse_url to one of the cluster's nodes")
    if config.cluster:
        from tracehouse.collector.store import cluster_name

        try:
            cluster_name(config.cluster)
        except ValueError as exc:
            raise ConfigError(f"{where('cluster')}: {exc} (NAME or sharded:NAME)") from None
    if config.query_read_key:
        _check_read_key(config.query_read_key, where("query_read_key"))
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ConfigError("tls_cert_file and tls_key_file go together")
    if config.tls_cert_file:
        _check_tls(config.tls_cert_file, config.tls_key_file)


def parse_config(
    document: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    source: str = "config",
) -> Config:
    """The Config from a config document (the parsed TOML file), TRACEHOUSE_* variables and overrides.

    Every key must be known: a misspelled setting or table is an error naming the nearest valid one.
    Each section is parsed by its owner, with the environment, exactly once."""
    env = os.environ if environ is None else environ
    _check_environment(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    tables: dict[str, Mapping[str, Any]] = {}
    for key, value in document.items():
        name = key.replace("-", "_")
        if name in SETTINGS:
            if isinstance(value, dict):
                raise ConfigError(f"{source}: {name} is a setting, not a table; write {name} = ...")
            values[name] = _coerce(name, value, source)
            sources[name] = f"{name} in {source.removeprefix('config file ')}"
        elif name in _SECTIONS_BY_TABLE:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {name} must be a table: [{name}]")
            tables[name] = value
        else:
            hint = did_you_mean(name, [*SETTINGS, *_SECTIONS_BY_TABLE])
            raise ConfigError(f"{source}: unknown setting {key!r}{hint}")
    for name in SETTINGS:
        raw = env.get(env_var(name))
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, env_var(name))
            sources[name] = env_var(name)
    for name, value in (overrides or {}).items():
        if name not in SETTINGS:
            raise ConfigError(f"unknown setting {name!r}{did_you_mean(name, SETTINGS)}")
        if value is not None:
            values[name] = _coerce(name, value, flag(name))
            sources[name] = flag(name)
    for section in SECTIONS:
        values[section.table] = section.parse(tables.get(section.table, {}), env)
    config = Config(**values)
    _validate(config, sources)
    return config


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config from a TOML file (or TRACEHOUSE_CONFIG), TRACEHOUSE_* variables and overrides."""
    env = os.environ if environ is None else environ
    config_file = config_file or env.get(CONFIG_ENV)
    if not config_file:
        return parse_config({}, overrides, env)
    path = Path(config_file)
    return parse_config(_read_file(path), overrides, env, source=f"config file {path}")
