"""The typed columns of schema/0002_llm_columns.sql that this stage fills, and their empty values."""

from __future__ import annotations

from typing import Any

STRING_COLUMNS: tuple[str, ...] = (
    "LlmSpanKind",
    "LlmOperation",
    "LlmProvider",
    "LlmRequestModel",
    "LlmResponseModel",
    "InputMessages",
    "OutputMessages",
    "SystemPrompt",
    "Tools",
    "ToolCalls",
    "FinishReason",
    "InvocationParameters",
    "UserId",
    "SessionId",
    "TenantId",
    "Feature",
    "PromptTemplateName",
    "PromptTemplate",
    "PromptVersion",
    "PromptVariables",
    "Metadata",
    "ErrorType",
    "ErrorMessage",
)
UINT_COLUMNS: tuple[str, ...] = (
    "InputTokens",
    "OutputTokens",
    "TotalTokens",
    "CacheReadTokens",
    "CacheWriteTokens",
    "ReasoningTokens",
    "InputAudioTokens",
    "OutputAudioTokens",
    "MaxTokens",
    "TimeToFirstToken",
)
FLOAT_COLUMNS: tuple[str, ...] = ("Temperature", "TopP")
ARRAY_COLUMNS: tuple[str, ...] = ("Tags",)

LLM_COLUMNS: tuple[str, ...] = STRING_COLUMNS + UINT_COLUMNS + FLOAT_COLUMNS + ARRAY_COLUMNS


def empty_columns(rows: int) -> dict[str, list[Any]]:
    """Every column for `rows` spans, holding the value of a span that carries no such field."""
    columns: dict[str, list[Any]] = {name: [""] * rows for name in STRING_COLUMNS}
    for name in UINT_COLUMNS + FLOAT_COLUMNS:
        columns[name] = [None] * rows
    for name in ARRAY_COLUMNS:
        columns[name] = [[] for _ in range(rows)]
    return columns


def clear_row(columns: dict[str, list[Any]], row: int) -> None:
    """Put row `row` of every column back to its empty value (after a span failed halfway through)."""
    for name in STRING_COLUMNS:
        columns[name][row] = ""
    for name in UINT_COLUMNS + FLOAT_COLUMNS:
        columns[name][row] = None
    for name in ARRAY_COLUMNS:
        columns[name][row] = []
