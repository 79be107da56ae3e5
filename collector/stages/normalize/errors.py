"""ErrorType and ErrorMessage, for every span: the exception it recorded, `error.type`, or its status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.values import clip, short


def error_fields(
    status_code: str,
    status_message: str,
    event_names: Sequence[str],
    event_attrs: Sequence[Mapping[str, str]],
    attrs: Mapping[str, str],
) -> tuple[str, str]:
    """(type, message). The last `exception` event wins, unless the span ended Ok (a handled exception);
    then `error.type` (which OTel sets only on failure); the message falls back to the status message."""
    error_type = ""
    error_message = ""
    if status_code != "Ok":
        for index in range(min(len(event_names), len(event_attrs)) - 1, -1, -1):
            if event_names[index] == "exception":
                exception = event_attrs[index]
                error_type = exception.get("exception.type", "")
                error_message = exception.get("exception.message", "")
                break
    if not error_type:
        error_type = attrs.get("error.type", "")
    if not error_message and status_code == "Error":
        error_message = status_message
    return short(error_type), clip(error_message, limits.MAX_ERROR_CHARS) if error_message else ""
