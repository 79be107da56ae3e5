"""Connection limits shared by both OTLP receivers: a flood of idle or slow connections must not starve
the process of file descriptors, nor keep a connection forever."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, fields
from typing import Any

from tracehouse.collector.config import default

log = logging.getLogger(__name__)

# Share of the open-file limit each OTLP listener may hold; the rest is for the store, spool, workers.
_LISTENER_SHARE = 0.4
_FD_RESERVE = 512
_AUTO_CAP = 10_000


@dataclass(frozen=True)
class ConnectionLimits:
    """Per listener. `max_connections` 0 means derived from the process's open-file limit."""

    # The four configurable limits take their defaults (and meaning) from Config.
    max_connections: int = default("max_connections")
    handshake_timeout_seconds: float = default("handshake_timeout_seconds")
    idle_timeout_seconds: float = default("idle_timeout_seconds")
    max_connection_age_seconds: float = default("max_connection_age_seconds")
    # gRPC: after the age above, the grace a connection gets before it is closed.
    max_connection_age_grace_seconds: float = 60.0
    # gRPC: concurrent streams (requests) on one connection.
    max_concurrent_streams: int = 100
    # Largest request header block; larger API keys still reach authentication and get 401.
    max_header_bytes: int = 64 * 1024
    backlog: int = 1024

    @classmethod
    def from_config(cls, config: Any) -> ConnectionLimits:
        """The Config's settings of the same names; a setting the Config does not have keeps its default."""
        values = {}
        for f in fields(cls):
            value = getattr(config, f.name, None)
            if value is not None:
                values[f.name] = type(f.default)(value)
        return cls(**values)

    def connection_cap(self) -> int:
        if self.max_connections > 0:
            return self.max_connections
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return _AUTO_CAP
        return max(16, min(_AUTO_CAP, int((soft - _FD_RESERVE) * _LISTENER_SHARE)))


_raised = False


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (per process, harmless); return the soft limit."""
    global _raised
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if not _raised and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.debug("open-file limit raised from %s to %s", soft, hard)
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %s to %s: %s", soft, hard, exc)
    _raised = True
    return soft
