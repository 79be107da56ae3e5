"""The pricing stage: cost columns for every model call in a batch, with where each price came from.

Only model calls are priced: spans of kind LLM or EMBEDDING, and spans normalization could not
classify (no kind) that carry a model, token counts or a cost. Chains, agents and tools get source
'' and NULL costs even when they carry usage: they repeat their children's, and summing both would
count a call twice.

Per model call, in order: a cost the span carries wins ('provided'); else the user's price file,
then the catalogue, at the span's own timestamp ('user' / 'catalogue'); else NULL costs marked
'unknown' and counted. A span without a provider takes the provider the catalogue finds from its
model name, for price-file entries too. Look-ups are cached per (provider, request model, response
model), so a warm batch only does Decimal arithmetic.

A call with a `tracehouse.batch.id` (one request of a provider batch job) is priced at the matched
price's batch rates (genai-prices' `processing: batch` variant, or the price file's `batch` share),
with PriceVariant 'batch' and StandardCostUsd the live-rate cost; without batch rates known for its
model and date it is priced at the standard rates, PriceVariant ''.

Every span naming a model also gets CanonicalModel, the catalogue's id for it ('' when unknown), which
otel_traces.LlmModel (llm_calls.model) reads first so a model's failures and successes group together.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import (
    CANONICAL_MODEL,
    COST_COLUMNS,
    COST_PROVIDED,
    COST_SOURCE,
    COST_UNKNOWN,
    PRICE_EFFECTIVE_FROM,
    PRICE_MODEL,
    PRICE_VARIANT,
    PRICE_VARIANT_BATCH,
    STANDARD_COST_USD,
    TOKEN_COLUMNS,
)
from tracehouse.collector.stages.price.catalogue import Catalogue
from tracehouse.collector.stages.price.option import PriceOption, first_active
from tracehouse.collector.stages.price.price_file import PriceFile
from tracehouse.collector.stages.price.provided import MAX_COST, TRIGGER_KEYS, provided_costs
from tracehouse.collector.stages.price.rates import compute_costs, decimal_context
from tracehouse.instrumentation.attributes import BATCH_ID

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

# LlmSpanKind values that are one billed call to a model.
CALL_KINDS = frozenset({"LLM", "EMBEDDING"})

_NO_COSTS: tuple[None, ...] = (None,) * len(COST_COLUMNS)
_MISSING = object()
MAX_CACHED_MODELS = 10_000


class Pricer:
    """Prices batches (columns.PRICE_COLUMNS). It keeps no counts: unpriced calls are counted from the
    batch's CostSource column (tracehouse_unpriced_calls), and listed from the store by
    `tracehouse prices unknown`."""

    def __init__(self, price_file: PriceFile | None = None, catalogue: Catalogue | None = None) -> None:
        self.price_file = price_file
        self.catalogue = catalogue if catalogue is not None else Catalogue()
        self._options: dict[tuple[str, str, str], tuple[PriceOption, ...]] = {}
        # Per model: its first option when that one applies at any time (the common case), else None.
        self._always: dict[tuple[str, str, str], PriceOption | None] = {}
        # Per model: the catalogue's model id, '' when the catalogue does not know it (filled by options()).
        self._canonical: dict[tuple[str, str, str], str] = {}

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        return self.price(batch)

    def options(self, provider: str, request_model: str, response_model: str) -> tuple[PriceOption, ...]:
        """Every price that may apply to this model, first active one wins: price file, then catalogue."""
        key = (provider, request_model, response_model)
        found = self._options.get(key)
        if found is None:
            if len(self._options) >= MAX_CACHED_MODELS:  # garbage model names must not grow memory forever
                self._options.clear()
                self._always.clear()
                self._canonical.clear()
            names = [response_model] if response_model else []
            if request_model and request_model != response_model:
                names.append(request_model)
            catalogue: tuple[PriceOption, ...] = ()
            for name in names:
                catalogue = self.catalogue.options(provider, name)
                if catalogue:
                    break
            # A span without a provider is priced as the provider the catalogue finds from its model name,
            # by the price file too: an entry for (openai, gpt-4o-mini) must not lose to the catalogue's
            # openai price just because the instrumentation sent no provider.
            resolved = provider or (catalogue[0].provider if catalogue else "")
            self._canonical[key] = catalogue[0].model_id if catalogue else ""
            user = self.price_file.options(resolved, names) if self.price_file else ()
            found = self._options[key] = user + catalogue
        return found

    def canonical_model(self, provider: str, request_model: str, response_model: str) -> str:
        """The catalogue's model id (gpt-4o-mini for gpt-4o-mini-2024-07-18 as for gpt-4o-mini), so that a
        failed call, which carries only the request model, groups with the successful ones; '' when the
        catalogue does not know the model (LlmModel then falls back to the names as sent)."""
        key = (provider, request_model, response_model)
        found = self._canonical.get(key)
        if found is None:
            self.options(*key)
            found = self._canonical.get(key, "")
        return found

    def price(self, batch: SpanBatch) -> SpanBatch:
        """The stage: add the PRICE_COLUMNS to `batch` (rewritten whole if already there)."""
        n = len(batch)
        cols = batch.columns
        blank: list = [""] * n
        nothing: list = [None] * n
        kinds = cols.get("LlmSpanKind") or blank
        attributes = cols.get("SpanAttributes") or [{}] * n
        providers = cols.get("LlmProvider") or blank
        request_models = cols.get("LlmRequestModel") or blank
        response_models = cols.get("LlmResponseModel") or blank
        timestamps = cols.get("Timestamp") or [0] * n
        tokens = [cols.get(name) or nothing for name in TOKEN_COLUMNS]

        results: list[tuple[Decimal | None, ...]] = [_NO_COSTS] * n
        sources = [""] * n
        models = [""] * n
        effective = [""] * n
        variants = [""] * n
        standard_costs: list[Decimal | None] = [None] * n
        canonical = [""] * n
        always = self._always
        canonical_of = self._canonical
        with decimal_context():
            for i, (
                kind,
                attrs,
                provider,
                request_model,
                response_model,
                ts,
                inp,
                cr,
                cw,
                out,
                reas,
                ia,
                oa,
            ) in enumerate(
                zip(kinds, attributes, providers, request_models, response_models, timestamps, *tokens, strict=True)
            ):
                key = (provider, request_model, response_model)
                if request_model or response_model:
                    found = canonical_of.get(key)
                    canonical[i] = found if found is not None else self.canonical_model(*key)
                if kind and kind not in CALL_KINDS:
                    continue  # chains, agents, tools: they may repeat their children's usage and cost
                if attrs and not attrs.keys().isdisjoint(TRIGGER_KEYS):
                    provided = provided_costs(attrs)
                    if provided is not None:
                        results[i] = provided
                        sources[i] = COST_PROVIDED
                        continue
                if not request_model and not response_model and inp is None and out is None:
                    continue  # not an LLM call
                option = always.get(key, _MISSING)
                if option is _MISSING:
                    options = self.options(*key)
                    option = always[key] = options[0] if options and options[0].always else None
                if option is None:
                    option = first_active(self.options(*key), ts)
                if option is None:
                    sources[i] = COST_UNKNOWN
                    continue
                counts = (inp or 0, cr or 0, cw or 0, out or 0, reas or 0, ia or 0, oa or 0)
                batch_sheet = option.batch_sheet(ts) if option.batch and attrs and attrs.get(BATCH_ID) else None
                if batch_sheet is None:
                    results[i] = compute_costs(option.sheet, *counts)
                else:
                    results[i] = compute_costs(batch_sheet, *counts)
                    standard_costs[i] = compute_costs(option.sheet, *counts)[0]
                    variants[i] = PRICE_VARIANT_BATCH
                if results[i][0] is not None and results[i][0] >= MAX_COST:
                    # Absurd token counts: no cost the rollups could sum, so none of it, and unpriced.
                    results[i], standard_costs[i], sources[i] = _NO_COSTS, None, COST_UNKNOWN
                    continue
                sources[i] = option.source
                models[i] = option.model_id
                effective[i] = option.effective_from

        for name, values in zip(COST_COLUMNS, zip(*results, strict=True) if n else [()] * 7, strict=True):
            cols[name] = list(values)
        cols[COST_SOURCE] = sources
        cols[PRICE_MODEL] = models
        cols[PRICE_EFFECTIVE_FROM] = effective
        cols[PRICE_VARIANT] = variants
        cols[STANDARD_COST_USD] = standard_costs
        cols[CANONICAL_MODEL] = canonical
        return batch


def build(config: Config) -> Pricer:
    """The stage: the catalogue plus the configured price file, if any."""
    return Pricer(config.pricing.rules)
