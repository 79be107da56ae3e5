"""The column contract: the names of the columns stages exchange, and the values one of them writes that
another reads (a stage, the pipeline, the writer, the commands). Each is defined here and nowhere else;
the ClickHouse schema (schema/*.sql) is the other side of the contract, held to it by tests/test_contract.py.

The OTel columns decode writes are batch.OTEL_COLUMNS. Standard library only (and the import-free
tracehouse.instrumentation.attributes): every layer imports this.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from tracehouse.instrumentation import attributes

# --- normalize: the typed LLM columns of schema/0002_llm_columns.sql --------------------------------

# The tenant of a span. Normalize reads the one the app claims; with API keys configured, the pipeline
# replaces it with the key's tenant (processing.with_key_tenant).
TENANT_ID = "TenantId"
# The token counts, in the order of the price sheets' kinds (stages/price/rates.KINDS). InputTokens
# includes the cache read/write tokens, OutputTokens the reasoning tokens (see stages/normalize/tokens.py).
TOKEN_COLUMNS: tuple[str, ...] = (
    "InputTokens",
    "CacheReadTokens",
    "CacheWriteTokens",
    "OutputTokens",
    "ReasoningTokens",
    "InputAudioTokens",
    "OutputAudioTokens",
)

# By their empty value: '' for strings, NULL for numbers, [] for arrays.
LLM_STRING_COLUMNS: tuple[str, ...] = (
    "LlmSpanKind",
    "LlmOperation",
    "LlmProvider",  # a provider id: provider_id() below
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
    TENANT_ID,
    "Feature",
    "PromptTemplateName",
    "PromptTemplate",
    "PromptVersion",
    "PromptVariables",
    "Metadata",
    "ErrorType",
    "ErrorMessage",
)
LLM_UINT_COLUMNS: tuple[str, ...] = (*TOKEN_COLUMNS, "TotalTokens", "MaxTokens", "TimeToFirstToken")
LLM_FLOAT_COLUMNS: tuple[str, ...] = ("Temperature", "TopP")
LLM_ARRAY_COLUMNS: tuple[str, ...] = ("Tags",)
LLM_COLUMNS: tuple[str, ...] = LLM_STRING_COLUMNS + LLM_UINT_COLUMNS + LLM_FLOAT_COLUMNS + LLM_ARRAY_COLUMNS

# --- identity: where normalize copies UserId, SessionId, TenantId and Feature from -------------------

# Span attributes in precedence order; stages/normalize/identity.py decides with them (a span's metadata
# object comes between the first tuple and the fallbacks), and a redaction policy on any of them also
# applies to the column (stages/redact/policy.py): hashing `tracehouse.user` must not leave it in UserId.
USER_ATTRIBUTES: tuple[str, ...] = (attributes.USER, "user.id")
USER_FALLBACK_ATTRIBUTES: tuple[str, ...] = ("llm.user", "enduser.id")  # the end-user id sent to the provider
SESSION_ATTRIBUTES: tuple[str, ...] = (attributes.SESSION, "session.id", "gen_ai.conversation.id")
# Keys of the metadata object, and the attribute prefixes conventions flatten it under (OpenLLMetry,
# Vercel AI SDK); OpenInference keeps it as one JSON attribute, `metadata`.
METADATA_USER_KEYS: tuple[str, ...] = ("user_id", "userId")
METADATA_SESSION_KEYS: tuple[str, ...] = ("session_id", "sessionId")
METADATA_FEATURE_KEYS: tuple[str, ...] = (attributes.METADATA_FEATURE,)
METADATA_TENANT_KEYS: tuple[str, ...] = (attributes.METADATA_TENANT, "tenantId", "tenant")
OPENLLMETRY_METADATA_PREFIX = "traceloop.association.properties."
VERCEL_METADATA_PREFIX = "ai.telemetry.metadata."


def _flattened(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(prefix + key for prefix in (OPENLLMETRY_METADATA_PREFIX, VERCEL_METADATA_PREFIX) for key in keys)


# Every span attribute key a column's value may be copied from.
COPIED_FROM: dict[str, tuple[str, ...]] = {
    "ServiceName": ("service.name",),
    TENANT_ID: (attributes.TENANT, *_flattened(METADATA_TENANT_KEYS)),
    "Feature": (attributes.FEATURE, *_flattened(METADATA_FEATURE_KEYS)),
    "UserId": (*USER_ATTRIBUTES, *USER_FALLBACK_ATTRIBUTES, *_flattened(METADATA_USER_KEYS)),
    "SessionId": (*SESSION_ATTRIBUTES, *_flattened(METADATA_SESSION_KEYS)),
}

# --- price: schema/0004_cost.sql ---------------------------------------------------------------------

COST_USD = "CostUsd"  # the total; NULL when no price is known, never 0
COST_COLUMNS: tuple[str, ...] = (
    COST_USD,
    "InputCostUsd",
    "CacheReadCostUsd",
    "CacheWriteCostUsd",
    "OutputCostUsd",
    "ReasoningCostUsd",
    "AudioCostUsd",
)
COST_SOURCE = "CostSource"
PRICE_MODEL = "PriceModel"  # the catalogue's model id, or the price file entry's model
PRICE_EFFECTIVE_FROM = "PriceEffectiveFrom"  # the date the price applies from, '' when it has none
# schema/0019_batch_prices.sql: which of a price's variants applied ('' standard rates, 'batch' the
# batch-API rates), what the call would have cost at the standard rates when a variant applied (else NULL).
PRICE_VARIANT = "PriceVariant"
PRICE_VARIANT_BATCH = "batch"
STANDARD_COST_USD = "StandardCostUsd"
# schema/0021_canonical_model.sql: the price catalogue's model id for the call's model ('' when the catalogue
# does not know it), whichever price applied; otel_traces.LlmModel reads it first.
CANONICAL_MODEL = "CanonicalModel"
PRICE_COLUMNS: tuple[str, ...] = (
    *COST_COLUMNS,
    COST_SOURCE,
    PRICE_MODEL,
    PRICE_EFFECTIVE_FROM,
    PRICE_VARIANT,
    STANDARD_COST_USD,
    CANONICAL_MODEL,
)

# CostSource values: the span carried its cost, the user's price file, the catalogue (genai-prices), no
# price (NULL costs, counted as unpriced). '' for a span that is not a model call.
COST_PROVIDED = "provided"
COST_USER = "user"
COST_CATALOGUE = "catalogue"
COST_UNKNOWN = "unknown"
COST_SOURCES: tuple[str, ...] = (COST_PROVIDED, COST_USER, COST_CATALOGUE, COST_UNKNOWN)

# --- sample: schema/0010_content_sampling.sql --------------------------------------------------------

CONTENT_SAMPLED = "ContentSampled"
# ContentSampled values: content kept because the span is an outlier, kept by the configured share of
# traces, or dropped (the redaction stage removes it). '' while sampling is off.
SAMPLED_ERROR = "error"
SAMPLED_REFUSAL = "refusal"
SAMPLED_SLOW = "slow"
SAMPLED_COSTLY = "costly"
SAMPLED_SHARE = "share"
SAMPLED_DROPPED = "dropped"
SAMPLING_DECISIONS: tuple[str, ...] = (
    SAMPLED_ERROR,
    SAMPLED_REFUSAL,
    SAMPLED_SLOW,
    SAMPLED_COSTLY,
    SAMPLED_SHARE,
    SAMPLED_DROPPED,
)

# --- redact: schema/0005_redaction.sql ---------------------------------------------------------------

# What was redacted in a span, by detector, rule or policy name -> count; the values never.
REDACTION_COUNTS = "RedactionCounts"

# --- LlmProvider values: provider ids ----------------------------------------------------------------

# One spelling per company or platform, whatever the convention called it: lower-cased names seen in
# OpenInference (llm.provider / llm.system), OTel GenAI (gen_ai.provider.name, deprecated gen_ai.system),
# OpenLLMetry, the Vercel AI SDK (ai.model.provider) and LiteLLM (model prefixes such as `bedrock/`).
# Pricing maps these ids onto the price catalogue's own (stages/price/providers.py).
_PROVIDER_ALIASES: dict[str, str] = {
    "openai": "openai",
    "azure": "azure",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azureopenai": "azure",
    "azure_ai": "azure",
    "anthropic": "anthropic",
    "google": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "vertex": "google",
    "gemini": "google",
    "google_genai": "google",
    "google_vertexai": "google",
    "google.generative-ai": "google",
    "google.vertex": "google",
    "aws.bedrock": "aws_bedrock",
    "aws_bedrock": "aws_bedrock",
    "bedrock": "aws_bedrock",
    "amazon-bedrock": "aws_bedrock",
    "amazon_bedrock": "aws_bedrock",
    "aws": "aws_bedrock",
    "amazon": "aws_bedrock",
    "mistral": "mistral",
    "mistralai": "mistral",
    "mistral_ai": "mistral",
    "cohere": "cohere",
    "groq": "groq",
    "xai": "xai",
    "x_ai": "xai",
    "x-ai": "xai",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "together": "together",
    "togetherai": "together",
    "together_ai": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
    "ollama": "ollama",
    "lm_studio": "lmstudio",
    "llama_cpp": "llamacpp",
    "ibm.watsonx.ai": "ibm_watsonx",
    "watsonx": "ibm_watsonx",
    "huggingface": "huggingface",
    "hugging_face": "huggingface",
    "cerebras": "cerebras",
    "moonshot": "moonshot",
    "moonshotai": "moonshot",
    "openrouter": "openrouter",
    "meta": "meta",
    "ai21": "ai21",
    "replicate": "replicate",
}
_PROVIDER_SEPARATORS = (".", "-", ":", "/")


def provider_id(raw: str) -> str:
    """The provider id for a name: an alias, else its first dotted/dashed segment's alias, else the name
    lower-cased ('openai.chat' -> openai, 'Anthropic' -> anthropic, 'acme' -> acme). An id is its own id."""
    name = raw.strip().lower()
    known = _PROVIDER_ALIASES.get(name)
    if known:
        return known
    for separator in _PROVIDER_SEPARATORS:
        known = _PROVIDER_ALIASES.get(name.partition(separator)[0])
        if known:
            return known
    return name


# --- content: what counts as a prompt or response, for redaction's content-free mode (drops it), content
# sampling (drops it) and retention (expires it first) alike ---------------------------------------------

# Prompt and response content in the conventions tracehouse normalizes, as attribute keys of spans and
# events (globs).
CONTENT_KEYS: tuple[str, ...] = (
    "input.value",
    "output.value",
    "llm.input_messages.*",
    "llm.output_messages.*",
    "llm.prompts.*",
    "llm.prompt_template.template",
    "llm.prompt_template.variables",
    "retrieval.documents.*",
    "reranker.*.documents.*",
    "embedding.embeddings.*",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt",
    "gen_ai.prompt.*",
    "gen_ai.completion",
    "gen_ai.completion.*",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.event.content",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "ai.prompt",
    "ai.prompt.*",
    "ai.response.text",
    "ai.response.object",
    "ai.response.toolCalls",
    "ai.response.reasoning",
    "ai.toolCall.args",
    "ai.toolCall.result",
    "all_messages_events",
    "final_result",
    # event attributes of the GenAI / OpenLLMetry message events
    "content",
    "message",
    "body",
    "tool_calls",
)

# The attributes a span's typed message columns restate, per side (globs):
# what `[content_copies] raw_messages = "drop"` leaves out of SpanAttributes once the typed columns hold the
# side whole (stages/content_copies.py). The input side's typed columns are InputMessages and SystemPrompt,
# the output side's OutputMessages (and ToolCalls, derived from it).
RAW_INPUT_MESSAGE_KEYS: tuple[str, ...] = (
    "input.value",
    "input.mime_type",
    "llm.input_messages.[0-9]*",
    "gen_ai.input.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt",
    "gen_ai.prompt.[0-9]*",  # OpenLLMetry's numbered prompts, not gen_ai.prompt.name (the template's name)
)
RAW_OUTPUT_MESSAGE_KEYS: tuple[str, ...] = (
    "output.value",
    "output.mime_type",
    "llm.output_messages.[0-9]*",
    "gen_ai.output.messages",
    "gen_ai.completion",
    "gen_ai.completion.[0-9]*",
)

# A span's kind in OpenInference's words, whatever instrumented it (normalize/kinds resolves them).
LLM_SPAN_KIND = "LlmSpanKind"

# Normalized columns that hold prompts and responses.
CONTENT_COLUMNS = ("InputMessages", "OutputMessages", "SystemPrompt", "ToolCalls", "PromptTemplate", "PromptVariables")


# What a per-key answer cache holds (keys repeat across spans): keys up to this long, this many of them; when
# full it starts again. A client sending ever new, long keys must not grow the collector.
KEY_CACHE_ENTRIES = 50_000
KEY_CACHE_KEY_CHARS = 256


def remember_for_key(cache: dict[str, Any], key: str, answer: Any) -> None:
    if len(key) > KEY_CACHE_KEY_CHARS:
        return
    if len(cache) >= KEY_CACHE_ENTRIES:
        cache.clear()
    cache[key] = answer


class ContentKeys:
    """Whether an attribute key holds content: CONTENT_KEYS plus the operator's own globs. Answers are
    cached per key (keys repeat across spans), so the check is a dict look-up on the hot path."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.globs = (*CONTENT_KEYS, *extra)
        self._cache: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        found = self._cache.get(key)
        if found is None:
            found = any(fnmatchcase(key, glob) for glob in self.globs)
            remember_for_key(self._cache, key, found)
        return found


# The span's attributes without the content keys, written while content retention is on: what SpanAttributes
# becomes when its content expires (schema/0015_content_retention.sql, its DEFAULT).
SPAN_METADATA_ATTRIBUTES = "SpanMetadataAttributes"
