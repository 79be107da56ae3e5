"""Provider ids: one spelling per company or platform, whatever the convention called it."""

from __future__ import annotations

from tracehouse.collector.stages.normalize import limits

# Lower-cased spellings seen in OpenInference (llm.provider / llm.system), OTel GenAI
# (gen_ai.provider.name, deprecated gen_ai.system), OpenLLMetry and the Vercel AI SDK (ai.model.provider).
_ALIASES: dict[str, str] = {
    "openai": "openai",
    "azure": "azure",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azureopenai": "azure",
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
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "together": "together",
    "togetherai": "together",
    "together_ai": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
    "ollama": "ollama",
    "ibm.watsonx.ai": "ibm_watsonx",
    "watsonx": "ibm_watsonx",
    "huggingface": "huggingface",
    "hugging_face": "huggingface",
    "cerebras": "cerebras",
    "moonshot": "moonshot",
    "openrouter": "openrouter",
    "meta": "meta",
    "ai21": "ai21",
    "replicate": "replicate",
}


def normalize_provider(raw: str | None) -> str:
    """The provider id for a raw name: an alias, else its first dotted/dashed segment's alias, else the raw
    name lower-cased ('openai.chat' -> openai, 'Anthropic' -> anthropic, 'acme' -> acme)."""
    if not raw:
        return ""
    name = raw.strip().lower()
    known = _ALIASES.get(name)
    if known:
        return known
    for separator in (".", "-", ":", "/"):
        head = name.partition(separator)[0]
        known = _ALIASES.get(head)
        if known:
            return known
    return name[: limits.MAX_SHORT_CHARS]
