"""Inputs the fuzzer found: each once crashed a stage or lost a span's LLM fields."""

from __future__ import annotations

from decimal import Decimal

from tracehouse.collector.stages.normalize.values import UNRENDERABLE, json_text
from tracehouse.collector.stages.price.provided import provided_costs


def test_a_provided_cost_the_column_cannot_hold_is_not_a_provided_cost():
    # Decimal(38, 12) holds less than 10^26; 1e48 once raised InvalidOperation and failed the request (500).
    for huge in ("1e26", "1e48", "1e400", "9" * 80):
        assert provided_costs({"llm.cost.total": huge}) is None, huge
    assert provided_costs({"llm.cost.total": "0.25"})[0] == Decimal("0.250000000000")


def test_json_nested_deeper_than_orjson_writes_has_a_marker_not_an_exception():
    import orjson

    deep = orjson.loads("[" * 1000 + "]" * 1000)  # orjson reads 1024 levels, writes 255
    assert json_text(deep) == UNRENDERABLE
    assert json_text([[1, 2], {"a": "b"}]) == '[[1,2],{"a":"b"}]'
