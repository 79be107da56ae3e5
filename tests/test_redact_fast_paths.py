"""The redactor's batch-level shortcuts must not change what it writes (issue 19).

The fast paths: one join and one encode per batch (value bytes sliced from it), values too short to hold
a finding skipped, equal values scanned once, the base64 test's cheap pre-checks, per key set policy plans
(`_Shape`) and key scans kept across maps and batches. Each is checked against the plain way of doing the
same work: every value scanned alone, every span redacted alone by a fresh redactor.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import sys
from pathlib import Path

import pytest

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import CONTENT_SAMPLED, REDACTION_COUNTS, SAMPLED_DROPPED
from tracehouse.collector.stages.redact import Redactor, Scanner, parse_settings, validators

DATA = Path(__file__).parent / "data" / "redaction"
sys.path.insert(0, str(DATA))
sys.path.insert(0, str(Path(__file__).parent))

import make_corpus  # noqa: E402
from test_redact import make_batch  # noqa: E402

SETTINGS = {
    "default": {},
    "policies": {
        "attributes": {"user.id": "hash", "session.id": "drop", "tag": "keep", "k.*": "redact"},
        "hash_secret": "s",
        "content_free": {"services": ["cf-*"]},
    },
    "hash_mode_allow": {
        "mode": "hash",
        "hash_secret": "s",
        "allow": ["alice@example.com"],
        "allow_patterns": [r"10\.0\.0\.[0-9]+"],
    },
    "rules": {
        "rules": [{"name": "ticket", "pattern": "T-[0-9]{3,}"}, {"name": "whole", "pattern": "^openai$"}],
        "columns": {"SpanName": "hash", "StatusMessage": "drop"},
        "hash_secret": "s",
        "default_policies": False,
    },
}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """The corpus plus the shapes the shortcuts treat apart: non-ASCII, escapes, base64, short values."""
    docs = [doc["text"] for doc in make_corpus.load()]
    rng = random.Random(19)
    extra = [
        "",
        "a",
        "LLM",
        "1.1.1",
        "a@b.c",
        "a@b.co",
        "T-123",
        "openai",
        "écrire à alice@example.com",
        "naïve 4111 1111 1111 1111 ünd",
        "mail alice\\u0040example.com",
        "mail alice%40example.com",
        base64.b64encode(b"mail bob@example.org please").decode(),
        base64.b64encode(bytes(range(64))).decode(),
    ]
    for doc in rng.sample(docs, 200):
        extra.append(doc.replace("@", "\\u0040"))
        extra.append("ü " + doc)
    return docs + extra


@pytest.mark.parametrize("name", list(SETTINGS))
def test_batched_scan_matches_scanning_each_value_alone(texts, name):
    scanner = Redactor(parse_settings(SETTINGS[name], environ={}))._scanner
    alone = [scanner.scan(text) for text in texts]
    assert sum(result is not None for result in alone) > 1000  # the corpus is full of findings
    for size in (7, 100, 1000):
        batched = []
        for i in range(0, len(texts), size):
            batched += scanner.scan_values(texts[i : i + size])
        assert batched == alone
    doubled = texts[:300] + texts[:300]  # duplicates are scanned once and given to each
    assert scanner.scan_values(doubled) == alone[:300] * 2


def test_short_values_are_skipped_only_where_nothing_can_match():
    plain = Scanner()
    assert plain.min_len == 6
    assert [plain.scan(v) for v in ("a@b.c", "1.1.1", "x" * 5)] == [None, None, None]
    assert plain.scan("a@b.co") is not None  # the shortest finding is not skipped
    rules = Redactor(parse_settings(SETTINGS["rules"], environ={}))._scanner
    assert rules.min_len == 1
    assert rules.scan_values(["T-123", "ab"]) == [("[TICKET]", {"ticket": 1}), None]


def _random_batches(texts: list[str], n: int, seed: int) -> list[SpanBatch]:
    rng = random.Random(seed)
    keys = [
        "input.value",
        "output.value",
        "llm.model_name",
        "user.id",
        "session.id",
        "db.password",
        "tag",
        "ab",
        "alice@example.com",
        "k.alice@example.com",
        "4111 1111 1111 1111",
        "k.4111 1111 1111 1111",
        "llm.input_messages.0.message.content",
    ]

    def attrs() -> dict[str, str]:
        chosen = rng.sample(keys, rng.randint(0, 7))
        return {k: rng.choice([rng.choice(texts), rng.choice(texts)[:20], "", "openai"]) for k in chosen}

    batches = []
    for _ in range(n):
        shared = attrs()
        shapes = [rng.sample(keys, rng.randint(1, 6)) for _ in range(3)]
        spans = []
        for _ in range(rng.randint(1, 30)):
            roll = rng.random()
            if roll < 0.2:
                span_attrs = shared  # one dict shared by many spans (decode reuses resource dicts)
            elif roll < 0.7:
                span_attrs = {k: rng.choice(texts) for k in rng.choice(shapes)}  # one instrumentation's key set
            else:
                span_attrs = attrs()
            names = [rng.choice(texts)[:20] for _ in range(rng.randint(0, 2))]
            spans.append(
                {
                    "SpanAttributes": span_attrs,
                    "ResourceAttributes": rng.choice([{"service.name": "svc"}, shared]),
                    "ServiceName": rng.choice(["svc", "cf-svc"]),
                    "SpanName": rng.choice(texts)[:40],
                    "StatusMessage": rng.choice(["", rng.choice(texts)]),
                    "Events.Timestamp": [1] * len(names),
                    "Events.Name": names,
                    "Events.Attributes": [rng.choice([shared, attrs(), {}]) for _ in names],
                    CONTENT_SAMPLED: rng.choice(["kept", SAMPLED_DROPPED, "kept"]),
                }
            )
        batches.append(make_batch(spans))
    return batches


def _span(batch: SpanBatch, i: int) -> SpanBatch:
    return SpanBatch({name: [data[i]] for name, data in batch.columns.items()})


@pytest.mark.parametrize("name", list(SETTINGS))
def test_stage_on_a_batch_matches_each_span_redacted_alone(texts, name):
    settings = parse_settings(SETTINGS[name], environ={})
    warm = Redactor(settings)  # keeps its key-set plans and clean keys from batch to batch
    found = renamed = 0
    for batch in _random_batches(texts, 12, seed=len(name)):
        out = warm(batch).columns
        assert warm(batch).columns == out  # again, with its values remembered clean and its key sets planned
        for i in range(len(batch)):
            alone = Redactor(settings)(_span(batch, i)).columns
            assert {column: data[i] for column, data in out.items()} == {c: d[0] for c, d in alone.items()}
        found += sum(bool(counts) for counts in out[REDACTION_COUNTS])
        renamed += sum(1 for attrs in out["SpanAttributes"] for key in attrs if "[" in key)
    assert found > 50
    assert renamed > 5  # keys holding PII were scanned and rewritten, in the batch as alone


def _ipv4_by_ipaddress(text: str) -> bool:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


def test_ipv4_check_agrees_with_the_ipaddress_module():
    rng = random.Random(4)
    cases = [
        "0.0.0.0",
        "127.0.0.1",
        "127.255.255.254",
        "126.0.0.1",
        "128.0.0.1",
        "1.2.3.4",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3.04",
        "1.2.3",
        "1.2.3.4.5",
        "1..3.4",
        "",
        "1.2.3.4 ",
        " 1.2.3.4",
        "1.2.3.٤",
        "1.2.3.4/8",
        "0.1.2.3",
        "10.0.0.0",
        "1.2.3.+4",
        "1.2.3.-4",
        "1.2.3.1_0",
    ]
    octets = [0, 1, 9, 10, 99, 100, 127, 199, 255, 256, 999]
    for _ in range(20000):
        cases.append(".".join(str(rng.choice([*octets, rng.randint(0, 300)])) for _ in range(4)))
        cases.append("".join(rng.choice("0123456789..") for _ in range(rng.randint(1, 16))))
    for text in cases:
        assert validators.ipv4_ok(text) is _ipv4_by_ipaddress(text), text


def test_clean_values_are_remembered_across_calls_and_nothing_else_is(monkeypatch):
    scanner = Scanner(remember_clean=4096)
    seen: list[list[str]] = []
    scan_distinct = scanner._scan_distinct

    def spy(values, decoded=False):
        if not decoded:
            seen.append(list(values))
        return scan_distinct(values, decoded)

    monkeypatch.setattr(scanner, "_scan_distinct", spy)
    clean = "the assistant answers questions about invoices and refunds politely " * 3
    dirty = clean + "write to alice@example.com"
    short = "plain words only"
    first = scanner.scan_values([clean, dirty, short])
    second = scanner.scan_values([clean, dirty, short])
    assert first == second == [None, (clean + "write to [EMAIL]", {"email": 1}), None]
    assert seen[0] == [clean, dirty, short]
    assert seen[1] == [dirty, short]  # the long clean value is not scanned again; findings always are
    assert Scanner().scan_values([clean]) == [None] and Scanner()._clean is None  # off unless asked for


def test_remembered_clean_values_stay_within_their_budget():
    scanner = Scanner(remember_clean=10_000)
    rng = random.Random(8)
    for _ in range(50):
        values = ["".join(rng.choice("abcdefgh ") for _ in range(rng.randint(128, 900))) for _ in range(20)]
        assert scanner.scan_values(values) == [None] * 20
        assert scanner._clean.chars <= 10_000
    value = values[-1]
    assert scanner._clean.known(value)


def test_remembered_keys_and_key_sets_stay_within_their_budget(monkeypatch):
    """Found by an attacker's try: a client sending ever new, long attribute keys made the redactor keep every
    clean key and key set (95 MB held after 50 batches of two 1 MB keys). Long keys are not remembered, and the
    memories start again at their character budgets; a key with a finding is redacted whatever was forgotten."""
    import os
    import tracemalloc

    from tracehouse.collector.stages.redact import stage

    redactor = Redactor(parse_settings({}, environ={}))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            attrs = {os.urandom(8).hex() + "k" * 1_000_000: "v" for _ in range(2)}
            out = redactor(make_batch([{"SpanAttributes": attrs}])).columns["SpanAttributes"][0]
            assert set(out) == set(attrs)
            del attrs, out
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 24 << 20, f"{held >> 20} MB held after the batches"

    monkeypatch.setattr(stage, "_MAX_CLEAN_KEY_CHARS", 2_000)
    monkeypatch.setattr(stage, "_MAX_SHAPES", 5)
    small = Redactor(parse_settings({}, environ={}))
    for n in range(300):  # restarts both memories many times over
        keys = {f"app.attribute.{n}.{i}": "v" for i in range(3)}
        assert set(small(make_batch([{"SpanAttributes": keys}])).columns["SpanAttributes"][0]) == set(keys)
        assert small._clean_key_chars <= 2_000 and len(small._shapes) <= 5
    leaked = {"app.attribute.1.0": "v", "owner.alice@example.com": "v"}
    for _ in range(2):
        out = small(make_batch([{"SpanAttributes": leaked}])).columns["SpanAttributes"][0]
        assert "app.attribute.1.0" in out and not any("alice@example.com" in key for key in out), out


def test_an_ip_at_the_start_of_a_value_does_not_depend_on_the_value_before_it():
    """The IPv4 check looks back a few bytes for words like "version" (a version string is no address); in a
    batch the values are joined, and that look-back stopped reaching into the previous value."""
    scanner = Scanner()
    value = "10.20.30.40 is the gateway of the office"
    alone = scanner.scan(value)
    assert alone is not None and alone[1] == {"ip": 1}
    for before in ("release", "build", "chrome/", "app version"):
        assert scanner.scan_values([before, value]) == [None, alone], before
    assert scanner.scan("version 10.20.30.40 of the firmware") is None  # in the value itself it still counts
