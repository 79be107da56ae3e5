"""Provider ids: the names spans use (our normalized ids, GenAI semconv, OpenInference, LiteLLM)
folded onto the ids of the price catalogue, so `aws.bedrock`, `aws_bedrock` and `bedrock` are one provider."""

from __future__ import annotations

_ALIASES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure",
    "azure_openai": "azure",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "azure_ai": "azure",
    "azureopenai": "azure",
    "aws": "aws",
    "aws_bedrock": "aws",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "amazon_bedrock": "aws",
    "google": "google",
    "gemini": "google",
    "vertex": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "google_genai": "google",
    "google_vertexai": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "mistral": "mistral",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "x-ai": "x-ai",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "groq": "groq",
    "together": "together",
    "together_ai": "together",
    "togetherai": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
    "openrouter": "openrouter",
    "perplexity": "perplexity",
    "cerebras": "cerebras",
    "moonshot": "moonshotai",
    "moonshotai": "moonshotai",
}

# Models run on the user's own hardware: a name like "llama3" must not borrow some cloud's price.
SELF_HOSTED = frozenset(
    {"ollama", "vllm", "lmstudio", "lm_studio", "llamacpp", "llama_cpp", "localai", "tgi", "local", "self_hosted"}
)


def canonical_provider(raw: str) -> str:
    """The catalogue id for a provider name, or the name itself in lower case when we know no alias."""
    name = raw.strip().lower()
    return _ALIASES.get(name) or _ALIASES.get(name.replace("-", "_")) or name
