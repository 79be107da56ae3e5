"""The redaction stage on real batches: detectors and their validation, JSON safety, key policies,
hashing, content-free mode, user rules on RE2, configuration errors and bounded running time."""

from __future__ import annotations

import json
import random
import string
import time
from pathlib import Path

import pytest

from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.columns import COPIED_FROM, REDACTION_COUNTS
from tracehouse.collector.config import ConfigError, load_config, parse_config
from tracehouse.collector.stages import default_stages
from tracehouse.collector.stages.redact import (
    RedactionConfigError,
    Redactor,
    Scanner,
    build,
    parse_settings,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-hash-secret"


def fake(prefix: str, n: int, alphabet: str = string.ascii_letters + string.digits, seed: int = 1) -> str:
    """A key-shaped string built at run time, so no literal credential sits in the repository."""
    rng = random.Random(seed)
    body = "".join(rng.choice(alphabet) for _ in range(n - 2))
    return prefix + body + "7Q"


def redactor(table: dict | None = None) -> Redactor:
    return Redactor(parse_settings(table or {}, environ={}))


def redact(text: str, table: dict | None = None) -> str:
    return redactor(table).redact_text(text)[0]


def make_batch(spans: list[dict]) -> SpanBatch:
    """A batch with every otel_traces column; each span dict overrides the defaults it names."""
    defaults = {
        "Timestamp": 1_714_567_890_000_000_000,
        "TraceId": "0af7651916cd43dd8448eb211c80319c",
        "SpanId": "b7ad6b7169203331",
        "ParentSpanId": "",
        "TraceState": "",
        "SpanName": "chat",
        "SpanKind": "Client",
        "ServiceName": "svc",
        "ResourceAttributes": {"service.name": "svc"},
        "ScopeName": "",
        "ScopeVersion": "",
        "SpanAttributes": {},
        "Duration": 1000,
        "StatusCode": "Ok",
        "StatusMessage": "",
        "Events.Timestamp": [],
        "Events.Name": [],
        "Events.Attributes": [],
        "Links.TraceId": [],
        "Links.SpanId": [],
        "Links.TraceState": [],
        "Links.Attributes": [],
    }
    extra = sorted({key for span in spans for key in span} - set(OTEL_COLUMNS))
    columns = {name: [span.get(name, defaults[name]) for span in spans] for name in OTEL_COLUMNS}
    for name in extra:
        columns[name] = [span.get(name) for span in spans]
    return SpanBatch(columns)


# --- built-in detectors ---------------------------------------------------------------------------

POSITIVES = {
    "email": ["alice.smith@example.com", "Bob+news@mail.example.co.uk", "x_y-9@acme-corp.io"],
    "phone": [
        "+14155552671",
        "+1 (415) 555-2671",
        "(415) 555-2671",
        "415.555.2671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "020 7946 0958",
        "01 23 45 67 89",
        "+49 30 12345678",
        "+91 98765 43210",
        "03-1234-5678",
    ],
    "card": ["4111 1111 1111 1111", "4111-1111-1111-1111", "5500005555555559", "3782 822463 10005", "6011000990139424"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606"],
    "ssn": ["123-45-6780", "078-05-1121", "536 22 8726"],
    "ip": ["192.168.1.20", "8.8.4.4", "2001:db8::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.128"],
}

NEGATIVES = [
    "order #48213394",
    "ORD-2024-000123",
    "2024-05-01T12:34:56Z",
    "2024-05-01 12:34:56.789",
    "01.02.2024",
    "epoch 1714567890123",
    "3f2b8c9e-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
    "v1.2.3.4",
    "version 10.0.19041.1",
    "python 3.11.7",
    "$1,299.99",
    "4111 1111 1111 1112",
    "4111111111111112",
    "1714567890123456789",
    "000-12-3456",
    "666-12-3456",
    "912-34-5678",
    "123-00-4567",
    "999.1.2.3",
    "127.0.0.1",
    "0.0.0.0",
    "OID 1.3.6.1.4.1.311",
    "00:1A:2B:3C:4D:5E",
    "12:30:45",
    "std::vector<int>",
    "a[::2]",
    "DE00 3704 0044 0532 0130 00",
    "git@github.com:acme/app.git",
    "icon@2x.png",
    "npm i react@18.2.0",
    "user@localhost",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sk-learn",
    "Authorization: Bearer $OPENAI_API_KEY",
    "Basic usage is shown below",
    "-----BEGIN PUBLIC KEY-----",
    "http://localhost:8080/api?page=2",
]


@pytest.mark.parametrize("kind,value", [(k, v) for k, values in POSITIVES.items() for v in values])
def test_builtin_detector_finds_and_labels(kind, value):
    text, counts = redactor().redact_text(f"Hi, please note {value} thanks")
    assert text == f"Hi, please note [{kind.upper()}] thanks"
    assert counts == {kind: 1}


@pytest.mark.parametrize("value", NEGATIVES)
def test_hard_negatives_are_left_alone(value):
    text = f"see {value} here"
    assert redact(text) == text


def _secrets() -> list[tuple[str, str]]:
    """(text carrying a secret, the secret)."""
    jwt = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    b64 = string.ascii_letters + string.digits + "-_"
    pem_body = "\n".join(fake("MII", 64, string.ascii_letters + "+/", seed=i) for i in range(4))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----"
    openai = fake("sk-proj-", 120, b64)
    anthropic = fake("sk-ant-api03-", 95, b64)
    aws = fake("AKIA", 16, string.ascii_uppercase + "234567")
    github = fake("ghp_", 36)
    slack = "xoxb-" + "12345678901-" + fake("", 24)
    stripe = fake("sk_live_", 24)
    google = fake("AIza", 35, b64)
    bearer = fake("", 40)
    basic = "YWxhZGRpbjpvcGVuc2VzYW1l"  # aladdin:opensesame
    return [
        (f"OPENAI_API_KEY={openai}", openai),
        (f'client = Anthropic(api_key="{anthropic}")', anthropic),
        (f"aws_access_key_id = {aws}", aws),
        (f"git clone https://{github}@github.com/acme/app.git", github),
        (f"SLACK_BOT_TOKEN={slack}", slack),
        (f"stripe.api_key = '{stripe}'", stripe),
        (f"https://maps.googleapis.com/maps/api/geocode/json?key={google}", google),
        (f"session {jwt} expired", jwt),
        (f"my deploy key:\n{pem}\nwhy is it rejected?", pem),
        (f"curl -H 'Authorization: Bearer {bearer}' https://api.example.com", bearer),
        (f"Authorization: Basic {basic}", basic),
        ("DATABASE_URL=postgres://app:S3cr3t!pw@db.internal:5432/prod", "S3cr3t!pw"),
    ]


@pytest.mark.parametrize("text,secret", _secrets(), ids=lambda x: x[:24])
def test_secrets_are_replaced(text, secret):
    out, counts = redactor().redact_text(text)
    assert secret not in out
    assert "[SECRET]" in out
    assert counts == {"secret": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A key glued to a name by `_` (an attacker's score comment, a batch id): `_` is a word byte, so no
        # detector started there and the key went to disk.
        ("key_" + fake("sk-proj-", 40, string.ascii_letters + string.digits), "key_[SECRET]"),
        ("batch_" + fake("sk-", 48, string.ascii_letters + string.digits), "batch_[SECRET]"),
        ("MY_" + fake("AKIA", 16, string.ascii_uppercase + "234567"), "MY_[SECRET]"),
        ("tok_" + fake("ghp_", 36), "tok_[SECRET]"),
        # An address followed by `-` or `_`: the domain ends there, the address was dropped whole.
        ("mail me at glued.user@corp-example.net-- or", "mail me at [EMAIL]-- or"),
        ("x@corp-example.net_x", "[EMAIL]_x"),
        ("x@corp-example.net-x", "[EMAIL]-x"),
    ],
)
def test_secrets_and_addresses_glued_to_word_bytes_are_found(text, expected):
    assert redact(text) == expected


def test_header_and_url_keep_their_shape():
    assert redact("Authorization: Bearer abcdef0123456789abcdef") == "Authorization: Bearer [SECRET]"
    assert redact("redis://:hunter2pass@cache:6379/0") == "redis://:[SECRET]@cache:6379/0"


def test_validation_cuts_false_positives():
    scanner = Scanner()
    assert scanner.detect("4111 1111 1111 1111") == [("card", 0, 19)]
    assert scanner.detect("4111 1111 1111 1112") == []  # Luhn fails
    assert scanner.detect("1234 5678 9012 3452") == []  # passes Luhn, no card network starts with 1
    assert scanner.detect("GB82 WEST 1234 5698 7654 32") == [("iban", 0, 27)]
    assert scanner.detect("GB83 WEST 1234 5698 7654 32") == []  # mod 97 fails
    assert scanner.detect("256.1.1.1 and 1.2.3.4.5") == []
    assert scanner.detect("2001:db8::g1") == []
    assert scanner.detect("(415) 511-2671") == []  # N11 exchange


def test_json_stays_valid_and_loses_the_values():
    card, email, phone = "4111111111111111", "alice@example.com", "+44 20 7946 0958"
    key = fake("sk-proj-", 80)
    content = f'Contact:\n{email}\tcard\u00a0{card}\nphone:{phone}\nkey "{key}" café'
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "ok"}]
    for ascii_only in (True, False):
        raw = json.dumps(messages, ensure_ascii=ascii_only)
        out, counts = redactor().redact_text(raw)
        parsed = json.loads(out)
        assert counts == {"email": 1, "card": 1, "phone": 1, "secret": 1}
        text = parsed[0]["content"]
        for value in (card, email, phone, key):
            assert value not in out
        assert text.startswith("Contact:\n[EMAIL]\tcard\u00a0[CARD]\nphone:[PHONE]")
        assert text.endswith('key "[SECRET]" café')


def test_json_with_private_key_and_nested_json_stays_valid():
    pem = "-----BEGIN PRIVATE KEY-----\n" + fake("MIIE", 64) + "\n-----END PRIVATE KEY-----"
    inner = json.dumps({"key": pem, "ip": "10.1.2.3"})
    outer = json.dumps({"tool_result": inner, "ssn": "123-45-6780"})
    out = redact(outer)
    decoded = json.loads(out)
    assert json.loads(decoded["tool_result"]) == {"key": "[SECRET]", "ip": "[IP]"}
    assert decoded["ssn"] == "[SSN]"


def test_hash_mode_for_builtins_gives_stable_typed_tokens():
    table = {"mode": "hash", "hash_secret": SECRET}
    one = redact("mail alice@example.com and alice@example.com and bob@example.com", table)
    tokens = one.replace("mail ", "").split(" and ")
    assert tokens[0] == tokens[1] != tokens[2]
    assert tokens[0].startswith("[EMAIL:") and len(tokens[0]) == len("[EMAIL:]") + 16
    assert redact("alice@example.com", table) == tokens[0]


# --- the stage over batches -----------------------------------------------------------------------


def test_stage_redacts_every_string_and_counts_per_span():
    shared_resource = {"service.name": "svc", "host.ip": "10.0.0.7"}
    event = {"exception.message": "failed for bob@example.com", "exception.type": "ValueError"}
    link = {"note": "see 4111 1111 1111 1111"}
    batch = make_batch(
        [
            {
                "SpanName": "lookup alice@example.com",
                "StatusMessage": "card 5500005555555559 declined",
                "ResourceAttributes": shared_resource,
                "SpanAttributes": {"input.value": "call +1 (415) 555-2671", "llm.token_count.prompt": "12"},
                "Events.Name": ["exception"],
                "Events.Attributes": [event],
                "Links.Attributes": [link],
                "InputMessages": '[{"role":"user","content":[{"type":"text","text":"ssn 123-45-6780"}]}]',
                "UserId": "carol@example.com",
                "InputTokens": 12,
            },
            {"ResourceAttributes": shared_resource, "SpanAttributes": {"x": "nothing here"}, "InputMessages": ""},
        ]
    )
    before = {k: list(v) if isinstance(v, list) else v for k, v in batch.columns.items()}
    shared_copy, event_copy, link_copy = dict(shared_resource), dict(event), dict(link)
    out = redactor()(batch)
    c = out.columns
    assert c["SpanName"][0] == "lookup [EMAIL]"
    assert c["StatusMessage"][0] == "card [CARD] declined"
    assert c["ResourceAttributes"][0] == {"service.name": "svc", "host.ip": "[IP]"}
    assert c["ResourceAttributes"][1] is c["ResourceAttributes"][0]  # shared stays shared
    assert c["SpanAttributes"][0] == {"input.value": "call [PHONE]", "llm.token_count.prompt": "12"}
    assert c["Events.Attributes"][0] == [{"exception.message": "failed for [EMAIL]", "exception.type": "ValueError"}]
    assert c["Links.Attributes"][0] == [{"note": "see [CARD]"}]
    assert json.loads(c["InputMessages"][0])[0]["content"][0]["text"] == "ssn [SSN]"
    assert c["UserId"][0] == "[EMAIL]"
    assert c["InputTokens"] == [12, None]
    assert c[REDACTION_COUNTS] == [{"email": 3, "card": 2, "ip": 1, "phone": 1, "ssn": 1}, {"ip": 1}]
    assert c["SpanAttributes"][1] is batch.columns["SpanAttributes"][1]  # unchanged dicts are reused
    # nothing the input batch holds was mutated
    assert (shared_resource, event, link) == (shared_copy, event_copy, link_copy)
    assert batch.columns["SpanName"] == before["SpanName"]
    assert REDACTION_COUNTS not in batch.columns


def test_key_policies_keep_redact_hash_drop():
    table = {
        "hash_secret": SECRET,
        "attributes": {
            "db.statement": "keep",
            "user.id": "hash",
            "http.request.header.x-internal": "redact",
            "debug.*": "drop",
            "app.note": "mask",
        },
    }
    attrs = {
        "db.statement": "SELECT * FROM users WHERE email = 'alice@example.com'",
        "user.id": "u-42",
        "http.request.header.x-internal": "anything",
        "debug.dump": "x",
        "debug.more": "y",
        "app.note": "fine",
        "app.password": "hunter2",  # built-in default policy: *password* is masked
        "other": "alice@example.com",
    }
    batch = make_batch([{"SpanAttributes": attrs, "UserId": "u-42"}])
    out = redactor(table)(batch).columns
    got = out["SpanAttributes"][0]
    assert got["db.statement"] == attrs["db.statement"]
    assert got["user.id"].startswith("[HASH:") and "u-42" not in got["user.id"]
    assert got["http.request.header.x-internal"] == "[REDACTED]"
    assert "debug.dump" not in got and "debug.more" not in got
    assert got["app.note"] == "[REDACTED]"
    assert got["app.password"] == "[REDACTED]"
    assert got["other"] == "[EMAIL]"
    assert out["UserId"][0] == got["user.id"]  # a policy on user.id also covers the UserId column
    assert out[REDACTION_COUNTS][0] == {"hashed": 2, "masked": 3, "dropped": 2, "email": 1}


@pytest.mark.parametrize(("column", "key"), [(column, key) for column, keys in COPIED_FROM.items() for key in keys])
def test_a_policy_on_any_attribute_a_column_is_copied_from_covers_the_column(column, key):
    """tracehouse.user, the app side's own attribute, used to be missing: its hash left UserId in clear."""
    table = {"hash_secret": SECRET, "attributes": {key: "hash"}}
    batch = make_batch([{"SpanAttributes": {key: "u-42"}, column: "u-42"}])
    out = redactor(table)(batch).columns
    assert out["SpanAttributes"][0][key].startswith("[HASH:")
    assert out[column][0] == out["SpanAttributes"][0][key]


def test_every_attribute_identity_reads_is_one_a_column_is_copied_from():
    from tracehouse.collector.stages.normalize import identity

    read = {
        "UserId": (*identity.USER_ATTRIBUTES, *identity.USER_FALLBACK_ATTRIBUTES),
        "SessionId": identity.SESSION_ATTRIBUTES,
        "TenantId": (identity.TENANT_ATTRIBUTE,),
        "Feature": (identity.FEATURE_ATTRIBUTE,),
    }
    for column, keys in read.items():
        assert set(keys) <= set(COPIED_FROM[column]), column


def test_hash_groups_equal_values_separates_others_and_is_stable_across_restarts():
    table = {"hash_secret": SECRET, "attributes": {"user.id": "hash"}}
    spans = [{"SpanAttributes": {"user.id": uid}} for uid in ("alice", "bob", "alice")]
    first = [a["user.id"] for a in redactor(table)(make_batch(spans)).columns["SpanAttributes"]]
    second = [a["user.id"] for a in redactor(table)(make_batch(spans)).columns["SpanAttributes"]]
    assert first[0] == first[2] != first[1]
    assert first == second  # a new Redactor (a restart) with the same secret
    other_secret = {"hash_secret": "another", "attributes": {"user.id": "hash"}}
    third = [a["user.id"] for a in redactor(other_secret)(make_batch(spans)).columns["SpanAttributes"]]
    assert third[0] != first[0]


def test_hash_without_secret_stops_start_up():
    with pytest.raises(RedactionConfigError, match="hash_secret"):
        parse_settings({"attributes": {"user.id": "hash"}}, environ={})
    settings = parse_settings(
        {"attributes": {"user.id": "hash"}}, environ={"TRACEHOUSE_REDACTION_HASH_SECRET": "from-env"}
    )
    assert settings.hash_secret == b"from-env"


def test_content_free_mode_keeps_metadata_and_drops_content():
    table = {"content_free": {"services": ["billing-bot"], "features": ["triage"]}}
    content_attrs = {
        "input.value": "my card is 4111 1111 1111 1111",
        "output.value": "ok",
        "llm.input_messages.0.message.content": "hello",
        "gen_ai.prompt.0.content": "hello",
        "gen_ai.input.messages": "[]",
        "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": "120",
        "llm.token_count.completion": "30",
        "gen_ai.usage.input_tokens": "120",
        "llm.cost.total": "0.0012",
    }
    spans = [
        {
            "ServiceName": "billing-bot",
            "SpanAttributes": content_attrs,
            "Events.Name": ["gen_ai.choice"],
            "Events.Attributes": [{"message": "the answer", "finish_reason": "stop"}],
            "InputMessages": '[{"role":"user"}]',
            "OutputMessages": '[{"role":"assistant"}]',
            "SystemPrompt": "be nice",
            "LlmRequestModel": "gpt-4o-mini",
            "InputTokens": 120,
            "OutputTokens": 30,
            "CostUsd": 0.0012,
            "Feature": "",
        },
        {"ServiceName": "chat", "Feature": "triage", "SpanAttributes": {"input.value": "hi"}, "InputMessages": "x"},
        {"ServiceName": "chat", "Feature": "search", "SpanAttributes": content_attrs, "InputMessages": "kept"},
    ]
    out = redactor(table)(make_batch(spans)).columns
    kept = out["SpanAttributes"][0]
    assert kept == {
        "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": "120",
        "llm.token_count.completion": "30",
        "gen_ai.usage.input_tokens": "120",
        "llm.cost.total": "0.0012",
    }
    assert out["Events.Attributes"][0] == [{"finish_reason": "stop"}]
    assert (out["InputMessages"][0], out["OutputMessages"][0], out["SystemPrompt"][0]) == ("", "", "")
    assert (out["LlmRequestModel"][0], out["InputTokens"][0], out["OutputTokens"][0]) == ("gpt-4o-mini", 120, 30)
    assert out["CostUsd"][0] == 0.0012
    assert out[REDACTION_COUNTS][0] == {"content_dropped": 9}
    assert out["SpanAttributes"][1] == {} and out["InputMessages"][1] == ""  # selected by feature
    assert out["SpanAttributes"][2]["input.value"] == "my card is [CARD]"  # other services keep content
    assert out["InputMessages"][2] == "kept"


# --- user rules -----------------------------------------------------------------------------------


def test_user_rules_allow_list_and_detector_choice():
    table = {
        "rules": [
            {"name": "employee_id", "pattern": r"EMP-[0-9]{6}", "replacement": "[EMPLOYEE]"},
            {"name": "ticket", "pattern": r"\bTCK[0-9]+\b"},
            {"name": "whole_value", "pattern": r"^secret-project$"},
        ],
        "allow": ["support@example.com"],
        "allow_patterns": [r"[a-z]+@tracehouse\.dev"],
    }
    r = redactor(table)
    text, counts = r.redact_text(
        "EMP-123456 opened TCK99 for alice@example.com; cc support@example.com, ops@tracehouse.dev"
    )
    assert text == "[EMPLOYEE] opened [TICKET] for [EMAIL]; cc support@example.com, ops@tracehouse.dev"
    assert counts == {"employee_id": 1, "ticket": 1, "email": 1}
    batch = make_batch([{"SpanAttributes": {"a": "secret-project", "b": "a secret-project here"}}])
    assert r(batch).columns["SpanAttributes"][0] == {"a": "[WHOLE_VALUE]", "b": "a secret-project here"}
    only_email = redactor({"detectors": ["email"]})
    assert only_email.redact_text("alice@example.com 4111 1111 1111 1111")[0] == "[EMAIL] 4111 1111 1111 1111"


def test_user_rule_in_hash_mode_and_across_json_escapes():
    table = {"hash_secret": SECRET, "rules": [{"name": "code", "pattern": "[0-9]{4}", "mode": "hash"}]}
    out = redact(json.dumps({"t": "\u2028 code 1234 and 1234"}), table)
    decoded = json.loads(out)  # "\u2028" is escaped as \u2028: the rule must not cut into the escape
    first, second = decoded["t"].split(" and ")
    assert first.startswith("\u2028 code [CODE:") and first.split(" ")[-1] == second


def test_user_rule_that_cuts_json_syntax_keeps_the_value_valid_json():
    out = redact(json.dumps({"ssn": "x", "note": "y"}), {"rules": [{"name": "kv", "pattern": r'"ssn": "[^"]*"'}]})
    assert json.loads(out) is not None


@pytest.mark.parametrize(
    "rule,message",
    [
        ({"name": "backref", "pattern": r"(a)\1"}, "redaction rule 'backref': pattern is not valid RE2"),
        ({"name": "lookahead", "pattern": r"foo(?=bar)"}, "redaction rule 'lookahead': pattern is not valid RE2"),
        ({"name": "empty", "pattern": r"a*"}, "matches the empty string"),
        ({"name": "email", "pattern": "x"}, "already used"),
        ({"name": "Bad Name", "pattern": "x"}, "name must match"),
        ({"name": "quote", "pattern": "x", "replacement": '"'}, "without quotes"),
    ],
)
def test_bad_rules_stop_start_up_with_the_rule_named(rule, message):
    with pytest.raises(RedactionConfigError, match=message):
        parse_settings({"rules": [rule]}, environ={})


def test_config_errors_are_config_errors_and_name_the_setting():
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_settings({"enabeld": False}, environ={})
    with pytest.raises(ConfigError, match="redaction.attributes"):
        parse_settings({"attributes": {"x": "shred"}}, environ={})
    with pytest.raises(ConfigError, match="redaction.detectors"):
        parse_settings({"detectors": ["dna"]}, environ={})


def test_config_file_and_switches(tmp_path):
    path = tmp_path / "tracehouse.toml"
    path.write_text(
        """
[redaction]
allow = ["support@example.com"]

[[redaction.rules]]
name = "employee_id"
pattern = 'EMP-[0-9]{6}'

[redaction.attributes]
"user.id" = "keep"
"""
    )
    config = load_config(path, environ={})
    r = build(config)
    assert r is not None and r.redact_text("EMP-000001")[0] == "[EMPLOYEE_ID]"
    assert build(load_config(path, environ={"TRACEHOUSE_REDACTION": "off"})) is None
    off = {"redaction": {"enabled": False}}
    assert build(parse_config(off, environ={})) is None
    assert build(parse_config(off, environ={"TRACEHOUSE_REDACTION": "on"})) is not None
    assert build(load_config(environ={})) is not None  # on by default


def test_default_stages_end_with_the_redactor(monkeypatch):
    monkeypatch.delenv("TRACEHOUSE_REDACTION", raising=False)
    stages = default_stages(load_config(environ={}))
    assert isinstance(stages[-1], Redactor)
    off = load_config(environ={"TRACEHOUSE_REDACTION": "off"})
    assert not any(isinstance(stage, Redactor) for stage in default_stages(off))


def test_migration_adds_the_counts_column():
    sql = (ROOT / "schema" / "0005_redaction.sql").read_text()
    assert "ADD COLUMN IF NOT EXISTS RedactionCounts Map(LowCardinality(String), UInt32)" in sql


# --- bounded time ---------------------------------------------------------------------------------


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_catastrophic_backtracking_pattern_runs_in_linear_time():
    r = redactor({"rules": [{"name": "evil", "pattern": "(a+)+$"}, {"name": "evil2", "pattern": "(x+x+)+y"}]})
    text = "a" * 100_000 + "!"
    elapsed = _timed(lambda: r.redact_text(text))
    assert elapsed < 5, elapsed
    assert r.redact_text("x" * 100_000)[0] == "x" * 100_000
    assert r.redact_text("aaa")[0] == "[EVIL]"


@pytest.mark.parametrize(
    "text",
    [
        "1" * 1_000_000,
        "1 " * 500_000,
        "4111 " * 200_000,
        "a@" * 500_000,
        "a." * 500_000 + "@x.com",
        "-----BEGIN PRIVATE KEY-----" + "A" * 1_000_000,
        "-----BEGIN PRIVATE KEY-----\n" * 40_000,
        ":" * 1_000_000,
        "1:" * 500_000,
        "+1 " * 300_000,
        "(0" * 500_000,
        "DE89 " * 200_000,
        "Authorization: Bearer " * 40_000,
        "postgres://" + "a" * 1_000_000 + ":",
        "\\u00a0" * 150_000,
        "eyJ" + "a" * 1_000_000,
    ],
    ids=lambda t: repr(t[:14]),
)
def test_adversarial_inputs_do_not_stall_the_builtins(text):
    elapsed = _timed(lambda: redactor().redact_text(text))
    assert elapsed < 5, elapsed


def test_ten_megabyte_attribute_value():
    rng = random.Random(3)
    words = "the customer asked about the refund for order 48213 placed on 2024-05-01 at 12:30".split()
    filler = " ".join(rng.choice(words) for _ in range(1_700_000))
    value = filler[:10_000_000] + " reach me at alice@example.com"
    batch = make_batch([{"SpanAttributes": {"input.value": value}, "InputMessages": value}])
    out = None

    def run():
        nonlocal out
        out = redactor()(batch)

    elapsed = _timed(run)
    assert elapsed < 5, elapsed
    assert out.columns["SpanAttributes"][0]["input.value"].endswith("reach me at [EMAIL]")
    assert out.columns[REDACTION_COUNTS][0] == {"email": 2}


def test_a_flood_of_failing_candidates_is_masked_whole_not_passed_through():
    text = "4111 " * 200_000  # every group starts a card candidate, none validates
    out, counts = redactor().redact_text(text)
    assert (out, counts) == ("[REDACTED]", {"overload": 1})
    batch = make_batch([{"SpanAttributes": {"a": json.dumps([text]), "b": "mail alice@example.com"}}])
    attrs = redactor()(batch).columns["SpanAttributes"][0]
    assert attrs == {"a": '"[REDACTED]"', "b": "mail [EMAIL]"}  # JSON stays JSON, other values are scanned


def test_equal_values_in_a_batch_are_scanned_once_and_redacted_everywhere():
    from tracehouse.collector.stages.redact.scanner import Scanner

    prompt = "You are a helpful agent. Escalate to ops@example.com."
    results = Scanner().scan_values([prompt, "nothing here to see", prompt, prompt])
    assert results[1] is None
    assert results[0] == results[2] == results[3]
    assert results[0][0] == "You are a helpful agent. Escalate to [EMAIL]."
    assert results[0][1] == {"email": 1}
