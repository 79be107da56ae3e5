"""Provider ids (columns.provider_id: what normalization stores in LlmProvider) onto the price
catalogue's ids (genai-prices), and the providers no catalogue prices.

Names that do not come from a normalized span (a price file's `provider`, a model prefix such as
`bedrock/...`, `tracehouse prices show --provider`) are folded onto an id the same way first.
"""

from __future__ import annotations

from tracehouse.collector.columns import provider_id

# Provider ids the catalogue spells differently; every other id is the catalogue's own.
_CATALOGUE_IDS = {"aws_bedrock": "aws", "xai": "x-ai", "moonshot": "moonshotai"}

# Models run on the user's own hardware: a name like "llama3" must not borrow some cloud's price.
SELF_HOSTED = frozenset({"ollama", "vllm", "lmstudio", "llamacpp", "localai", "tgi", "local", "self_hosted"})


def catalogue_provider(name: str) -> str:
    """The catalogue's id for a provider id or name, or the provider id when the catalogue spells it the same."""
    pid = provider_id(name)
    return _CATALOGUE_IDS.get(pid, pid)
