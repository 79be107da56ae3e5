"""Redaction covers every string the collector writes: all columns of the final row, attribute keys as well
as values, and the encoded forms a secret can hide in (JSON escapes, URL encoding, base64 of bytes values).

The coverage test plants a secret in every string-typed column the stages produce and proves none survives;
a column added later is scanned without anyone listing it, and the allow-list of unscanned columns is
pinned here so that growing it is a visible decision."""

from __future__ import annotations

import base64
import json
import random
import string

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import REDACTION_COUNTS
from tracehouse.collector.config import Config, ConfigError, parse_config
from tracehouse.collector.processing import encode_rows, process_batch
from tracehouse.collector.stages import default_stages
from tracehouse.collector.stages.decode import decode_request
from tracehouse.collector.stages.redact import Redactor, parse_settings
from tracehouse.collector.stages.redact.columns import MAP_COLUMNS, TEXT_COLUMNS, UNSCANNED, UnscannableColumn

_rng = random.Random(23)
KEY = "sk-proj-" + "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(48))
EMAIL = "jane.roe.7731@example.org"
# The forms a value can take on the way to disk: as sent, URL-encoded, JSON-escaped, base64 (bytes values).
EMAIL_URL = EMAIL.replace("@", "%40")
EMAIL_JSON_ESCAPED = EMAIL.replace("@", "\\u0040")
BLOB = f"deploy key {KEY} for {EMAIL}".encode()
BLOB_B64 = base64.b64encode(BLOB).decode()
NEEDLES = (KEY, EMAIL, EMAIL_URL, EMAIL_JSON_ESCAPED, BLOB_B64, KEY[8:40])


def _set(attributes, values: dict[str, object]) -> None:
    for key, value in values.items():
        kv: KeyValue = attributes.add()
        kv.key = key
        if isinstance(value, bytes):
            kv.value.bytes_value = value
        elif isinstance(value, list):
            for item in value:
                kv.value.array_value.values.add().string_value = item
        else:
            kv.value.string_value = str(value)


def planted_request(seed: int = 1) -> ExportTraceServiceRequest:
    """Two LLM spans (OpenInference and OTel GenAI) with the secret in every place a span can carry text."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _set(
        rs.resource.attributes,
        {"service.name": f"billing {EMAIL}", f"owner.{EMAIL}": "team-a", "deployment.environment": f"prod {KEY}"},
    )
    scope = rs.scope_spans.add()
    scope.scope.name = f"scope {KEY}"
    scope.scope.version = f"1.0 {EMAIL}"
    trace_id = rng.randbytes(16)
    oi = scope.spans.add()
    oi.trace_id, oi.span_id = trace_id, rng.randbytes(8)
    oi.name = f"chat for {EMAIL}"
    oi.kind = Span.SPAN_KIND_CLIENT
    oi.start_time_unix_nano, oi.end_time_unix_nano = 1_714_567_890_000_000_000, 1_714_567_891_000_000_000
    oi.trace_state = f"vendor={KEY}"
    oi.status.code = Status.STATUS_CODE_ERROR
    oi.status.message = f"failed for {EMAIL}"
    _set(
        oi.attributes,
        {
            "openinference.span.kind": "LLM",
            "llm.provider": f"acme {EMAIL}",
            "llm.model_name": f"gpt-4o {KEY}",
            "llm.invocation_parameters": json.dumps({"temperature": 0.1, "api_base": f"https://x/?u={EMAIL_URL}"}),
            "llm.prompt_template.name": f"tmpl {EMAIL}",
            "llm.prompt_template.version": f"v1 {KEY}",
            "llm.prompt_template.template": "Answer {q}",
            "llm.token_count.prompt": "12",
            "llm.token_count.completion": "3",
            "tag.tags": json.dumps([f"tag {EMAIL}", "plain"]),
            "tracehouse.feature": f"feature {EMAIL}",
            "tracehouse.tenant": f"tenant {EMAIL}",
            "user.id": f"user {EMAIL}",
            "session.id": f"session {KEY}",
            "metadata": json.dumps({"owner": EMAIL}),
            "error.type": f"Err {KEY}",
            "input.value": '{"messages":[{"role":"user","content":"mail ' + EMAIL_JSON_ESCAPED + '"}]}',
            "input.mime_type": "application/json",
            "output.value": f"call {EMAIL}",
            f"user.{EMAIL}.pref": "dark",
            f"cache.{KEY}": "hit",
            "blob": BLOB,
            "http.url": f"https://app.example.com/login?user={EMAIL_URL}",
        },
    )
    exc = oi.events.add()
    exc.time_unix_nano, exc.name = oi.start_time_unix_nano + 10, "exception"
    _set(exc.attributes, {"exception.type": f"ValueError {KEY}", "exception.message": f"bad {EMAIL}"})
    ev = oi.events.add()
    ev.time_unix_nano, ev.name = oi.start_time_unix_nano + 20, f"retry for {EMAIL}"
    _set(ev.attributes, {f"attempt.{EMAIL}": f"2 {KEY}"})
    link = oi.links.add()
    link.trace_id, link.span_id = rng.randbytes(16), rng.randbytes(8)
    link.trace_state = f"congo={KEY}"
    _set(link.attributes, {f"link.{EMAIL}": "follows"})

    genai = scope.spans.add()
    genai.trace_id, genai.span_id, genai.parent_span_id = trace_id, rng.randbytes(8), oi.span_id
    genai.name = "chat"
    genai.kind = Span.SPAN_KIND_CLIENT
    genai.start_time_unix_nano, genai.end_time_unix_nano = 1_714_567_890_100_000_000, 1_714_567_890_900_000_000
    _set(
        genai.attributes,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": f"gpt-4o-mini {EMAIL}",
            "gen_ai.response.model": f"gpt-4o-mini-2024 {KEY}",
            "gen_ai.prompt.name": f"support {KEY}",
            "gen_ai.conversation.id": f"conv {EMAIL}",
            "gen_ai.usage.input_tokens": "7",
            "gen_ai.usage.output_tokens": "2",
            "gen_ai.request.temperature": "0.2",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": EMAIL}]}]),
        },
    )
    return request


def _dump(batch: SpanBatch) -> str:
    return orjson.dumps(batch.columns, default=str).decode()


def _found(text: str) -> list[str]:
    return [needle[:16] for needle in NEEDLES if needle in text]


def test_a_span_with_the_secret_everywhere_is_clean_after_the_default_stages(monkeypatch):
    monkeypatch.delenv("TRACEHOUSE_REDACTION", raising=False)
    decoded = decode_request(planted_request()).batch
    stages = default_stages(Config())
    # Control: every derived column holds the secret before the redactor, so the check below can fail.
    plain = decoded
    for stage in stages[:-1]:
        plain = stage(plain)
    carriers = {name for name, data in plain.columns.items() if _found(orjson.dumps(data, default=str).decode())}
    assert carriers >= {
        "TraceState", "SpanName", "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes",
        "StatusMessage", "Events.Name", "Events.Attributes", "Links.TraceState", "Links.Attributes",
        "LlmProvider", "LlmRequestModel", "LlmResponseModel", "InvocationParameters", "UserId", "SessionId",
        "TenantId", "Feature", "PromptTemplateName", "PromptVersion", "Metadata", "ErrorType", "ErrorMessage",
        "Tags", "InputMessages", "OutputMessages",
    }  # fmt: skip
    out = stages[-1](plain)
    assert _found(_dump(out)) == []
    header, payload = encode_rows(out)
    assert _found(payload.decode()) == [] and _found(header.decode()) == []
    counts = out.columns[REDACTION_COUNTS]
    assert counts[0]["secret"] >= 8 and counts[0]["email"] >= 10, counts[0]


# --- the column allow-list, and new columns -------------------------------------------------------

PLANTED = f"note {EMAIL} key {KEY}"


def _plant(name: str, value: object) -> object:
    """The value with the secret added in every string it holds (keys of maps included)."""
    if isinstance(value, str):
        return f"{value} {PLANTED}"
    if isinstance(value, dict):
        # Values keep their form (the base64 blob stays base64); every key gets the secret, one value too.
        return {**{f"{k} {EMAIL}": v for k, v in value.items()}, f"k {EMAIL}": PLANTED}
    if isinstance(value, list):
        if name in MAP_COLUMNS:
            return [*(_plant(name, item) for item in value), {f"k {KEY}": PLANTED}]
        if value and not isinstance(value[0], str):
            return value
        return [*(_plant(name, item) for item in value), PLANTED]
    return value


def _staged(stages) -> SpanBatch:
    batch = decode_request(planted_request()).batch
    for stage in stages[:-1]:
        batch = stage(batch)
    return batch


def test_every_string_column_the_stages_write_is_scanned(monkeypatch):
    """A secret planted in every string of every column (but the allow-list) after normalize, price and
    sampling: the redactor, last, leaves none. A new column a stage starts writing is covered the same way."""
    monkeypatch.delenv("TRACEHOUSE_REDACTION", raising=False)
    stages = default_stages(parse_config({"sampling": {"content_share": 1.0}}, environ={}))
    batch = _staged(stages)
    columns = batch.columns
    planted = set()
    for name in list(columns):
        if name not in UNSCANNED:
            before = columns[name]
            columns[name] = [_plant(name, value) for value in before]
            if columns[name] != before:
                planted.add(name)
    columns["SomeFutureColumn"] = [PLANTED] * len(batch)  # written by a stage that does not exist yet
    columns["SomeFutureList"] = [[PLANTED, "x"]] * len(batch)
    assert planted == set(TEXT_COLUMNS) | set(MAP_COLUMNS)  # every string column got the secret
    header, payload = encode_rows(process_batch(stages[-1:], batch, tenant=None))
    assert _found(payload.decode()) == []
    # Control: the same plant with redaction off reaches the payload (so the check above can fail).
    assert KEY in encode_rows(batch)[1].decode()


def test_unscanned_columns_are_a_short_pinned_list_and_every_text_column_can_have_a_policy(monkeypatch):
    monkeypatch.delenv("TRACEHOUSE_REDACTION", raising=False)
    assert set(UNSCANNED) == {
        "Timestamp", "Duration", "Events.Timestamp", "TraceId", "SpanId", "ParentSpanId", "Links.TraceId",
        "Links.SpanId", "SpanKind", "StatusCode", "ContentSampled", "CostSource", "PriceModel",
        "PriceEffectiveFrom", "PriceVariant", "CanonicalModel", "RedactionCounts",
    }  # fmt: skip
    batch = _staged(default_stages(parse_config({"sampling": {"content_share": 0.5}}, environ={})))
    texty = set()
    for name, data in batch.columns.items():
        flat = [v for value in data for v in (value if isinstance(value, list) else [value])]
        if any(isinstance(v, str | dict) for v in flat):
            texty.add(name)
    assert texty - set(UNSCANNED) <= set(TEXT_COLUMNS) | set(MAP_COLUMNS)
    assert {"ServiceName", "ScopeName", "TraceState", "Events.Name", "LlmRequestModel", "Tags"} <= set(TEXT_COLUMNS)


def test_a_column_of_values_the_redactor_cannot_read_stops_the_batch():
    batch = decode_request(planted_request()).batch
    batch.columns["Opaque"] = [b"raw bytes"] * len(batch)
    with pytest.raises(UnscannableColumn, match="'Opaque' holds bytes"):
        Redactor(parse_settings({}, environ={}))(batch)


# --- attribute keys -------------------------------------------------------------------------------


def _one_span(**columns) -> SpanBatch:
    batch = decode_request(planted_request()).batch
    cols = {name: data[:1] for name, data in batch.columns.items()}
    cols.update({name: [value] for name, value in columns.items()})
    return SpanBatch(cols)


def test_map_keys_are_redacted_and_colliding_masked_keys_stay_apart():
    attrs = {
        "pref [EMAIL]": "0",
        "pref alice@example.com": "1",
        "pref bob@example.com": "2",
        "password for carol@example.com": "hunter2",
        "plain": "x",
    }
    out = Redactor(parse_settings({}, environ={}))(_one_span(SpanAttributes=attrs)).columns
    assert out["SpanAttributes"][0] == {
        "pref [EMAIL]": "0",
        "pref [EMAIL]#2": "1",
        "pref [EMAIL]#3": "2",
        "password for [EMAIL]": "[REDACTED]",  # the key's policy is decided on the key as sent
        "plain": "x",
    }
    assert attrs["pref alice@example.com"] == "1"  # the input map is not changed in place


def test_key_hits_are_counted_hashed_in_hash_mode_and_dropped_keys_are_not_scanned():
    table = {"mode": "hash", "hash_secret": "s", "attributes": {"debug.*": "drop"}}
    attrs = {"pref alice@example.com": "1", "again alice@example.com": "2", "debug.bob@example.com": "3"}
    out = Redactor(parse_settings(table, environ={}))(_one_span(SpanAttributes=attrs, Feature="")).columns
    keys = list(out["SpanAttributes"][0])
    assert len(keys) == 2 and all("[EMAIL:" in key and "example.com" not in key for key in keys)
    assert keys[0].split(" ")[1] == keys[1].split(" ")[1]  # the same e-mail, the same token
    counts = out[REDACTION_COUNTS][0]
    assert counts.get("dropped") == 1 and counts["email"] >= 2


def test_a_dirty_key_is_redacted_in_every_batch_not_only_the_first():
    redactor = Redactor(parse_settings({}, environ={}))
    for _ in range(3):
        out = redactor(_one_span(SpanAttributes={"pref alice@example.com": "1", "clean.key": "2"})).columns
        assert out["SpanAttributes"][0] == {"pref [EMAIL]": "1", "clean.key": "2"}


# --- encoded forms --------------------------------------------------------------------------------


def _scan(text: str) -> str:
    return Redactor(parse_settings({}, environ={})).redact_text(text)[0]


def test_json_unicode_escapes_are_seen_through_and_json_stays_valid():
    raw = '{"m":"mail alice\\u0040example.com, caf\\u00e9 \\u003cb\\u003e","k":"' + KEY.replace("-", "\\u002d") + '"}'
    out = _scan(raw)
    assert json.loads(out) == {"m": "mail [EMAIL], café <b>", "k": "[SECRET]"}
    # An escaped backslash is text, not an escape; quotes and backslashes are never decoded.
    assert _scan('{"m":"alice\\\\u0040example.com"}') == '{"m":"alice\\\\u0040example.com"}'
    assert _scan('{"m":"x\\u0022alice@example.com"}') == '{"m":"x\\u0022[EMAIL]"}'


def test_url_encoding_is_seen_through():
    assert _scan(f"GET /login?user={EMAIL_URL}&k={KEY.replace('-', '%2D')}") == "GET /login?user=[EMAIL]&k=[SECRET]"
    assert _scan("100% done, 50%% left") == "100% done, 50%% left"


def test_base64_of_text_is_rewritten_as_base64_of_the_redacted_text():
    out = _scan(BLOB_B64)
    assert base64.b64decode(out).decode() == "deploy key [SECRET] for [EMAIL]"
    urlsafe = base64.urlsafe_b64encode(b"mail alice@example.com??>>").decode()
    assert "-" in urlsafe or "_" in urlsafe
    assert base64.urlsafe_b64decode(_scan(urlsafe)) == b"mail [EMAIL]??>>"
    binary = base64.b64encode(bytes(range(0, 256, 7))).decode()
    assert _scan(binary) == binary  # base64 of binary data is scanned as it is


def test_detect_reports_spans_on_the_original_text():
    from tracehouse.collector.stages.redact import Scanner

    text = f"to {EMAIL_URL} now"
    assert Scanner().detect(text) == [("email", 3, 3 + len(EMAIL_URL))]


# --- column policies over the new columns and config errors ---------------------------------------


def test_column_policies_cover_every_text_column():
    table = {
        "hash_secret": "s",
        "columns": {"ServiceName": "hash", "Tags": "drop", "Events.Name": "redact", "Links.TraceState": "drop"},
    }
    spans = _one_span(
        ServiceName="billing", Tags=["a", "b"], **{"Events.Name": ["exception", "x"], "Links.TraceState": ["s=1"]}
    )
    out = Redactor(parse_settings(table, environ={}))(spans).columns
    assert out["ServiceName"][0].startswith("[HASH:")
    assert out["Tags"][0] == []
    assert out["Events.Name"][0] == ["[REDACTED]", "[REDACTED]"]  # one entry per event is kept
    assert out["Links.TraceState"][0] == [""]
    counts = out[REDACTION_COUNTS][0]
    assert counts["hashed"] == 1 and counts["dropped"] == 3 and counts["masked"] >= 2


def test_a_policy_on_service_name_also_covers_the_service_name_column():
    table = {"hash_secret": "s", "attributes": {"service.name": "hash"}}
    span = _one_span(ServiceName="billing", ResourceAttributes={"service.name": "billing"})
    out = Redactor(parse_settings(table, environ={}))(span).columns
    assert out["ServiceName"][0] == out["ResourceAttributes"][0]["service.name"]
    assert out["ServiceName"][0].startswith("[HASH:")


@pytest.mark.parametrize(
    "table,message",
    [
        ({"enabeld": False}, r"\[redaction\]: unknown setting 'enabeld'; did you mean 'enabled'\?"),
        ({"atributes": {}}, "did you mean 'attributes'"),
        (
            {"content_free": {"service": ["x"]}},
            r"\[redaction.content_free\]: unknown setting 'service'; did you mean 'services'",
        ),
        (
            {"rules": [{"name": "r", "patern": "x"}]},
            r"redaction.rules\[0\]: unknown setting 'patern'; did you mean 'pattern'",
        ),
        ({"detectors": ["emial"]}, "unknown detector 'emial'; did you mean 'email'"),
        ({"columns": {"Servicename": "hash"}}, "unknown text column 'Servicename'; did you mean 'ServiceName'"),
        ({"columns": {"SpanAttributes": "drop"}}, r"attribute map; set policies per key in \[redaction.attributes\]"),
        ({"columns": {"TraceId": "hash"}}, "'TraceId' is never scanned"),
    ],
)
def test_config_errors_name_the_key_and_the_nearest_valid_one(table, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(table, environ={})


def test_decoded_views_map_every_byte_back_to_the_sequence_it_came_from():
    """Random mixes of %XX, \\u00XX, escaped backslashes and sequences that decoding could form anew."""
    from tracehouse.collector.stages.redact import encodings

    rng = random.Random(1)
    alphabet = [b"%", b"2", b"5", b"4", b"0", b"\\", b"u", b"a", b"@", b"7", b"C", b"x"]
    for _ in range(20_000):
        value = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        view = encodings.view_of(value)
        if view is None:
            continue
        rebuilt = b""
        for p in range(len(view.data)):
            piece = value[view.to_value(p) : view.to_value(p + 1)]
            assert len(piece) in (1, 3, 6), (value, p)
            rebuilt += piece
            if len(piece) > 1:
                assert int(piece[-2:], 16) == view.data[p], (value, p)
            else:
                assert piece == view.data[p : p + 1], (value, p)
        assert rebuilt == value
