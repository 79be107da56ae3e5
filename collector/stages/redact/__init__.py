"""Redaction stage: PII and secrets are replaced before anything is spooled or stored.

Build it with `build_redactor(config)` (None when turned off); call it on a SpanBatch.
"""

from tracehouse.collector.stages.redact.scanner import Scanner
from tracehouse.collector.stages.redact.settings import RedactionConfigError, RedactionSettings, parse_settings
from tracehouse.collector.stages.redact.stage import COUNTS_COLUMN, Redactor, build_redactor

__all__ = [
    "COUNTS_COLUMN",
    "RedactionConfigError",
    "RedactionSettings",
    "Redactor",
    "Scanner",
    "build_redactor",
    "parse_settings",
]
