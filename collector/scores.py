"""Scores (POST /v1/scores): parse and check a request's scores, redact their free text, give each its id
and encode the rows of the `scores` table. Pure, like `processing`: the pipeline runs it in its pipeline
thread, then spools (or inserts) the rows and acknowledges with the ids.

The body is JSON, one score object or a list of them (at most MAX_SCORES per request):

- `trace_id` (required): 32 hex digits, as OTLP/JSON writes ids; `span_id` (optional): 16 hex digits; without
  it the score is about the whole trace.
- `name` (required): 1 to MAX_NAME_CHARS of letters, digits and `_ . : / -`.
- `value` (required): a finite number, or a boolean (stored as 1 / 0, ValueType `bool`).
- `label` (optional): a category, at most MAX_LABEL_CHARS; `comment` (optional): at most MAX_COMMENT_CHARS;
  `author` (optional): at most MAX_AUTHOR_CHARS.
- `source` (optional, default `api`): `user`, `review`, `eval` or `api`.
- `timestamp` (optional, default: when the collector received it): an RFC 3339 string
  (`2025-03-01T10:00:00.123456789Z`, any offset) or an integer of Unix nanoseconds.
- `id` (optional): the client's id for the score, 1 to MAX_ID_CHARS of letters, digits and `_ . : -`;
  without it the id is a digest of the tenant and the score's content (timestamp included when sent), so a
  retried request names the same scores.
- `tenant_id` (optional): honoured only when the collector has no API keys; with keys, the key's tenant
  is the score's, whatever the body says (as for spans).

Any other field, or a field of the wrong type, is refused with a message naming it (`scores[2].source`).
`comment`, `label` and `author` go through the configured redactor's detectors and rules (they are free
text a person typed); names, ids and values do not (their format admits no PII). Redaction happens before
the id digest, so no id is a hash of redacted text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import orjson

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.errors import Invalid
from tracehouse.collector.processing import encode_rows

if TYPE_CHECKING:
    from tracehouse.collector.config import Config
    from tracehouse.collector.stages.redact import Redactor

SCORES_TABLE = "scores"
MAX_SCORES = 1000
MAX_NAME_CHARS = 128
MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 256
MAX_AUTHOR_CHARS = 256
MAX_COMMENT_CHARS = 4096
SOURCES = ("user", "review", "eval", "api")
DEFAULT_SOURCE = "api"
FIELDS = (
    "id",
    "trace_id",
    "span_id",
    "name",
    "value",
    "label",
    "comment",
    "source",
    "author",
    "timestamp",
    "tenant_id",
)
# The free-text fields the redactor scans, with their limits.
TEXT_FIELDS = {"label": MAX_LABEL_CHARS, "comment": MAX_COMMENT_CHARS, "author": MAX_AUTHOR_CHARS}
MAX_TENANT_CHARS = 256
# The columns of the scores table the collector writes (InsertedAt is the server's).
COLUMNS = (
    "Timestamp",
    "TenantId",
    "TraceId",
    "SpanId",
    "ScoreId",
    "Name",
    "Value",
    "ValueType",
    "Label",
    "Comment",
    "Source",
    "Author",
    "RedactionCounts",
)

_HEX_TRACE = re.compile(r"[0-9a-fA-F]{32}")
_HEX_SPAN = re.compile(r"[0-9a-fA-F]{16}")
_NAME = re.compile(r"[A-Za-z0-9_.:/-]+")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]+")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NS = 2**63 - 1


@dataclass
class ProcessedScores:
    """A request's scores, encoded for the spool and the writer, with their ids in request order."""

    header: bytes
    payload: bytes
    ids: list[str]
    redactions: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.ids)


class ScoreProcessor:
    """Built once at start-up from the config (the redactor's detectors and rules), used per request."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self._redactor = redactor

    @classmethod
    def from_config(cls, config: Config) -> ScoreProcessor:
        """With redaction on, comments, labels and authors are redacted as span content is."""
        if not config.redaction.enabled:
            return cls(None)
        from tracehouse.collector.stages.redact import Redactor

        return cls(Redactor(config.redaction))

    def process(self, body: bytes, tenant: str | None, now_ns: int) -> ProcessedScores:
        """Check, redact and encode the scores of one request body; raises errors.Invalid naming the field.
        `tenant` is the API key's (None without keys); `now_ns` stamps scores sent without a timestamp."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            parsed = _lenient_json(body, exc)
        if isinstance(parsed, dict):
            items, prefix = [parsed], ""
        elif isinstance(parsed, list):
            items, prefix = parsed, "scores"
        else:
            raise Invalid("body must be a JSON object (one score) or a list of them")
        if len(items) > MAX_SCORES:
            raise Invalid(f"too many scores in one request: {len(items)}, at most {MAX_SCORES}")
        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        ids: list[str] = []
        redacted: dict[str, int] = {}
        for i, item in enumerate(items):
            where = f"{prefix}[{i}]." if prefix else ""
            row = self._score(item, where, tenant, now_ns)
            ids.append(row["ScoreId"])
            for name in COLUMNS:
                columns[name].append(row[name])
            for kind, n in row["RedactionCounts"].items():
                redacted[kind] = redacted.get(kind, 0) + n
        header, payload = encode_rows(SpanBatch(columns)) if ids else (b"", b"")
        return ProcessedScores(header, payload, ids, redacted)

    def _score(self, item: object, where: str, key_tenant: str | None, now_ns: int) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise Invalid(f"{where.rstrip('.') or 'score'}: a score is a JSON object")
        for key in item:
            if key not in FIELDS:
                raise Invalid(f"{where}{_clip(key)}: unknown field; the fields are {', '.join(FIELDS)}")
        trace_id = _hex_id(item, "trace_id", where, _HEX_TRACE, 32, required=True)
        span_id = _hex_id(item, "span_id", where, _HEX_SPAN, 16, required=False)
        name = _text(item, "name", where, MAX_NAME_CHARS, required=True)
        if not _NAME.fullmatch(name):
            raise Invalid(f"{where}name: letters, digits and _ . : / - only, got {_clip(name)}")
        value, value_type = _value(item, where)
        source = item.get("source", DEFAULT_SOURCE)
        if source is None:
            source = DEFAULT_SOURCE
        if source not in SOURCES:
            shown = _clip(source) if isinstance(source, str) else type(source).__name__
            raise Invalid(f"{where}source: unknown source {shown}; one of {', '.join(SOURCES)}")
        timestamp = _timestamp(item.get("timestamp"), where)
        client_id = item.get("id")
        if client_id is not None and (
            not isinstance(client_id, str) or len(client_id) > MAX_ID_CHARS or not _CLIENT_ID.fullmatch(client_id)
        ):
            raise Invalid(f"{where}id: 1 to {MAX_ID_CHARS} letters, digits and _ . : - only")
        tenant = key_tenant
        if tenant is None:
            tenant = _text(item, "tenant_id", where, MAX_TENANT_CHARS, required=False)
        texts: dict[str, str] = {}
        counts: dict[str, int] = {}
        for text_field, limit in TEXT_FIELDS.items():
            text = _text(item, text_field, where, limit, required=False)
            if text and self._redactor is not None:
                text, found = self._redactor.redact_text(text)
                for kind, n in found.items():
                    counts[kind] = counts.get(kind, 0) + n
            texts[text_field] = text
        if client_id is None:
            content = [tenant, trace_id, span_id, name, value, value_type, source, timestamp, *texts.values()]
            client_id = hashlib.sha256(orjson.dumps(content)).hexdigest()[:32]
        return {
            "Timestamp": now_ns if timestamp is None else timestamp,
            "TenantId": tenant,
            "TraceId": trace_id,
            "SpanId": span_id,
            "ScoreId": client_id,
            "Name": name,
            "Value": value,
            "ValueType": value_type,
            "Label": texts["label"],
            "Comment": texts["comment"],
            "Source": source,
            "Author": texts["author"],
            "RedactionCounts": counts,
        }


def _lenient_json(body: bytes, error: Exception) -> object:
    """What orjson refuses but the standard library reads (a number past a double, NaN, Infinity), so the
    refusal can name the field; anything else is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Invalid(f"body is not valid JSON: {error}") from None


def _clip(text: str, limit: int = 64) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _text(item: dict[str, Any], key: str, where: str, limit: int, required: bool) -> str:
    value = item.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise Invalid(f"{where}{key}: required")
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{where}{key}: must be a string, not {_json_type(value)}")
    if not value:
        raise Invalid(f"{where}{key}: must not be empty")
    if len(value) > limit:
        raise Invalid(f"{where}{key}: {len(value)} characters, at most {limit}")
    return value


def _hex_id(item: dict[str, Any], key: str, where: str, pattern: re.Pattern[str], digits: int, required: bool) -> str:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise Invalid(f"{where}{key}: required ({digits} hex digits)")
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = _clip(value) if isinstance(value, str) else _json_type(value)
        raise Invalid(f"{where}{key}: must be {digits} hex digits (OTLP/JSON), got {shown}")
    if not value.strip("0"):
        raise Invalid(f"{where}{key}: an all-zero id is not a valid id")
    return value.lower()


def _value(item: dict[str, Any], where: str) -> tuple[float, str]:
    if "value" not in item or item["value"] is None:
        raise Invalid(f"{where}value: required (a number or a boolean)")
    value = item["value"]
    if isinstance(value, bool):
        return (1.0 if value else 0.0), "bool"
    if not isinstance(value, int | float):
        raise Invalid(f"{where}value: must be a number or a boolean, not {_json_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Invalid(f"{where}value: must be a finite number")
    return number, "number"


def _timestamp(value: object, where: str) -> int | None:
    """Unix nanoseconds of an RFC 3339 string or an integer of nanoseconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Invalid(f"{where}timestamp: an RFC 3339 string or integer Unix nanoseconds, not {_json_type(value)}")
    if isinstance(value, int):
        ns = value
    else:
        match = _RFC3339.fullmatch(value)
        if match is None:
            raise Invalid(f"{where}timestamp: not RFC 3339 (2025-03-01T10:00:00Z): {_clip(value)}")
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        try:
            tz: timezone = UTC
            if offset not in ("Z", "z"):
                sign = 1 if offset[0] == "+" else -1
                tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
        except ValueError as exc:
            raise Invalid(f"{where}timestamp: {exc}: {_clip(value)}") from None
        whole = moment - _EPOCH
        seconds = whole.days * 86400 + whole.seconds
        ns = seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))
    if not 0 < ns <= _MAX_NS:
        raise Invalid(f"{where}timestamp: out of range (after 1970, before 2262)")
    return ns


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"
