"""Span kinds and operations: OpenInference kinds are the vocabulary, GenAI operations the other axis.

Every convention's own words map here, in one table each, so `LlmSpanKind` and `LlmOperation`
mean the same whatever instrumented the app.
"""

from __future__ import annotations

OPENINFERENCE_KINDS = frozenset(
    {"LLM", "CHAIN", "TOOL", "RETRIEVER", "EMBEDDING", "AGENT", "RERANKER", "GUARDRAIL", "EVALUATOR", "PROMPT"}
)

# OTel GenAI gen_ai.operation.name -> kind.
KIND_BY_OPERATION: dict[str, str] = {
    "chat": "LLM",
    "text_completion": "LLM",
    "generate_content": "LLM",
    "embeddings": "EMBEDDING",
    "retrieval": "RETRIEVER",
    "execute_tool": "TOOL",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
    "invoke_workflow": "CHAIN",
    "rerank": "RERANKER",
}

# The operations that are one call to a model: llm_calls has one row per span with one of these.
LLM_OPERATIONS = ("chat", "text_completion", "generate_content")

# Operation for a span that only says its kind (OpenInference, traceloop).
OPERATION_BY_KIND: dict[str, str] = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "RETRIEVER": "retrieval",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
    "RERANKER": "rerank",
}

# OpenLLMetry traceloop.span.kind.
KIND_BY_TRACELOOP: dict[str, str] = {"workflow": "CHAIN", "task": "CHAIN", "agent": "AGENT", "tool": "TOOL"}

# OpenLLMetry llm.request.type -> operation.
OPERATION_BY_REQUEST_TYPE: dict[str, str] = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
    "rerank": "rerank",
}

# Vercel AI SDK ai.operationId -> kind. The outer ai.generateText/ai.streamText spans repeat the usage of
# their provider calls, so they are chains: only the doGenerate/doStream spans are LLM calls.
KIND_BY_VERCEL_OPERATION: dict[str, str] = {
    "ai.generateText.doGenerate": "LLM",
    "ai.streamText.doStream": "LLM",
    "ai.generateObject.doGenerate": "LLM",
    "ai.streamObject.doStream": "LLM",
    "ai.generateText": "CHAIN",
    "ai.streamText": "CHAIN",
    "ai.generateObject": "CHAIN",
    "ai.streamObject": "CHAIN",
    "ai.toolCall": "TOOL",
    "ai.embed": "CHAIN",
    "ai.embedMany": "CHAIN",
    "ai.embed.doEmbed": "EMBEDDING",
    "ai.embedMany.doEmbed": "EMBEDDING",
}


def openinference_kind(raw: str | None) -> str:
    """An OpenInference span kind in its canonical upper case, '' when it is not one."""
    if not raw:
        return ""
    kind = raw.strip().upper()
    return kind if kind in OPENINFERENCE_KINDS else ""


def resolve_kind_and_operation(kind: str, operation: str) -> tuple[str, str]:
    """Fill whichever of the two is missing from the other."""
    operation = operation.strip().lower() if operation else ""
    if not kind and operation:
        kind = KIND_BY_OPERATION.get(operation, "")
    if not operation and kind:
        operation = OPERATION_BY_KIND.get(kind, "")
    return kind, operation
