"""The typed columns this stage fills (columns.LLM_COLUMNS, schema/0002_llm_columns.sql), at their empty values."""

from __future__ import annotations

from typing import Any

from tracehouse.collector.columns import LLM_ARRAY_COLUMNS, LLM_FLOAT_COLUMNS, LLM_STRING_COLUMNS, LLM_UINT_COLUMNS

_NUMBER_COLUMNS = LLM_UINT_COLUMNS + LLM_FLOAT_COLUMNS


def empty_columns(rows: int) -> dict[str, list[Any]]:
    """Every column for `rows` spans, holding the value of a span that carries no such field."""
    columns: dict[str, list[Any]] = {name: [""] * rows for name in LLM_STRING_COLUMNS}
    for name in _NUMBER_COLUMNS:
        columns[name] = [None] * rows
    for name in LLM_ARRAY_COLUMNS:
        columns[name] = [[] for _ in range(rows)]
    return columns


def clear_row(columns: dict[str, list[Any]], row: int) -> None:
    """Put row `row` of every column back to its empty value (after a span failed halfway through)."""
    for name in LLM_STRING_COLUMNS:
        columns[name][row] = ""
    for name in _NUMBER_COLUMNS:
        columns[name][row] = None
    for name in LLM_ARRAY_COLUMNS:
        columns[name][row] = []
