"""Redaction stage: PII and secrets are replaced before anything is spooled or stored.

Build it with `build(config)` (None when turned off); call it on a SpanBatch. It runs last, on the
final row, and the unit of redaction is every string that is written:

- every column of the batch, whichever stage wrote it: text columns, lists of text (event names, link
  trace states, tags) and attribute maps (resource, span, event, link), keys as well as values. Only
  `columns.UNSCANNED` is skipped (checked ids, numbers, fixed vocabularies, values from configuration);
  a column whose values it cannot read stops the batch (UnscannableColumn) rather than pass unscanned.
- a key holding PII is replaced by its redacted text; two keys of one map that redact to the same text
  stay apart with a `#2`, `#3` suffix. Key policies are decided on the key as sent; a dropped entry's
  key goes with it.
- policies: per attribute key ([redaction.attributes]) and per text column ([redaction.columns], any of
  `columns.TEXT_COLUMNS`); a policy on `service.name`, `user.id`, `session.id`, `tracehouse.tenant` or
  `tracehouse.feature` also covers the column copied from it. `drop` on a list column empties it, except
  Events.* / Links.* columns, which keep one (empty) entry per event or link.
- encoded forms (see encodings): JSON `\\u00XX` escapes and URL `%XX` encoding are decoded for scanning,
  the replacement covering the escapes; a whole value that is base64 of text (OTLP bytes values are stored
  as base64) is scanned decoded and rewritten as the base64 of the redacted text. Base64 embedded in
  longer text and other encodings (hex, double URL-encoding) are not decoded.
"""

from tracehouse.collector.stages.redact.scanner import Scanner
from tracehouse.collector.stages.redact.settings import RedactionConfigError, RedactionSettings, parse_settings
from tracehouse.collector.stages.redact.stage import Redactor, build

__all__ = [
    "RedactionConfigError",
    "RedactionSettings",
    "Redactor",
    "Scanner",
    "build",
    "parse_settings",
]
