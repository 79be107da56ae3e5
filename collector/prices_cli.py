"""`tracehouse prices`: why did this call cost that, which models have no price, and reprice the store.

tracehouse prices show MODEL [--provider P] [--at DATE]   which rule prices MODEL, per-kind prices
tracehouse prices unknown [--since DATE]                  models seen without a price, with span counts
tracehouse prices reprice --since DATE                    recompute stored costs (not 'provided' ones)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

from tracehouse.collector.columns import COST_SOURCE, COST_UNKNOWN, COST_USER
from tracehouse.collector.config import Config, ConfigError, add_flags

if TYPE_CHECKING:  # the catalogue loads in ~0.3 s: only the subcommands that price pay for it
    from tracehouse.collector.stages.price import PriceOption, Pricer

UNKNOWN_SQL = f"""
SELECT
    LlmProvider AS provider,
    LlmModel AS model,
    count() AS spans,
    min(Timestamp) AS first_seen,
    max(Timestamp) AS last_seen
FROM otel_traces
WHERE {COST_SOURCE} = '{COST_UNKNOWN}'{{since}}
GROUP BY provider, model
ORDER BY spans DESC, provider, model
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `prices` and its subcommands on the `tracehouse` parser."""
    prices = subparsers.add_parser("prices", help="LLM prices: show a model's price, list unpriced models, reprice")
    sub = prices.add_subparsers(dest="prices_command", required=True)

    show = sub.add_parser("show", help="which rule prices a model, and its per-kind prices per million tokens")
    show.add_argument("model", help="model name as spans carry it, e.g. gpt-4o-mini-2024-07-18 or openai/gpt-4o")
    show.add_argument("--provider", default="", help="provider id as spans carry it (openai, anthropic, azure, ...)")
    show.add_argument("--at", help="price as of this UTC date or date-time (default: now)")
    _price_file_option(show)
    add_flags(show, "prices")

    unknown = sub.add_parser("unknown", help="models seen in the store without a price, with span counts")
    unknown.add_argument("--since", help="only spans at or after this UTC date or date-time")
    add_flags(unknown, "prices")

    reprice = sub.add_parser("reprice", help="recompute stored costs after the price file changed")
    reprice.add_argument("--since", required=True, help="reprice spans at or after this UTC date or date-time")
    _price_file_option(reprice)
    add_flags(reprice, "prices")
    return prices


def _price_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--price-file", help="use this price file instead of the configured one")


def run(args: argparse.Namespace, config: Config, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run a `tracehouse prices` subcommand; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if args.prices_command == "show":
            return _show(args, config, out)
        if args.prices_command == "unknown":
            return _unknown(args, config, out, err)
        return _reprice(args, config, out, err)
    except (ConfigError, ValueError) as exc:
        print(f"tracehouse: {exc}", file=err)
        return 2


_AGO = re.compile(r"(\d{1,6})\s*([mhdw])")
_AGO_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str) -> datetime:
    """A UTC instant from `YYYY-MM-DD`, an ISO date-time (naive means UTC) or a time ago (`30m`, `24h`, `7d`,
    `2w`, as `journalctl --since` and Grafana's `now-7d` read)."""
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        return datetime.now(UTC) - timedelta(**{_AGO_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a date, date-time or time ago: {text!r} (use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or 7d, 24h, 30m)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _pricer(args: argparse.Namespace, config: Config) -> Pricer:
    from tracehouse.collector.stages.price import PriceFile, Pricer

    # Read the file now, not as the config loaded it: `reprice` follows a file edited since.
    path = getattr(args, "price_file", None) or config.pricing.price_file
    return Pricer(PriceFile.load(path) if path else None)


# -- show ---------------------------------------------------------------------------------------


def _show(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    """What ingest applies to a span of this model at `--at`: with `--provider`, for spans carrying it;
    without, for each provider a price-file entry for this model names (ingest applies such an entry
    to spans of that provider only), then for spans with no provider. Exits 1 when nothing prices it."""
    pricer = _pricer(args, config)
    at = parse_when(args.at) if args.at else datetime.now(UTC)
    ts_ns = int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000
    provider = f" (provider {args.provider})" if args.provider else ""
    print(f"{args.model}{provider} at {at:%Y-%m-%d %H:%M:%S} UTC", file=out)
    if args.provider:
        priced = _show_price(pricer, args.provider, args.model, ts_ns, out, "  ")
    else:
        scoped = _entry_providers(pricer, args.model)
        priced = False
        for name in scoped:
            print(f"  spans with provider {name} (a price-file entry for this model names it):", file=out)
            priced = _show_price(pricer, name, args.model, ts_ns, out, "    ") or priced
        if scoped:
            print("  spans with no provider (for another provider: --provider NAME):", file=out)
        priced = _show_price(pricer, "", args.model, ts_ns, out, "    " if scoped else "  ") or priced
    if not priced:
        print("  add a [[price]] entry to the price file, then `tracehouse prices reprice --since DATE`", file=out)
    return 0 if priced else 1


def _entry_providers(pricer: Pricer, model: str) -> list[str]:
    """The providers named by price-file entries that match this model name, in file order."""
    if pricer.price_file is None:
        return []
    lowered = model.lower()
    named = (rule.provider for rule in pricer.price_file.rules if rule.provider and rule.matches(lowered))
    return list(dict.fromkeys(named))


def _show_price(pricer: Pricer, provider: str, model: str, ts_ns: int, out: IO[str], indent: str) -> bool:
    """The price the pricer chooses for a span with this provider and model at ts_ns; False if none."""
    options = pricer.options(provider, model, "")
    chosen = next((o for o in options if o.active(ts_ns)), None)
    if chosen is None:
        print(
            f"{indent}no price: its spans are stored with {COST_SOURCE} '{COST_UNKNOWN}' and NULL costs, never 0",
            file=out,
        )
        if options:
            print(f"{indent}entries that match but start later:", file=out)
            for option in options:
                print(f"{indent}  {_describe(option, pricer)}", file=out)
        return False
    print(f"{indent}priced by  {_describe(chosen, pricer)}", file=out)
    if not provider and chosen.provider:
        print(f"{indent}provider   {chosen.provider} (the catalogue's, found from the model name)", file=out)
    if chosen.matched.lower() != model.lower():
        print(f"{indent}matched as {chosen.matched!r}", file=out)
    print(
        f"{indent}effective  {'since ' + chosen.effective_from if chosen.effective_from else 'no start date'}", file=out
    )
    if chosen.daily:
        start, end = chosen.daily
        print(f"{indent}time of day {_clock(start)}-{_clock(end)} UTC only", file=out)
    if chosen.rule is not None and chosen.rule.note:
        print(f"{indent}note       {chosen.rule.note}", file=out)
    _print_rates(chosen, out, indent)
    others = [o for o in options if o is not chosen]
    if others:
        print(f"{indent}also matching (lower precedence, or not in effect at this time):", file=out)
        for option in others:
            when = f" since {option.effective_from}" if option.effective_from else ""
            print(f"{indent}  {_describe(option, pricer)}{when}", file=out)
    return True


def _describe(option: PriceOption, pricer: Pricer) -> str:
    from tracehouse.collector.stages.price import CATALOGUE_VERSION

    if option.source == COST_USER:
        rule = option.rule
        path = pricer.price_file.path if pricer.price_file else "price file"
        line = f", line {rule.line}" if rule.line else ""
        provider = rule.provider or "any provider"
        return f"user price file {path}, entry {rule.number}{line}: {rule.match} {rule.model!r} ({provider})"
    return f"catalogue genai-prices {CATALOGUE_VERSION}: provider {option.provider}, model {option.model_id}"


def _print_rates(option: PriceOption, out: IO[str], indent: str = "  ") -> None:
    from tracehouse.collector.stages.price.rates import KINDS

    base = option.sheet.base
    print(f"{indent}USD per million tokens", file=out)
    for kind in KINDS:
        rate = getattr(base, kind)
        how = "" if kind in base.explicit else f"  ({_fallback_root(kind)} rate)"
        print(f"{indent}  {kind:<13} {_num(rate)}{how}", file=out)
    if base.per_request:
        print(f"{indent}  {'per call':<13} {_num(base.per_request)} USD", file=out)
    for tier in option.sheet.tiers:
        print(f"{indent}prompt above {tier.above:,} tokens: every token of the call at", file=out)
        print(f"{indent}  " + ", ".join(f"{kind} {_num(getattr(tier.rates, kind))}" for kind in KINDS), file=out)


def _fallback_root(kind: str) -> str:
    from tracehouse.collector.stages.price.rates import FALLBACK

    while kind in FALLBACK:
        kind = FALLBACK[kind]
    return kind


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _clock(second: int) -> str:
    return f"{second // 3600:02d}:{second % 3600 // 60:02d}"


# -- unknown ------------------------------------------------------------------------------------


def _unknown(args: argparse.Namespace, config: Config, out: IO[str], err: IO[str]) -> int:
    since = ""
    if args.since:
        when = parse_when(args.since)
        since = f" AND Timestamp >= toDateTime64('{when:%Y-%m-%d %H:%M:%S.%f}', 9, 'UTC')"
    rows = _query_rows(config, UNKNOWN_SQL.format(since=since), err)
    if rows is None:
        return 1
    if not rows:
        print("every LLM span has a price", file=out)
        return 0
    table = [("provider", "model", "spans", "first seen", "last seen")]
    for row in rows:
        table.append(
            (
                row["provider"] or "-",
                row["model"] or "-",
                str(row["spans"]),
                str(row["first_seen"])[:19],
                str(row["last_seen"])[:19],
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        print(
            "  ".join(cell.ljust(widths[i]) if i != 2 else cell.rjust(widths[i]) for i, cell in enumerate(r)), file=out
        )
    print(
        f"\nThese spans have NULL costs ({COST_SOURCE} '{COST_UNKNOWN}'). Price them with a [[price]] entry in the"
        " price file, then `tracehouse prices reprice --since DATE`.",
        file=out,
    )
    return 0


def _query_rows(config: Config, sql: str, err: IO[str]) -> list[dict[str, Any]] | None:
    """Run a fixed read query the way `tracehouse sql` does (a running collector's endpoint, else the store)."""
    from tracehouse.collector.query import QueryCancelled, QueryFailed, run_read_query

    try:
        body = run_read_query(config, sql, "jsonl")
    except (QueryCancelled, KeyboardInterrupt):
        print("tracehouse: cancelled", file=err)
        return None
    except QueryFailed as exc:
        hint = " (is the schema migrated? `tracehouse migrate`)" if "UNKNOWN_TABLE" in str(exc) else ""
        print(f"tracehouse: {exc}{hint}", file=err)
        return None
    return [json.loads(line) for line in body.splitlines() if line.strip()]


# -- reprice ------------------------------------------------------------------------------------


def _reprice(args: argparse.Namespace, config: Config, out: IO[str], err: IO[str]) -> int:
    from tracehouse.collector.reprice import RepriceError, reprice
    from tracehouse.collector.runtime import StoreBusy, migrated_store

    since = parse_when(args.since)
    pricer = _pricer(args, config)
    if config.is_embedded and not config.store_dir.exists():
        print(f"tracehouse: no store in {config.data_dir}", file=err)
        return 1
    try:
        with migrated_store(config) as client:
            result = reprice(client, pricer, since, ProgressBar(err))
    except StoreBusy as exc:
        print(f"tracehouse: {exc} (repricing rewrites the embedded store: stop it first)", file=err)
        return 1
    except RepriceError as exc:
        print(f"tracehouse: {exc}", file=err)
        return 1
    sources = ", ".join(f"{source} {count:,}" for source, count in sorted(result.by_source.items()))
    print(
        f"repriced {result.spans:,} spans on {len(result.days)} day(s) since {since:%Y-%m-%d %H:%M:%S} UTC; "
        f"{result.changed:,} changed",
        file=out,
    )
    if result.spans:
        print(f"  by source: {sources}", file=out)
        print(
            f"  cost of these spans: {_num(result.cost_before)} USD before, {_num(result.cost_after)} USD after"
            " (unknown costs count as 0 here)",
            file=out,
        )
    return 0


class ProgressBar:
    """A one-line progress bar on a terminal; a line per day and stage otherwise (logs, CI)."""

    def __init__(self, stream: IO[str], width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._last = 0.0
        self._last_key: tuple = ()

    def __call__(self, state: Any) -> None:
        done, total = state.done_spans, state.total_spans
        day = f"day {state.day} ({min(state.done_days + 1, state.total_days)}/{state.total_days})" if state.day else ""
        text = f"{done:,}/{total:,} spans  {day}  {state.stage}"
        if self.tty:
            now = time.monotonic()
            if state.stage != "done" and now - self._last < 0.1:
                return
            self._last = now
            filled = self.width * done // total if total else self.width
            percent = 100 * done // total if total else 100
            line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {percent:3d}% {text}"
            self.stream.write(line.ljust(100) + ("\n" if state.stage == "done" else ""))
        else:
            key = (state.day, state.stage)
            if key == self._last_key:
                return
            self._last_key = key
            self.stream.write(f"reprice: {text}\n")
        self.stream.flush()
