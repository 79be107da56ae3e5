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
text a person typed). Names, ids and the tenant are identifiers, stored as sent (they key idempotency and
joins, so a redacted one would merge or mis-join rows): one in which the redactor finds something (a key
fits the name format) is refused with a 400 naming the field, not stored. Redaction happens before the id
digest, so no id is a hash of redacted text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Self

import orjson

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import TENANT_ID
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

HEX_TRACE = re.compile(r"[0-9a-fA-F]{32}")
HEX_SPAN = re.compile(r"[0-9a-fA-F]{16}")
_NAME = re.compile(r"[A-Za-z0-9_.:/-]+")
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]+")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NS = 2**63 - 1


@dataclass
class ProcessedRows:
    """A request's scores (or reviews), encoded for the spool and the writer, with their ids in request order."""

    header: bytes
    payload: bytes
    ids: list[str]
    redactions: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.ids)


class JsonRowsProcessor:
    """A JSON body of rows for a side table (one object or a list): each checked and redacted by the subclass's
    `_row`, the batch encoded for the spool and the writer. Built once at start-up from the config (the
    redactor's detectors and rules), used per request."""

    noun = ""  # "score": messages say `scores[2].name`
    limit = 0  # items per request
    fields: tuple[str, ...] = ()  # the fields an item may have
    columns: tuple[str, ...] = ()
    id_column = ""

    def __init__(self, redactor: Redactor | None = None, tenants_from_keys: bool = False) -> None:
        self._redactor = redactor
        # A body's tenant_id is checked only where it is the sender's word and spans' tenants are scanned: with
        # API keys only the operator's `review set` sends one (read back from stored spans), and a column
        # policy (keep, hash) stores spans' tenants as sent or as tokens, so refusing would part them.
        scanned = redactor is not None and redactor.scans_column(TENANT_ID)
        self._tenant_check = redactor if scanned and not tenants_from_keys else None

    @classmethod
    def from_config(cls, config: Config) -> Self:
        """With redaction on, the free text is redacted as span content is."""
        if not config.redaction.enabled:
            return cls(None)
        from tracehouse.collector.stages.redact import Redactor

        return cls(Redactor(config.redaction), tenants_from_keys=bool(config.api_keys.tenants))

    def process(self, body: bytes, tenant: str | None, now_ns: int) -> ProcessedRows:
        """Check, redact and encode the rows of one request body; raises errors.Invalid naming the field.
        `tenant` is the API key's (None without keys); `now_ns` stamps rows sent without a timestamp."""
        items, prefix = json_items(body, self.noun, self.limit)
        columns: dict[str, list[Any]] = {name: [] for name in self.columns}
        ids: list[str] = []
        given: dict[str, int] = {}  # the ids the client chose, by item: one request names each once
        redacted: dict[str, int] = {}
        for i, item in enumerate(items):
            where = f"{prefix}[{i}]." if prefix else ""
            if not isinstance(item, dict):
                raise Invalid(f"{where.rstrip('.') or self.noun}: a {self.noun} is a JSON object")
            for key in item:
                if key not in self.fields:
                    raise Invalid(f"{where}{clip(key)}: unknown field; the fields are {', '.join(self.fields)}")
            row = self._row(item, where, tenant, now_ns)
            if item.get("id") is not None:
                first = given.setdefault(row[self.id_column], i)
                if first != i:  # both were acknowledged, and the table kept one of them
                    raise Invalid(f"{where}id: {clip(row[self.id_column])} is the id of {prefix}[{first}] too")
            ids.append(row[self.id_column])
            for name in self.columns:
                columns[name].append(row[name])
            for kind, n in row["RedactionCounts"].items():
                redacted[kind] = redacted.get(kind, 0) + n
        header, payload = encode_rows(SpanBatch(columns)) if ids else (b"", b"")
        return ProcessedRows(header, payload, ids, redacted)

    def _row(self, item: dict[str, Any], where: str, key_tenant: str | None, now_ns: int) -> dict[str, Any]:
        raise NotImplementedError


class ScoreProcessor(JsonRowsProcessor):
    noun = "score"
    limit = MAX_SCORES
    fields = FIELDS
    columns = COLUMNS
    id_column = "ScoreId"

    def _row(self, item: dict[str, Any], where: str, key_tenant: str | None, now_ns: int) -> dict[str, Any]:
        trace_id = hex_id(item, "trace_id", where, HEX_TRACE, 32, required=True)
        span_id = hex_id(item, "span_id", where, HEX_SPAN, 16, required=False)
        name = text_field(item, "name", where, MAX_NAME_CHARS, required=True)
        if not _NAME.fullmatch(name):
            raise Invalid(f"{where}name: letters, digits and _ . : / - only, got {clip(name)}")
        checked_identifier(name, "name", where, self._redactor)
        value, value_type = _value(item, where)
        source = item.get("source", DEFAULT_SOURCE)
        if source is None:
            source = DEFAULT_SOURCE
        if source not in SOURCES:
            shown = clip(source) if isinstance(source, str) else type(source).__name__
            raise Invalid(f"{where}source: unknown source {shown}; one of {', '.join(SOURCES)}")
        timestamp = timestamp_ns(item.get("timestamp"), where)
        client_id = client_id_of(item, where, self._redactor)
        tenant = tenant_of(item, where, key_tenant, self._tenant_check)
        texts, counts = redacted_texts(item, where, TEXT_FIELDS, self._redactor)
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


def checked_identifier(value: str, field: str, where: str, redactor: Redactor | None) -> str:
    """An identifier, refused when the redactor finds something in it (see the module's docstring). The
    message names the kinds found, never the value."""
    found = redactor.kinds_in(value) if redactor is not None else ""
    if found:
        raise Invalid(
            f"{where}{field}: holds what redaction removes ({found}); an identifier is stored as sent, so it is refused"
        )
    return value


def client_id_of(item: dict[str, Any], where: str, redactor: Redactor | None = None) -> str | None:
    """The client's `id` of an item, checked; None when it sent none."""
    client_id = item.get("id")
    if client_id is not None and (
        not isinstance(client_id, str) or len(client_id) > MAX_ID_CHARS or not CLIENT_ID.fullmatch(client_id)
    ):
        raise Invalid(f"{where}id: 1 to {MAX_ID_CHARS} letters, digits and _ . : - only")
    return None if client_id is None else checked_identifier(client_id, "id", where, redactor)


def tenant_of(item: dict[str, Any], where: str, key_tenant: str | None, redactor: Redactor | None = None) -> str:
    """The API key's tenant; without keys (None), the item's `tenant_id`, else ""."""
    if key_tenant is not None:
        return key_tenant
    tenant = text_field(item, "tenant_id", where, MAX_TENANT_CHARS, required=False)
    return checked_identifier(tenant, "tenant_id", where, redactor)


def redacted_texts(
    item: dict[str, Any], where: str, fields: dict[str, int], redactor: Redactor | None
) -> tuple[dict[str, str], dict[str, int]]:
    """The free-text fields (name -> limit) of an item, checked and redacted, with the redaction counts."""
    texts: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, limit in fields.items():
        text = text_field(item, name, where, limit, required=False)
        if text and redactor is not None:
            text, found = redactor.redact_text(text)
            for kind, n in found.items():
                counts[kind] = counts.get(kind, 0) + n
        texts[name] = text
    return texts, counts


def json_items(body: bytes, noun: str, limit: int) -> tuple[list[Any], str]:
    """The objects of a body that holds one `noun` or a list of them, and the prefix that names an item in
    messages ("" for one object, `scores` for `scores[2].name`)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        parsed = lenient_json(body, exc)
    if isinstance(parsed, dict):
        return [parsed], ""
    if not isinstance(parsed, list):
        raise Invalid(f"body must be a JSON object (one {noun}) or a list of them")
    if len(parsed) > limit:
        raise Invalid(f"too many {noun}s in one request: {len(parsed)}, at most {limit}")
    return parsed, noun + "s"


def lenient_json(body: bytes, error: Exception) -> object:
    """What orjson refuses but the standard library reads (a number past a double, NaN, Infinity), so the
    refusal can name the field; anything else is not JSON. Not a lone surrogate (`\ud800` without its pair):
    the standard library reads one, but no text can hold it, and it failed later, as a 500."""
    if "surrogate" in str(error):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid(f"body is not valid UTF-8 (byte {exc.start}): {exc.reason}") from None
        raise Invalid(f"body is not valid JSON: {error} (a \\ud800-\\udfff escape must come in a pair)") from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Invalid(f"body is not valid JSON: {error}") from None


def clip(text: str, limit: int = 64) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def text_field(item: dict[str, Any], key: str, where: str, limit: int, required: bool) -> str:
    value = item.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise Invalid(f"{where}{key}: required")
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{where}{key}: must be a string, not {json_type(value)}")
    if not value:
        raise Invalid(f"{where}{key}: must not be empty")
    if len(value) > limit:
        raise Invalid(f"{where}{key}: {len(value)} characters, at most {limit}")
    return value


def hex_id(item: dict[str, Any], key: str, where: str, pattern: re.Pattern[str], digits: int, required: bool) -> str:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise Invalid(f"{where}{key}: required ({digits} hex digits)")
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = clip(value) if isinstance(value, str) else json_type(value)
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
        raise Invalid(f"{where}value: must be a number or a boolean, not {json_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Invalid(f"{where}value: must be a finite number")
    return number, "number"


def timestamp_ns(value: object, where: str) -> int | None:
    """Unix nanoseconds of an RFC 3339 string or an integer of nanoseconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Invalid(f"{where}timestamp: an RFC 3339 string or integer Unix nanoseconds, not {json_type(value)}")
    if isinstance(value, int):
        ns = value
    else:
        match = _RFC3339.fullmatch(value)
        if match is None:
            raise Invalid(f"{where}timestamp: not RFC 3339 (2025-03-01T10:00:00Z): {clip(value)}")
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        try:
            tz: timezone = UTC
            if offset not in ("Z", "z"):
                sign = 1 if offset[0] == "+" else -1
                tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
        except ValueError as exc:
            raise Invalid(f"{where}timestamp: {exc}: {clip(value)}") from None
        whole = moment - _EPOCH
        seconds = whole.days * 86400 + whole.seconds
        ns = seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))
    if not 0 < ns <= _MAX_NS:
        raise Invalid(f"{where}timestamp: out of range (after 1970, before 2262)")
    return ns


def json_type(value: object) -> str:
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
