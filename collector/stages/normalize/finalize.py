"""Merged mapper fields -> column values: vocabularies normalized, messages split and serialized."""

from __future__ import annotations

from typing import Any

from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.finish import normalize_finish_reason
from tracehouse.collector.stages.normalize.kinds import resolve_kind_and_operation
from tracehouse.collector.stages.normalize.mapper import Fields
from tracehouse.collector.stages.normalize.messages import dumps, split_system, tool_calls_of
from tracehouse.collector.stages.normalize.providers import normalize_provider
from tracehouse.collector.stages.normalize.tokens import UINT64_MAX, token_columns
from tracehouse.collector.stages.normalize.values import clip, json_text, short


def _json_column(value: Any) -> str:
    if value is None:
        return ""
    return clip(json_text(value), limits.MAX_JSON_CHARS)


def _system_prompt(instructions: str, lifted: list[str]) -> str:
    texts = [instructions] if instructions else []
    texts.extend(text for text in lifted if text not in texts)
    return clip("\n\n".join(texts), limits.MAX_TEXT_CHARS)


def llm_columns(fields: Fields) -> dict[str, Any]:
    """Column values for a span's merged fields (identity and error columns are decided elsewhere)."""
    kind, operation = resolve_kind_and_operation(fields.get("LlmSpanKind", ""), fields.get("LlmOperation", ""))
    lifted, inputs = split_system(fields.get("InputMessages", []))
    outputs = fields.get("OutputMessages", [])
    tool_calls = fields.get("ToolCalls") or tool_calls_of(outputs)
    tools = fields.get("Tools")
    ttft = fields.get("TimeToFirstToken")
    columns: dict[str, Any] = {
        "LlmSpanKind": kind,
        "LlmOperation": short(operation),
        "LlmProvider": normalize_provider(fields.get("LlmProvider")),
        "LlmRequestModel": short(fields.get("LlmRequestModel")),
        "LlmResponseModel": short(fields.get("LlmResponseModel")),
        "InputMessages": dumps(inputs) if inputs else "",
        "OutputMessages": dumps(outputs) if outputs else "",
        "SystemPrompt": _system_prompt(fields.get("SystemPrompt", ""), lifted),
        "Tools": dumps(tools[: limits.MAX_TOOLS]) if tools else "",
        "ToolCalls": dumps(tool_calls[: limits.MAX_TOOL_CALLS]) if tool_calls else "",
        "FinishReason": normalize_finish_reason(fields.get("FinishReason")),
        "Temperature": fields.get("Temperature"),
        "TopP": fields.get("TopP"),
        "MaxTokens": fields.get("MaxTokens"),
        "InvocationParameters": _json_column(fields.get("InvocationParameters")),
        "TimeToFirstToken": min(ttft, UINT64_MAX) if ttft is not None else None,
        "PromptTemplateName": short(fields.get("PromptTemplateName")),
        "PromptTemplate": clip(fields.get("PromptTemplate", ""), limits.MAX_TEXT_CHARS),
        "PromptVersion": short(fields.get("PromptVersion")),
        "PromptVariables": _json_column(fields.get("PromptVariables")),
        "Tags": fields.get("Tags", []),
        "Metadata": _json_column(fields.get("Metadata")),
    }
    columns.update(token_columns(fields))
    return columns
