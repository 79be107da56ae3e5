"""Why a request was not taken, in the pipeline's own words: the receivers translate each kind into their
wire's status (gRPC code, HTTP status, google.rpc.Status and RetryInfo; see `receivers.otlp.wire_error`).

The split is the OTel Collector's (`consumererror` inside the pipeline, `internal/errors` at the receivers):
what matters inside is whether the client should send the same request again, and when. Nothing in here
knows a status code, so the pipeline, the stages and auth stay free of the receivers.

- `Retryable`: not taken now, the same request may succeed later (spool full, store away, a worker died);
  carries the delay to suggest.
- `Permanent`: resending the same request cannot help (the store refuses these rows).
  `Invalid`: the request itself is malformed, a permanent refusal too.
- `TooLarge`: the request is over the size limit (after decompression).
- `Unauthenticated`: no API key, or not one of the configured keys.

Each carries a message that names the problem; it reaches the client as it is.
"""

from __future__ import annotations

from typing import ClassVar


class PipelineError(Exception):
    """A refusal; `outcome` is its value of the `outcome` label of tracehouse_requests_total (the names
    that label has always had, so dashboards and alerts keep working)."""

    outcome: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Retryable(PipelineError):
    """Not taken this time; the client should retry after `retry_after_seconds`."""

    outcome = "unavailable"

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def __reduce__(self) -> tuple:  # crosses the worker-process boundary whole
        return type(self), (self.message, self.retry_after_seconds)


class Permanent(PipelineError):
    """Resending the same request cannot succeed."""

    outcome = "invalid_argument"


class Invalid(Permanent):
    """The request is malformed (not OTLP, not valid protobuf or JSON, a corrupt body)."""


class TooLarge(PipelineError):
    """The request is larger than the configured limit once decompressed."""

    outcome = "resource_exhausted"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"request exceeds the {limit_bytes} byte limit after decompression")
        self.limit_bytes = limit_bytes

    def __reduce__(self) -> tuple:
        return type(self), (self.limit_bytes,)


class Unauthenticated(PipelineError):
    """No API key was presented, or not a configured one."""

    outcome = "unauthenticated"
