"""PriceOption: one price that may apply to a span, from the catalogue or the user's price file.

A model resolves to an ordered tuple of options; a span takes the first one active at its own
timestamp. Effective dates and the catalogue's time-of-day prices are plain integer checks on the
span's nanosecond timestamp, so choosing costs next to nothing once the tuple is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from tracehouse.collector.stages.price.rates import PriceSheet

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
ALWAYS = -(2**63)


def date_to_ns(day: date) -> int:
    """Midnight UTC starting `day`, in ns since the epoch: effective dates are UTC dates."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS_PER_SECOND


@dataclass(frozen=True, slots=True)
class PriceOption:
    source: str  # the CostSource it gives: columns.COST_CATALOGUE or COST_USER
    model_id: str  # stored as PriceModel: the catalogue's model id or the price-file entry's model
    effective_from: str  # stored as PriceEffectiveFrom: 'YYYY-MM-DD', or '' when the price has no start date
    sheet: PriceSheet
    provider: str  # the catalogue provider, or the entry's provider ('' for any)
    matched: str  # the model name from the span that matched
    start_ns: int = ALWAYS
    daily: tuple[int, int] | None = None  # UTC seconds of day [start, end) for time-of-day prices
    rule: object | None = None  # the price-file entry, for `prices show`
    # Batch-API rates (OpenAI Batch, Anthropic Message Batches): (start ns, sheet), the first active one wins.
    batch: tuple[tuple[int, PriceSheet], ...] = ()

    @property
    def always(self) -> bool:
        return self.start_ns == ALWAYS and self.daily is None

    def active(self, ts_ns: int) -> bool:
        if ts_ns < self.start_ns:
            return False
        if self.daily is None:
            return True
        second = (ts_ns // NS_PER_SECOND) % 86_400
        start, end = self.daily
        if end < start:  # the window wraps past midnight
            return second >= start or second < end
        return start <= second < end

    def batch_sheet(self, ts_ns: int) -> PriceSheet | None:
        """The batch rates in force at `ts_ns`, or None when this price has none then."""
        for start_ns, sheet in self.batch:
            if ts_ns >= start_ns:
                return sheet
        return None


def first_active(options: tuple[PriceOption, ...], ts_ns: int) -> PriceOption | None:
    for option in options:
        if option.active(ts_ns):
            return option
    return None
