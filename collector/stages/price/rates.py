"""Price sheets compiled for the hot path, and the one cost computation both price sources share.

A sheet holds a USD-per-million-tokens rate for every token kind we store, with the fallbacks
already applied (cache read/write and input audio at the input rate, reasoning and output audio at
the output rate when no own rate is given), and optional prompt-size tiers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

KINDS: tuple[str, ...] = ("input", "cache_read", "cache_write", "output", "reasoning", "input_audio", "output_audio")
# A kind without a rate of its own is billed at this kind's rate.
FALLBACK: Mapping[str, str] = {
    "cache_read": "input",
    "cache_write": "input",
    "input_audio": "input",
    "reasoning": "output",
    "output_audio": "output",
}
ZERO = Decimal(0)
# Stored as Decimal(38, 12): quantize here, ClickHouse would truncate instead of rounding.
COST_QUANTUM = Decimal("1E-12")
# Enough digits that tokens x rate is always exact before the final rounding.
DECIMAL_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class KindRates:
    """USD per million tokens per kind (fallbacks applied), plus a flat USD fee per call."""

    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal
    input_audio: Decimal
    output_audio: Decimal
    per_request: Decimal
    explicit: frozenset[str]  # kinds priced by their own rate, not a fallback (for `prices show`)

    def per_token(self) -> tuple[Decimal, ...]:
        """The seven kind rates divided down to USD per token, exact."""
        return tuple(getattr(self, kind) / _MILLION for kind in KINDS)


@dataclass(frozen=True, slots=True)
class Tier:
    above: int  # applies when the prompt (InputTokens, cached included) has more tokens than this
    rates: KindRates


class PriceSheet:
    """One price as of one date: base rates and cliff tiers by prompt size, ready to multiply."""

    __slots__ = ("base", "tiers", "exact", "_base_unit", "_tier_units")

    def __init__(self, base: KindRates, tiers: Sequence[Tier] = ()) -> None:
        with decimal_context():
            self.base = base
            self.tiers = tuple(sorted(tiers, key=lambda t: t.above))
            self._base_unit = (*base.per_token(), base.per_request)
            # Highest threshold first, so the first one exceeded is the one that applies.
            self._tier_units = tuple(
                (t.above, (*t.rates.per_token(), t.rates.per_request)) for t in reversed(self.tiers)
            )
        # When every per-token rate has at most 12 decimals, whole tokens x rate is already exact
        # at the stored scale and the hot path can skip rounding.
        units = [self._base_unit, *(u for _, u in self._tier_units)]
        self.exact = all(int(rate.as_tuple().exponent) >= -12 for unit in units for rate in unit)

    def __repr__(self) -> str:
        return f"PriceSheet(base={self.base!r}, tiers={self.tiers!r})"

    def unit_rates(self, prompt_tokens: int) -> tuple[Decimal, ...]:
        """USD per token for the seven kinds and the per-call fee, for a prompt of this size."""
        for above, units in self._tier_units:
            if prompt_tokens > above:
                return units
        return self._base_unit


def kind_rates(
    prices: Mapping[str, Decimal], base: Mapping[str, Decimal] | None = None, per_request: Decimal = ZERO
) -> KindRates:
    """Resolve every kind: its own rate here, else its rate in `base` (a tier's base), else its fallback kind's."""
    base = base or {}

    def rate(kind: str) -> Decimal:
        if kind in prices:
            return prices[kind]
        if kind in base:
            return base[kind]
        fallback = FALLBACK.get(kind)
        return rate(fallback) if fallback else ZERO

    explicit = frozenset(k for k in KINDS if k in prices or k in base)
    return KindRates(*(rate(kind) for kind in KINDS), per_request=per_request, explicit=explicit)


def build_sheet(
    base: Mapping[str, Decimal], tiers: Sequence[tuple[int, Mapping[str, Decimal]]] = (), per_request: Decimal = ZERO
) -> PriceSheet:
    """A sheet from explicit per-million rates; a tier overrides only the kinds it names."""
    return PriceSheet(
        kind_rates(base, per_request=per_request),
        [Tier(above, kind_rates(prices, base, per_request)) for above, prices in tiers],
    )


# Indices into the tuple `compute_costs` returns, in the order of the cost columns.
TOTAL, INPUT, CACHE_READ, CACHE_WRITE, OUTPUT, REASONING, AUDIO = range(7)


def compute_costs(
    sheet: PriceSheet,
    input_tokens: int,
    cache_read: int,
    cache_write: int,
    output_tokens: int,
    reasoning: int,
    input_audio: int,
    output_audio: int,
) -> tuple[Decimal, ...]:
    """(total, uncached input, cache read, cache write, output, reasoning, audio) in USD.

    Token semantics: input includes cache read, cache write and input audio; output includes
    reasoning and output audio. What is left of each after its breakdowns (never below zero) is
    billed at the plain input / output rate. Parts are rounded half-even to 12 decimals (the stored
    scale; exact already for rates of up to 6 decimals per million), and the total is their sum plus
    the per-call fee, so the parts always add up to it. Call inside `decimal_context()`.
    """
    r_in, r_cr, r_cw, r_out, r_reas, r_ia, r_oa, fee = sheet.unit_rates(input_tokens)
    uncached = input_tokens - cache_read - cache_write - input_audio
    plain_out = output_tokens - reasoning - output_audio
    # Most spans have no cache write, reasoning or audio tokens: skip those products.
    c_in = r_in * uncached if uncached > 0 else ZERO
    c_cr = r_cr * cache_read if cache_read else ZERO
    c_cw = r_cw * cache_write if cache_write else ZERO
    c_out = r_out * plain_out if plain_out > 0 else ZERO
    c_reas = r_reas * reasoning if reasoning else ZERO
    c_audio = r_ia * input_audio + r_oa * output_audio if input_audio or output_audio else ZERO
    if not sheet.exact:
        q = COST_QUANTUM
        c_in, c_cr, c_cw, c_out, c_reas, c_audio, fee = (
            c.quantize(q) for c in (c_in, c_cr, c_cw, c_out, c_reas, c_audio, fee)
        )
    return (c_in + c_cr + c_cw + c_out + c_reas + c_audio + fee, c_in, c_cr, c_cw, c_out, c_reas, c_audio)


def decimal_context():
    """The context every cost computation runs in (exact products, half-even rounding)."""
    return localcontext(DECIMAL_CONTEXT)
