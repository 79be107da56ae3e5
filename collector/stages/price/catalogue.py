"""The maintained price catalogue: genai-prices, read from the data bundled with the installed
package (never fetched at run time), behind a cache of (provider, model name) look-ups.

genai-prices answers "which model is this name, at which provider". We add the names spans carry
that it does not take directly: provider prefixes (`openai/gpt-4o`), Bedrock ARNs, our provider ids
(providers.catalogue_provider), and as a last resort a dated name's undated model (`gpt-4o-mini-2024-09-01`
-> `gpt-4o-mini`).
We never cross to another provider's price when the span names a provider the catalogue knows; for
one it does not know (a gateway, a proxy) the catalogue infers the provider from the model name,
except for self-hosted runtimes (ollama, vllm, ...), whose models have no catalogue price.
"""

from __future__ import annotations

import re
from copy import copy
from datetime import UTC, date, datetime, time
from decimal import Decimal

import genai_prices
from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from tracehouse.collector.columns import COST_CATALOGUE
from tracehouse.collector.stages.price.option import ALWAYS, PriceOption, date_to_ns
from tracehouse.collector.stages.price.providers import SELF_HOSTED, catalogue_provider
from tracehouse.collector.stages.price.rates import ZERO, PriceSheet, build_sheet

CATALOGUE_VERSION = genai_prices.__version__

# genai-prices price keys for the token kinds we store.
_TOKEN_KEYS = {
    "input_mtok": "input",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "output_mtok": "output",
    "output_reasoning_mtok": "reasoning",
    "input_audio_mtok": "input_audio",
    "output_audio_mtok": "output_audio",
}
# The price context genai-prices selects batch-API rates with.
BATCH_CONTEXT = {"processing": "batch"}
# Names that end in a snapshot date or a four-digit version: -2024-07-18, -20240718, @20240620, -2409.
_MAX_CACHED = 10_000
_DATED = re.compile(r"[-@](?:20\d{2}-?\d{2}-?\d{2}|\d{4})$")


class Catalogue:
    """Look-ups into genai-prices' bundled data; answers are cached for the life of the process."""

    def __init__(self, providers: list[Provider] | None = None) -> None:
        if providers is None:
            from genai_prices.data import providers as bundled

            providers = bundled
        self._snapshot = DataSnapshot(providers=providers, from_auto_update=False)
        self._providers = providers
        self._provider_ids: dict[str, str | None] = {}
        self._cache: dict[tuple[str, str], tuple[PriceOption, ...]] = {}
        self._model_options: dict[tuple[str, int, str], tuple[PriceOption, ...]] = {}

    def options(self, provider: str, model: str) -> tuple[PriceOption, ...]:
        """The catalogue's prices for this model, first active one wins; empty when it does not know it."""
        key = (provider, model)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            found = self._cache[key] = self._lookup(provider, model)
        return found

    def provider_id(self, raw: str) -> str | None:
        """The catalogue's id for a provider name, or None when the catalogue has no such provider."""
        found = self._provider_ids.get(raw, "")
        if found == "":
            name = catalogue_provider(raw)
            match = find_provider_by_id(self._providers, name) if name and name != "litellm" else None
            found = self._provider_ids[raw] = match.id if match else None
        return found

    def _attempts(self, provider: str, model: str) -> list[tuple[str | None, str]]:
        name = model.strip()
        if name.lower().startswith("arn:"):  # Bedrock ARNs end in the model or inference-profile id
            name = name.rsplit("/", 1)[-1]
        pid = self.provider_id(provider) if provider else None
        attempts: list[tuple[str | None, str]] = []
        if pid:
            attempts.append((pid, name))
        prefix, slash, rest = name.partition("/")
        prefix_pid = self.provider_id(prefix) if slash else None
        if prefix_pid:
            attempts.append((prefix_pid, rest))
            if pid and pid != prefix_pid:
                attempts.append((pid, rest))
        if not pid and catalogue_provider(provider) not in SELF_HOSTED:
            # No provider the catalogue knows (a gateway, a proxy): let it infer one from the model name.
            attempts.append((None, name))
            if slash:
                attempts.append((None, rest))
        undated = [(p, _DATED.sub("", n)) for p, n in attempts if _DATED.search(n)]
        return attempts + undated

    def _lookup(self, provider: str, model: str) -> tuple[PriceOption, ...]:
        if not model.strip():
            return ()
        for pid, ref in self._attempts(provider, model):
            try:
                found_provider, info = self._snapshot.find_provider_model(ref, None, pid, None)
            except LookupError:
                continue
            # Providers share ModelInfo objects (Azure falls back to OpenAI's), so the provider is in the key.
            model_key = (found_provider.id, id(info), ref)
            options = self._model_options.get(model_key)
            if options is None:
                options = self._model_options[model_key] = _options_for(found_provider, info, ref)
            if options:
                return options
        return ()


def _options_for(provider: Provider, info: ModelInfo, matched: str) -> tuple[PriceOption, ...]:
    """genai-prices' rule as options: conditional prices last to first, then the first one unconditionally."""
    prices = info.prices
    # (constraint deciding when it applies, constraint giving its date, prices)
    if isinstance(prices, ModelPrice):
        entries = [(None, None, prices)]
    else:
        entries = [(c.constraint, c.constraint, c.prices) for c in reversed(prices)]
        if prices and prices[0].constraint is not None:
            entries.append((None, prices[0].constraint, prices[0].prices))
    options = []
    for applies_when, dated_by, model_price in entries:
        sheet = _sheet(model_price)
        if sheet is None:
            return ()  # priced per second, character or image only: not something token counts can price
        batch = _batch_sheets(info, model_price)
        start_ns, daily = ALWAYS, None
        effective = dated_by.start_date.isoformat() if isinstance(dated_by, StartDateConstraint) else ""
        if isinstance(applies_when, StartDateConstraint):
            start_ns = date_to_ns(applies_when.start_date)
        elif isinstance(applies_when, TimeOfDateConstraint):
            daily = (_utc_second(applies_when.start_time), _utc_second(applies_when.end_time))
        options.append(
            PriceOption(COST_CATALOGUE, info.id, effective, sheet, provider.id, matched, start_ns, daily, batch=batch)
        )
    return tuple(options)


def _batch_sheets(info: ModelInfo, standard: ModelPrice) -> tuple[tuple[int, PriceSheet], ...]:
    """genai-prices' `processing: batch` variants over this standard price, as (start ns, sheet).

    A variant overrides only the prices it names (genai-prices' rule): what it leaves out stays at the
    standard rate. Variants are listed first to last, the first active one wins, as genai-prices resolves them.
    """
    sheets = []
    for variant in info.price_variants or ():
        if variant.when != BATCH_CONTEXT or isinstance(variant.constraint, TimeOfDateConstraint):
            continue
        resolved = copy(standard)
        resolved.__dict__.update({k: v for k, v in vars(variant.prices).items() if v is not None})
        sheet = _sheet(resolved)
        if sheet is None:
            continue
        start = variant.constraint.start_date if isinstance(variant.constraint, StartDateConstraint) else None
        sheets.append((date_to_ns(start) if start else ALWAYS, sheet))
    return tuple(sheets)


def _sheet(model_price: ModelPrice) -> PriceSheet | None:
    values = {k: v for k, v in vars(model_price).items() if v is not None and not k.startswith("_")}
    token_values = {_TOKEN_KEYS[k]: v for k, v in values.items() if k in _TOKEN_KEYS}
    if not token_values and set(values) - {"requests_kcount"}:
        return None
    per_request = values.get("requests_kcount", ZERO)
    if isinstance(per_request, TieredPrices):
        per_request = per_request.base
    base = {kind: v.base if isinstance(v, TieredPrices) else v for kind, v in token_values.items()}
    thresholds = sorted({t.start for v in token_values.values() if isinstance(v, TieredPrices) for t in v.tiers})
    tiers = []
    for above in thresholds:
        tier_prices: dict[str, Decimal] = {}
        for kind, value in token_values.items():
            if isinstance(value, TieredPrices):
                applicable = [t.price for t in value.tiers if t.start <= above]
                tier_prices[kind] = applicable[-1] if applicable else value.base
        tiers.append((above, tier_prices))
    return build_sheet(base, tiers, per_request / 1000)


def _utc_second(value: time) -> int:
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(UTC).time()
    return value.hour * 3600 + value.minute * 60 + value.second
