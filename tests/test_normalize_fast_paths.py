"""The shortcuts that keep normalize cheap per span give the same results as the long way round: memos keyed by
a span's key text, the one-scan grouping of indexed keys, and writing columns in place."""

from __future__ import annotations

import random

import pytest
from normalize_support import mapper_failures, normalized, normalized_rows

from tracehouse.collector.columns import LLM_COLUMNS
from tracehouse.collector.stages.normalize import memo
from tracehouse.collector.stages.normalize.columns import clear_row, empty_columns
from tracehouse.collector.stages.normalize.dispatch import Dispatch
from tracehouse.collector.stages.normalize.flat import IndexedFamilies, group_indexed, ordered
from tracehouse.collector.stages.normalize.mapper import Mapper, key_text
from tracehouse.collector.stages.normalize.registry import MAPPERS

PREFIXES = ("llm.input_messages.", "llm.output_messages.", "llm.tools.")


def _slow_groups(attrs: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    return {prefix: ordered(entries) for prefix, entries in group_indexed(attrs, PREFIXES).items()}


def test_one_scan_grouping_equals_testing_every_key():
    rnd = random.Random(7)
    families = IndexedFamilies(PREFIXES)
    parts = ["llm.input_messages.", "llm.output_messages.", "llm.tools.", "llm.toolsx.", "llm.model_name", "x."]
    indices = ["0", "1", "2", "10", "01", "x", "", "٣", "1234567890"]
    rests = ["message.role", "message.content", "tool.name", "a.b.c", ""]
    for _ in range(500):
        attrs = {
            rnd.choice(parts) + rnd.choice(indices) + rnd.choice([".", "", ".."]) + rnd.choice(rests): str(i)
            for i in range(rnd.randint(0, 12))
        }
        for _ in range(3):  # grouped directly, then planned, then from the plan
            assert families.ordered_groups(attrs, key_text(attrs)) == _slow_groups(attrs), attrs


def test_a_key_holding_the_separator_is_not_split():
    families = IndexedFamilies(PREFIXES)
    clean = {"a": "1", "llm.input_messages.0.message.role": "user"}
    tricky = {"a\x00llm.input_messages.0.message.role": "1"}  # the same key text, one key
    assert key_text(clean) == key_text(tricky)
    assert families.ordered_groups(clean, key_text(clean)) == {"llm.input_messages.": [{"message.role": "user"}]}
    assert families.ordered_groups(tricky, key_text(tricky)) == {}


def test_spans_with_the_same_keys_keep_their_own_values():
    first, second = normalized_rows(
        [
            {"attrs": {"openinference.span.kind": "LLM", "llm.input_messages.0.message.content": "one"}},
            {"attrs": {"openinference.span.kind": "LLM", "llm.input_messages.0.message.content": "two"}},
        ]
    )
    assert first["InputMessages"] != second["InputMessages"]
    assert "two" in second["InputMessages"]


def test_the_short_way_to_read_an_openinference_message_agrees_with_the_long_way():
    from tracehouse.collector.stages.normalize.openinference import _message, _rich_message

    rnd = random.Random(12)
    keys = [
        "message.role",
        "message.content",
        "message.tool_call_id",
        "message.name",
        "message.contents.0.message_content.text",  # LangChain: a string item of a content list, no type
        "message.contents.0.message_content.type",
        "message.tool_calls.0.tool_call.function.name",
        "message.function_call_name",
    ]
    values = ["user", "assistant", "hi", "text", "get_weather", "x" * 200_000]
    for _ in range(500):
        flat = {rnd.choice(keys): rnd.choice(values) for _ in range(rnd.randint(1, 2))}
        assert _message(flat, "user") == _rich_message(flat, "user"), flat
    # The LangChain shape that a two-key shortcut used to read as an empty message.
    flat = {"message.role": "user", "message.contents.0.message_content.text": "Weather in Paris?"}
    assert _message(flat, "user")["content"] == [{"type": "text", "text": "Weather in Paris?"}]


def test_dispatch_remembers_per_key_text_and_event_names():
    dispatch = Dispatch()
    keys = key_text(["gen_ai.operation.name"])
    # The deprecated forms share the gen_ai. prefix, but read none of the current keys: skipped without events.
    assert [m.name for m in dispatch.applicable(MAPPERS, keys, "")] == ["genai"]
    both = key_text(["gen_ai.operation.name", "gen_ai.system"])
    assert [m.name for m in dispatch.applicable(MAPPERS, both, "")] == ["genai", "genai_legacy"]
    assert [m.name for m in dispatch.applicable(MAPPERS, keys, key_text(["gen_ai.choice"]))] == [
        "genai",
        "genai_legacy",
    ]
    assert dispatch.applicable(MAPPERS, keys, "") is dispatch.applicable(MAPPERS, keys, "")
    plain = key_text(["http.route"])
    assert dispatch.applicable(MAPPERS, plain, "") == ()
    assert [m.name for m in dispatch.applicable(MAPPERS, plain, key_text(["gen_ai.user.message"]))] == ["genai_legacy"]
    other = (Mapper(name="other", extract=lambda span: {}, prefixes=("gen_ai.",)),)
    assert [m.name for m in dispatch.applicable(other, keys, "")] == ["other"]  # another registry: not confused


def test_the_memo_stays_bounded(monkeypatch):
    monkeypatch.setattr(memo, "MAX_ENTRIES", 3)
    remembered = memo.KeyTextMemo()
    for i in range(10):
        remembered.remember(f"k{i}", f"k{i}", i)
        assert len(remembered) <= 3
    remembered.remember("huge", "x" * (memo.MAX_TEXT_CHARS + 1), 0)
    assert "huge" not in remembered
    monkeypatch.setattr(memo, "MAX_CHARS", 10)
    remembered = memo.KeyTextMemo()
    for i in range(10):
        remembered.remember(f"key{i}", f"key{i}", i)
        assert remembered.chars <= 10


def test_a_span_failing_halfway_through_its_columns_keeps_none_of_them(monkeypatch, caplog):
    from tracehouse.collector.stages.normalize import stage

    def half_bad(span):
        # Temperature is written as it is, then the provider (not a string) fails to convert.
        return {"Temperature": 0.5, "InputTokens": 3, "LlmProvider": 5}

    monkeypatch.setattr(stage, "MAPPERS", (Mapper(name="half_bad", extract=half_bad, prefixes=("gen_ai.",)),))
    row = normalized({"gen_ai.operation.name": "chat", "user.id": "u"})
    assert len(mapper_failures(caplog)) == 1
    assert row == {**row, "Temperature": None, "InputTokens": None, "LlmProvider": "", "UserId": "u"}


def test_clear_row_restores_the_empty_values():
    columns = empty_columns(2)
    for name in LLM_COLUMNS:
        columns[name][1] = "x"
    clear_row(columns, 1)
    assert all(columns[name][1] == columns[name][0] for name in LLM_COLUMNS)


# --- the plain OpenInference chat shortcut (fast.py) --------------------------------------------------------

_CHAT_VALUES = {
    "openinference.span.kind": ["LLM", "LLM", "LLM", "llm", "CHAIN", ""],
    "llm.provider": ["openai", "Azure", "", "acme.cloud", "x" * 300],
    "llm.system": ["openai", "anthropic", ""],
    "llm.model_name": ["gpt-4o-mini", "", "m" * 300],
    "llm.invocation_parameters": [
        '{"model": "gpt-4o", "temperature": 0.2, "max_tokens": 100, "top_p": 0.9}',
        '{"temperature": "hot", "maxOutputTokens": 5.0, "topP": 1}',
        "not json",
        "[1]",
        "",
    ],
    "llm.finish_reason": ["stop", "end_turn", "SAFETY", "weird", ""],
    "llm.token_count.prompt": ["10", "3", "-1", "12.0", "abc", "18446744073709551616"],
    "llm.token_count.completion": ["5", "0", "1e3"],
    "llm.token_count.total": ["15", "x"],
    "llm.token_count.prompt_details.cache_read": ["4", "20"],
    "llm.token_count.prompt_details.cache_input": ["6"],
    "llm.token_count.prompt_details.cache_write": ["2"],
    "llm.token_count.completion_details.reasoning": ["1"],
    "input.value": [
        '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}',
        "hi",
    ],
    "output.value": ['{"choices": [{"message": {"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}}]}'],
    "output.mime_type": ["application/json", "text/plain"],
    "session.id": ["s"],
    "user.id": ["u"],
    "error.type": ["Timeout"],
    "http.route": ["/x"],
    "llm.token_count.unknown": ["1"],
    "tag.tags": ['["a"]', "plain", "[]", '[1, "b"]'],
    "metadata": ['{"user_id": "mu", "session_id": 7}', "{}", "[1]", "not json", '{"feature": "f", "tenant_id": "t"}'],
    "llm.prompt_template.template": ["Hi {x}"],
}
_ROLES = ["user", "assistant", "system", "developer", "Human", "  Tool ", "", "AI", "bot"]
_CONTENTS = ["hi", "", "Be brief.", "x" * 140_000, '{"a": 1}']


def _chat_span(rnd: random.Random) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for key in rnd.sample(sorted(_CHAT_VALUES), rnd.randint(1, len(_CHAT_VALUES))):
        if key in ("llm.prompt_template.template", "llm.token_count.unknown") and rnd.random() < 0.8:
            continue  # keys that send a span the long way: now and then
        attrs[key] = rnd.choice(_CHAT_VALUES[key])
    for prefix in ("llm.input_messages.", "llm.output_messages."):
        for index in rnd.sample(["0", "1", "2", "10", "01", "3"], rnd.randint(0, 4)):
            for rest, values in (("message.role", _ROLES), ("message.content", _CONTENTS)):
                if rnd.random() < 0.85:
                    attrs[f"{prefix}{index}.{rest}"] = rnd.choice(values)
    items = list(attrs.items())
    rnd.shuffle(items)
    return dict(items)


def test_the_plain_chat_shortcut_writes_what_the_mapper_and_finalize_write(monkeypatch):
    from tracehouse.collector.stages.normalize import fast

    rnd = random.Random(19)
    events = [
        ("First Token Stream Event", 120_000_000, {}),
        ("First Token Stream Event", -5, {}),
        ("exception", 3, {"exception.type": "E", "exception.message": "m"}),
        ("gen_ai.choice", 4, {"message": "{}"}),
        ("other", 5, {}),
    ]
    spans = [
        {
            "attrs": _chat_span(rnd),
            "status": (rnd.choice(["ok", "error"]), "m"),
            "events": rnd.sample(events, rnd.choice([0, 0, 1, 2])),
        }
        for _ in range(400)
    ]
    taken = []
    write = fast.FastPath.write

    def counted(*args):
        result = write(*args)
        taken.append(result is not fast.NOT_TAKEN)
        return result

    monkeypatch.setattr(fast.FastPath, "write", staticmethod(counted))
    shortcut = normalized_rows(spans * 3)  # each key set seen before: planned from its second sighting
    assert sum(taken) > 100, "the corpus should take the shortcut"
    monkeypatch.setattr(fast.FastPath, "plan", lambda self, keys: None)
    assert shortcut == normalized_rows(spans * 3)


class _Recording(dict):
    """Span attributes that note every key read from them."""

    def __init__(self, attrs: dict[str, str], read: set[str]) -> None:
        super().__init__(attrs)
        self.read = read

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def _corpus_attrs() -> list[dict[str, str]]:
    import json
    from pathlib import Path

    from test_decode_normalize_pinned import _unpack

    corpus = _unpack(json.loads((Path(__file__).parent / "data" / "normalize_corpus.json").read_text()))
    specs = [spec for recorded in corpus for spec in recorded["spans"]]
    specs += [{"attrs": _chat_span(random.Random(i))} for i in range(200)]
    return [{k: v if isinstance(v, str) else json.dumps(v) for k, v in spec.get("attrs", {}).items()} for spec in specs]


def _undeclared_reads(mapper: Mapper, kind_key: str, kinds: tuple[str, ...]) -> set[str]:
    from tracehouse.collector.stages.normalize.span import SpanView

    read: set[str] = set()
    for attrs in _corpus_attrs():
        for kind in kinds:
            recording = _Recording({**attrs, kind_key: kind}, read)
            mapper.extract(SpanView(recording, {}, 0, (), (), (), key_text(recording), ""))
    assert mapper.reads is not None
    return {key for key in read if key not in mapper.reads and not key.startswith(mapper.read_prefixes)}


@pytest.mark.parametrize(
    ("name", "kind_key", "kinds"),
    [
        ("genai_legacy", "traceloop.span.kind", ("", "tool", "workflow")),
        ("openinference", "openinference.span.kind", ("LLM", "TOOL", "RETRIEVER", "EMBEDDING", "CHAIN")),
    ],
)
def test_a_mapper_is_skipped_only_where_it_finds_nothing(name, kind_key, kinds):
    # Dispatch skips a mapper on a span without events and without a key it declares it reads, and fast.py reads
    # only what it needs of OpenInference's: the reads, recorded over every pinned span, are all declared, and on
    # the spans cut to the keys a mapper does not read it finds nothing.
    from tracehouse.collector.stages.normalize.span import SpanView

    mapper = next(m for m in MAPPERS if m.name == name)
    undeclared = _undeclared_reads(mapper, kind_key, kinds)
    assert not undeclared, f"extract reads keys its Mapper does not declare: {sorted(undeclared)}"
    cut = 0
    for attrs in _corpus_attrs():
        rest = {k: v for k, v in attrs.items() if k not in mapper.reads and not k.startswith(mapper.read_prefixes)}
        assert not mapper.may_find(key_text(rest))
        assert mapper.extract(SpanView(rest, {}, 0, (), (), (), key_text(rest), "")) == {}, rest
        cut += len(rest) < len(attrs)
    assert cut >= 5
