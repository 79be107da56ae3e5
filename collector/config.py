"""The one configuration object: defaults < config file (TOML) < TRACEHOUSE_* env vars < CLI flags."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import ssl
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "TRACEHOUSE_"
MIB = 1024 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
STORE_SCHEMES = ("chdb", "http", "https")
# Config-file tables, each read by its stage: api_keys (auth.py), sampling (stages/sample.py),
# pricing (stages/price/pricer.py), redaction (stages/redact/settings.py).
TABLES = ("api_keys", "sampling", "pricing", "redaction")
# TRACEHOUSE_* variables read outside this module (each next to its reader; a test keeps this list whole).
STAGE_ENV = (
    "TRACEHOUSE_CONFIG",
    "TRACEHOUSE_API_KEYS",
    "TRACEHOUSE_CONTENT_SHARE",
    "TRACEHOUSE_PRICE_FILE",
    "TRACEHOUSE_REDACTION",
    "TRACEHOUSE_REDACTION_HASH_SECRET",
)
# Read by deploy/ (compose, Grafana provisioning), not by the collector: often set in the same shell.
DEPLOY_ENV = (
    "TRACEHOUSE_INGEST_PASSWORD",
    "TRACEHOUSE_GRAFANA_PASSWORD",
    "TRACEHOUSE_DAILY_BUDGET_USD",
    "TRACEHOUSE_ALERT_RULES_TEMPLATE",
    "TRACEHOUSE_ALERT_RULES_DIR",
)
# An unknown variable this close to a known name (difflib ratio of the part after the prefix) is a
# typo and stops the command: a misspelled TRACEHOUSE_API_KEYS would leave the collector open.
ENV_TYPO_RATIO = 0.85

log = logging.getLogger("tracehouse")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the setting and the problem."""


@dataclass
class Config:
    data_dir: Path = Path(".tracehouse/data")
    # Empty means the embedded store: chdb://<data_dir>/clickhouse
    clickhouse_url: str = ""
    # A ClickHouse cluster name: migrations run ON CLUSTER with Replicated* engines.
    cluster: str = ""
    host: str = "127.0.0.1"
    grpc_port: int = 4317
    http_port: int = 4318
    # The read-only SQL endpoint used by `tracehouse sql` while the collector owns the store.
    query_host: str = "127.0.0.1"
    query_port: int = 0
    # Limits of every read on the SQL surface (endpoint and `tracehouse sql`), enforced by ClickHouse.
    query_max_execution_seconds: float = 30.0
    query_max_memory_bytes: int = 2 * 1024 * MIB
    query_max_result_rows: int = 1_000_000
    query_max_result_bytes: int = 256 * MIB
    max_request_bytes: int = 64 * MIB
    # Connections each OTLP listener holds at once (0: 40% of the open-file limit, at most 10000).
    max_connections: int = 0
    # A new connection has this long to finish TLS and send its first request (HTTP) or SETTINGS (gRPC).
    handshake_timeout_seconds: float = 10.0
    # An OTLP connection with no request in progress is closed after this long.
    idle_timeout_seconds: float = 60.0
    # gRPC connections are asked to reconnect after this long.
    max_connection_age_seconds: float = 1800.0
    batch_max_rows: int = 50_000
    batch_linger_ms: int = 0
    # Processes that parse, decode, normalize, price, redact and encode (0: in the main process).
    workers: int = 0
    # Acknowledge once fsynced in the spool (true) or only once inserted (false).
    spool: bool = True
    spool_budget_bytes: int = 1024 * MIB
    max_inflight_bytes: int = 256 * MIB
    shutdown_grace_seconds: float = 10.0
    # TLS on both OTLP receivers: PEM certificate chain and private key.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Fault injection for tests of the embedded store: while this file exists the store is "down".
    fault_store_unavailable_file: str = ""
    # Fault injection for the drainer: while this file exists its spool reads fail (EMFILE).
    fault_spool_read_error_file: str = ""
    log_level: str = "INFO"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def is_embedded(self) -> bool:
        return self.store_url.startswith("chdb:")

    @property
    def endpoint_file(self) -> Path:
        """Where a running collector advertises its query endpoint."""
        return self.data_dir / "collector.json"


_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name != "extra"}
_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "Path": "a path", "str": "a string"}
# (lowest, highest) for the numeric settings; None: no bound.
_BOUNDS: dict[str, tuple[float, float | None]] = {
    "grpc_port": (0, 65535),
    "http_port": (0, 65535),
    "query_port": (0, 65535),
    "max_request_bytes": (1, None),
    "batch_max_rows": (1, None),
    "batch_linger_ms": (0, None),
    "workers": (0, 64),
    "spool_budget_bytes": (1, None),
    "max_inflight_bytes": (1, None),
    "shutdown_grace_seconds": (0, None),
    "max_connections": (0, None),
    "handshake_timeout_seconds": (0.1, None),
    "idle_timeout_seconds": (0.1, None),
    "max_connection_age_seconds": (1, None),
    "query_max_execution_seconds": (0.1, None),
    "query_max_memory_bytes": (1 * MIB, None),
    "query_max_result_rows": (1, None),
    "query_max_result_bytes": (1, None),
}


def default(name: str) -> Any:
    """A setting's default: the one source for the code and for `--help`."""
    return _FIELDS[name].default


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean X?' for the nearest known name, or the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(known)}" if known else ""


def check_keys(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """Refuse a table with a key nobody reads (a typo would silently keep the default)."""
    known = set(known)
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r}{did_you_mean(key, known)}")


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].type
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
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
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


def _from_file(path: Path, values: dict[str, Any], sources: dict[str, str], extra: dict[str, Any]) -> None:
    for key, value in _read_file(path).items():
        name = key.replace("-", "_")
        if name in _FIELDS:
            if isinstance(value, dict):
                raise ConfigError(f"config file {path}: {name} is a setting, not a table; write {name} = ...")
            values[name] = _coerce(name, value, f"config file {path}")
            sources[name] = f"{name} in {path}"
        elif name in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"config file {path}: {name} must be a table: [{name}]")
            extra[name] = value
        else:
            hint = did_you_mean(name, [*_FIELDS, *TABLES])
            raise ConfigError(f"config file {path}: unknown setting {key!r}{hint}")


def _check_environment(env: Mapping[str, str]) -> None:
    """Stop on a near-miss of a known TRACEHOUSE_* name; warn (one line each) about other unknown ones."""
    known = [ENV_PREFIX + name.upper() for name in _FIELDS] + list(STAGE_ENV)
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in known or var in DEPLOY_ENV:
            continue
        suffix = var.removeprefix(ENV_PREFIX)
        by_suffix = {name.removeprefix(ENV_PREFIX): name for name in known}
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

    for name, (low, high) in _BOUNDS.items():
        value = getattr(config, name)
        if value < low or (high is not None and value > high):
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
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ConfigError("tls_cert_file and tls_key_file go together")
    if config.tls_cert_file:
        _check_tls(config.tls_cert_file, config.tls_key_file)


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the Config from a TOML file, TRACEHOUSE_* variables and explicit overrides (CLI flags).

    Every key must be known: a misspelled setting or table is an error naming the nearest valid one."""
    env = os.environ if environ is None else environ
    _check_environment(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    extra: dict[str, Any] = {}
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        _from_file(Path(config_file), values, sources, extra)
    for name in _FIELDS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, ENV_PREFIX + name.upper())
            sources[name] = ENV_PREFIX + name.upper()
    for name, value in (overrides or {}).items():
        if value is not None:
            flag = "--" + name.replace("_", "-")
            values[name] = _coerce(name, value, flag)
            sources[name] = flag
    config = Config(**values, extra=extra)
    _validate(config, sources)
    return config
