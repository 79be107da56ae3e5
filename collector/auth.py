"""API keys: which tenant a request belongs to. The tenant comes from the key, never from span attributes.

Keys are configured in the `[api_keys]` table of the config file (`"<key>" = "<tenant>"`, or
`"sha256:<hex of the key's SHA-256>" = "<tenant>"` to keep keys out of the file) or in
`TRACEHOUSE_API_KEYS` (`key=tenant,key2=tenant2`). With no key configured, requests need none.
Clients send `Authorization: Bearer <key>` or `x-api-key: <key>` (for OTel exporters:
`OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<key>`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tracehouse.collector.errors import Unauthenticated
from tracehouse.collector.settings import ConfigError, Section

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

ENV_KEYS = "TRACEHOUSE_API_KEYS"
# Keys are printable ASCII (HTTP token68, gRPC metadata); anything longer is not a key.
MAX_KEY_CHARS = 4096


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeys:
    """The `[api_keys]` section: SHA-256 of each key (hex) -> its tenant. Empty: no key needed."""

    tenants: Mapping[str, str] = field(default_factory=dict)


def parse_key_table(
    section: str, env_name: str, table: Mapping[str, Any], environ: Mapping[str, str], min_chars: int = 1
) -> dict[str, str]:
    """A `[section]` of "<key>" or "sha256:<hex>" = "<tenant>" plus `env_name` (key=tenant,...): SHA-256 of each
    key (hex) -> its tenant. With `min_chars` > 1, keys given in the clear must be printable ASCII without spaces
    and at least that long (keys people type into Grafana)."""
    keys = dict(table)
    for entry in filter(None, (part.strip() for part in environ.get(env_name, "").split(","))):
        key, sep, tenant = entry.partition("=")
        if not sep:
            raise ConfigError(f"{env_name}: expected key=tenant pairs separated by commas")
        keys[key.strip()] = tenant.strip()
    tenants: dict[str, str] = {}
    for key, tenant in keys.items():
        if not isinstance(tenant, str) or not tenant:
            raise ConfigError(f"{section}: the tenant for a key must be a non-empty string, got {tenant!r}")
        if key.startswith("sha256:"):
            digest = key.removeprefix("sha256:").lower()
            if len(digest) != 64:
                raise ConfigError(f"{section}: a sha256: entry needs the 64 hex digits of the key's SHA-256")
        elif min_chars > 1 and (len(key) < min_chars or not key.isascii() or not key.isprintable() or " " in key):
            raise ConfigError(
                f"{section}: a key must be at least {min_chars} printable ASCII characters without spaces"
                " (e.g. the output of `openssl rand -hex 16`), or sha256:<hex of its SHA-256>"
            )
        else:
            digest = _hash(key)
        tenants[digest] = tenant
    return tenants


def parse_api_keys(table: Mapping[str, Any], environ: Mapping[str, str]) -> ApiKeys:
    """`[api_keys]` ("<key>" or "sha256:<hex>" = "<tenant>") plus TRACEHOUSE_API_KEYS (key=tenant,...)."""
    return ApiKeys(parse_key_table("api_keys", ENV_KEYS, table, environ))


API_KEYS = Section("api_keys", (ENV_KEYS,), parse_api_keys, "API keys and the tenant each one maps to")

ENV_READ_KEYS = "TRACEHOUSE_QUERY_READ_KEYS"
# As query_read_key: a key people type into Grafana, long enough not to be guessed.
READ_KEY_MIN_CHARS = 16


@dataclass(frozen=True)
class TenantReadKeys:
    """The `[query_read_keys]` section: SHA-256 of each key (hex) -> the tenant whose rows it reads through the
    SQL endpoint (a tenant's own Grafana datasource). Empty: no tenant keys."""

    tenants: Mapping[str, str] = field(default_factory=dict)

    def tenant(self, presented: bytes) -> str | None:
        """The tenant of a presented key, None when it is none of these."""
        return self.tenants.get(hashlib.sha256(presented).hexdigest()) if self.tenants else None


def parse_read_keys(table: Mapping[str, Any], environ: Mapping[str, str]) -> TenantReadKeys:
    """`[query_read_keys]` ("<key>" or "sha256:<hex>" = "<tenant>") plus TRACEHOUSE_QUERY_READ_KEYS."""
    return TenantReadKeys(parse_key_table("query_read_keys", ENV_READ_KEYS, table, environ, READ_KEY_MIN_CHARS))


READ_KEYS = Section(
    "query_read_keys",
    (ENV_READ_KEYS,),
    parse_read_keys,
    "read keys of the SQL endpoint that see one tenant's rows only, and the tenant each one maps to",
)


class Authenticator:
    def __init__(self, keys: ApiKeys | None = None) -> None:
        self._tenants = dict(keys.tenants) if keys is not None else {}

    @classmethod
    def from_config(cls, config: Config) -> Authenticator:
        return cls(config.api_keys)

    @property
    def required(self) -> bool:
        return bool(self._tenants)

    def tenant(self, authorization: str | None, api_key: str | None) -> str | None:
        """The tenant of the presented key; None when no keys are configured.

        Header values come from clients as they are (any bytes, any length): whatever they hold, the
        answer is a tenant or Unauthenticated, never another error.
        """
        if not self._tenants:
            return None
        presented = (api_key or "").strip()
        if not presented and authorization and authorization.strip():
            scheme, _, credential = authorization.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise Unauthenticated("unsupported Authorization scheme: send 'Authorization: Bearer <key>'")
            presented = credential.strip()
        if not presented:
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>' or 'x-api-key'")
        if len(presented) > MAX_KEY_CHARS or not presented.isascii() or not presented.isprintable():
            raise Unauthenticated("the API key is not valid")
        tenant = self._tenants.get(_hash(presented))
        if tenant is None:
            raise Unauthenticated("the API key is not valid")
        return tenant
