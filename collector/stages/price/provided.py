"""Costs a span already carries: OpenInference `llm.cost.*` and `gen_ai.usage.cost`, in USD.

They win over a computed cost. A span counts as carrying one when it gives a total (`llm.cost.total`
or `gen_ai.usage.cost`) or both `llm.cost.prompt` and `llm.cost.completion`. The by-kind columns
take the details given; a kind the span does not break down stays NULL rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from tracehouse.collector.stages.price.rates import COST_QUANTUM

TOTAL_KEYS = ("llm.cost.total", "gen_ai.usage.cost")
PROMPT = "llm.cost.prompt"
COMPLETION = "llm.cost.completion"
# Attributes whose presence means the span may carry a cost; the hot path checks only these.
TRIGGER_KEYS = frozenset((*TOTAL_KEYS, PROMPT))

_INPUT = "llm.cost.prompt_details.input"
_CACHE_READ = "llm.cost.prompt_details.cache_read"
_CACHE_WRITE = "llm.cost.prompt_details.cache_write"
_PROMPT_AUDIO = "llm.cost.prompt_details.audio"
_OUTPUT = "llm.cost.completion_details.output"
_REASONING = "llm.cost.completion_details.reasoning"
_COMPLETION_AUDIO = "llm.cost.completion_details.audio"


# A call's cost is at most 10^12 USD: the columns (Decimal(38, 12)) hold < 10^26, and the rollups' sum() of them
# wraps around silently past that, which 10^14 calls at this limit cannot reach.
MAX_COST = Decimal(10) ** 12


def _usd(attrs: Mapping[str, str], key: str) -> Decimal | None:
    raw = attrs.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw.strip())
    except (InvalidOperation, AttributeError):
        return None
    if not value.is_finite() or value < 0 or value >= MAX_COST:
        return None
    try:
        return value.quantize(COST_QUANTUM)
    except InvalidOperation:
        return None


def provided_costs(attrs: Mapping[str, str]) -> tuple[Decimal | None, ...] | None:
    """(total, uncached input, cache read, cache write, output, reasoning, audio), or None when not provided."""
    total = _usd(attrs, TOTAL_KEYS[0])
    if total is None:
        total = _usd(attrs, TOTAL_KEYS[1])
    prompt = _usd(attrs, PROMPT)
    completion = _usd(attrs, COMPLETION)
    if total is None:
        if prompt is None or completion is None:
            return None
        total = prompt + completion
    cache_read = _usd(attrs, _CACHE_READ)
    cache_write = _usd(attrs, _CACHE_WRITE)
    prompt_audio = _usd(attrs, _PROMPT_AUDIO)
    reasoning = _usd(attrs, _REASONING)
    completion_audio = _usd(attrs, _COMPLETION_AUDIO)
    uncached = _usd(attrs, _INPUT)
    if uncached is None and prompt is not None:
        uncached = max(prompt - sum(v for v in (cache_read, cache_write, prompt_audio) if v is not None), Decimal(0))
    output = _usd(attrs, _OUTPUT)
    if output is None and completion is not None:
        output = max(completion - sum(v for v in (reasoning, completion_audio) if v is not None), Decimal(0))
    audio = None
    if prompt_audio is not None or completion_audio is not None:
        audio = (prompt_audio or Decimal(0)) + (completion_audio or Decimal(0))
    return (total, uncached, cache_read, cache_write, output, reasoning, audio)
