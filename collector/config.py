"""The one configuration object: defaults < config file (TOML) < TRACEHOUSE_* env vars < CLI flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "TRACEHOUSE_"
MIB = 1024 * 1024


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
    max_request_bytes: int = 64 * MIB
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


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "Path":
            return Path(str(value)).expanduser()
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
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
        raise ConfigError(f"{source}: {name} must be {kind}, got {value!r}") from None


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the Config from a TOML file, TRACEHOUSE_* variables and explicit overrides (CLI flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG")
    extra: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, value in data.items():
            name = key.replace("-", "_")
            if name in _FIELDS and not isinstance(value, dict):
                values[name] = _coerce(name, value, str(path))
            else:
                extra[name] = value
    for name in _FIELDS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, ENV_PREFIX + name.upper())
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, "--" + name.replace("_", "-"))
    config = Config(**values, extra=extra)
    for port_name in ("grpc_port", "http_port", "query_port"):
        port = getattr(config, port_name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{port_name} must be between 0 and 65535, got {port}")
    if config.max_request_bytes <= 0:
        raise ConfigError("max_request_bytes must be positive")
    if config.batch_max_rows <= 0 or config.batch_linger_ms < 0:
        raise ConfigError("batch_max_rows must be positive and batch_linger_ms not negative")
    if config.cluster and config.is_embedded:
        raise ConfigError("cluster needs a ClickHouse server: set clickhouse_url to one of the cluster's nodes")
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ConfigError("tls_cert_file and tls_key_file go together")
    for name in ("tls_cert_file", "tls_key_file"):
        path = getattr(config, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{name}: {path} is not a readable file")
    if not 0 <= config.workers <= 64:
        raise ConfigError(f"workers must be between 0 and 64, got {config.workers}")
    if config.spool_budget_bytes <= 0 or config.max_inflight_bytes <= 0:
        raise ConfigError("spool_budget_bytes and max_inflight_bytes must be positive")
    return config
