"""Merged mapper fields -> column values: vocabularies normalized, messages split and serialized.

Values are written straight into the batch's column lists, and only for the fields a span has: every
column starts at the value of a span without the field (`columns.empty_columns`), so absent fields need
neither converting nor writing. This runs on every LLM span, hence the tables instead of one line each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracehouse.collector.columns import TOKEN_COLUMNS
from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.finish import normalize_finish_reason
from tracehouse.collector.stages.normalize.kinds import resolve_kind_and_operation
from tracehouse.collector.stages.normalize.mapper import Fields
from tracehouse.collector.stages.normalize.messages import dumps, split_system, tool_calls_of
from tracehouse.collector.stages.normalize.providers import normalize_provider
from tracehouse.collector.stages.normalize.tokens import UINT64_MAX, input_and_total
from tracehouse.collector.stages.normalize.values import clip, json_text, short

Columns = dict[str, list[Any]]


def _json_column(value: Any) -> str:
    return clip(json_text(value), limits.MAX_JSON_CHARS)


def _text_column(value: str) -> str:
    return clip(value, limits.MAX_TEXT_CHARS)


def _time_to_first_token(value: int) -> int:
    return min(value, UINT64_MAX)


def _system_prompt(instructions: str, lifted: list[str]) -> str:
    texts = [instructions] if instructions else []
    texts.extend(text for text in lifted if text not in texts)
    return clip("\n\n".join(texts), limits.MAX_TEXT_CHARS)


# Fields that are their column's value as they are (InputTokens is decided with TotalTokens, below).
_AS_IS = frozenset(
    (*(name for name in TOKEN_COLUMNS if name != "InputTokens"), "Temperature", "TopP", "MaxTokens", "Tags")
)
# Fields that become their column through one conversion.
_CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "LlmProvider": normalize_provider,
    "LlmRequestModel": short,
    "LlmResponseModel": short,
    "FinishReason": normalize_finish_reason,
    "InvocationParameters": _json_column,
    "TimeToFirstToken": _time_to_first_token,
    "PromptTemplateName": short,
    "PromptTemplate": _text_column,
    "PromptVersion": short,
    "PromptVariables": _json_column,
    "Metadata": _json_column,
}
_CONVERTED = frozenset(_CONVERSIONS)


def write_llm_columns(fields: Fields, out: Columns, row: int) -> None:
    """Write row `row` of the LLM columns in `out` for a span's merged fields (identity and error columns are
    decided elsewhere). Fields hold no empty values (see `mapper.compact`)."""
    # Set intersections (in C) pick the fields present, so the loops below touch nothing else.
    for name in _AS_IS.intersection(fields):
        out[name][row] = fields[name]
    for name in _CONVERTED.intersection(fields):
        out[name][row] = _CONVERSIONS[name](fields[name])
    if "InputTokens" in fields or "TotalTokens" in fields:
        out["InputTokens"][row], out["TotalTokens"][row] = input_and_total(fields)

    get = fields.get
    kind, operation = resolve_kind_and_operation(get("LlmSpanKind", ""), get("LlmOperation", ""))
    if kind:
        out["LlmSpanKind"][row] = kind
    if operation:
        out["LlmOperation"][row] = short(operation)

    write_messages(
        out, row, get("InputMessages"), get("SystemPrompt"), get("OutputMessages"), get("ToolCalls"), get("Tools")
    )


def write_messages(
    out: Columns,
    row: int,
    inputs: list[dict[str, Any]] | None,
    instructions: str | None,
    outputs: list[dict[str, Any]] | None,
    tool_calls: list[dict[str, Any]] | None,
    tools: list[dict[str, Any]] | None,
) -> None:
    """The message columns of row `row`: the opening system messages lifted into SystemPrompt, the rest
    serialized, ToolCalls from the output messages unless the span gave its own."""
    lifted: list[str] = []
    if inputs:
        lifted, inputs = split_system(inputs)
        if inputs:
            out["InputMessages"][row] = dumps(inputs)
    if instructions or lifted:
        out["SystemPrompt"][row] = _system_prompt(instructions or "", lifted)
    if outputs:
        out["OutputMessages"][row] = dumps(outputs)
    tool_calls = tool_calls or (tool_calls_of(outputs) if outputs else None)
    if tool_calls:
        out["ToolCalls"][row] = dumps(tool_calls[: limits.MAX_TOOL_CALLS])
    if tools:
        out["Tools"][row] = dumps(tools[: limits.MAX_TOOLS])
