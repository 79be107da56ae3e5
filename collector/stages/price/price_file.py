"""The user's price file (TOML): entries that override and extend the catalogue.

    [[price]]
    provider = "openai"            # optional; omitted matches every provider
    model = "ft:gpt-4o-mini:acme:*"
    match = "glob"                 # exact (default) | glob | regex (RE2 syntax, whole name)
    effective_from = 2025-01-01    # optional; a UTC date, omitted means "always"
    input = 0.30                   # USD per million tokens; input and output are required
    cache_read = 0.15              # optional: cache_read, cache_write, input_audio default to input,
    output = 1.20                  #   reasoning and output_audio to output; `audio` sets both audio kinds
    per_request = 0                # optional flat USD fee per call
    batch = 0.5                    # optional: batch-API calls pay this share of every token rate
    note = "negotiated discount"   # optional, shown by `tracehouse prices show`

    [[price.tiers]]                # optional cliff tiers: when the prompt has more than `above`
    above = 200_000                #   tokens (cached included), every token of the call is billed
    input = 6                      #   at the tier's rates; a tier overrides only the kinds it names
    output = 22.5

Model names and providers compare case-insensitively. Numbers are read as exact decimals.
Every problem is reported with the file, line and entry, and stops the collector at start-up.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tracehouse.collector.columns import COST_USER
from tracehouse.collector.settings import ConfigError
from tracehouse.collector.stages.price.option import ALWAYS, PriceOption, date_to_ns
from tracehouse.collector.stages.price.providers import catalogue_provider
from tracehouse.collector.stages.price.rates import KINDS, ZERO, PriceSheet, build_sheet

MATCH_KINDS = ("exact", "glob", "regex")
_PRICE_KEYS = (*KINDS, "audio")
_ENTRY_KEYS = frozenset(
    {"provider", "model", "match", "effective_from", "per_request", "tiers", "note", "batch", *_PRICE_KEYS}
)
_TIER_KEYS = frozenset({"above", *_PRICE_KEYS})
_ENTRY_HEADER = re.compile(r"^\s*\[\[\s*price\s*\]\]")
_TIER_HEADER = re.compile(r"^\s*\[\[\s*price\s*\.\s*tiers\s*\]\]")


class PriceFileError(ConfigError):
    """The price file cannot be used; the message names the file, the line or entry, and the problem."""


@dataclass(frozen=True)
class PriceRule:
    """One entry of the price file, validated and compiled."""

    number: int  # 1-based position in the file
    line: int | None
    provider: str  # catalogue-style provider id, '' for any
    model: str
    match: str
    effective_from: date | None
    sheet: PriceSheet
    note: str
    matches: Callable[[str], bool]  # takes the lower-cased model name
    batch: PriceSheet | None = None  # the rates of batch-API calls (`batch` share of every token rate)

    @property
    def rank(self) -> int:
        """Lower is more specific: exact, then glob, then regex; a named provider beats any provider."""
        return MATCH_KINDS.index(self.match) * 2 + (0 if self.provider else 1)

    def option(self, matched: str) -> PriceOption:
        start = date_to_ns(self.effective_from) if self.effective_from else ALWAYS
        effective = self.effective_from.isoformat() if self.effective_from else ""
        batch = ((ALWAYS, self.batch),) if self.batch else ()
        return PriceOption(
            COST_USER, self.model, effective, self.sheet, self.provider, matched, start, rule=self, batch=batch
        )


class PriceFile:
    """The parsed file. `options` answers which entries may price a span, most specific first."""

    def __init__(self, path: Path, rules: list[PriceRule]) -> None:
        self.path = path
        self.rules = rules

    @classmethod
    def load(cls, path: str | Path) -> PriceFile:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PriceFileError(f"price file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PriceFileError(f"price file {path} cannot be read: {exc}") from None
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: str | Path = "<price file>") -> PriceFile:
        path = Path(path)
        try:
            data = tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            raise PriceFileError(f"price file {path}: not valid TOML: {exc}") from None
        unknown = set(data) - {"price"}
        if unknown:
            keys = ", ".join(sorted(unknown))
            raise PriceFileError(f"price file {path}: unknown top-level key(s) {keys}; entries go in [[price]] tables")
        entries = data.get("price", [])
        if not isinstance(entries, list):
            raise PriceFileError(f"price file {path}: `price` must be an array of tables ([[price]])")
        lines = _Lines(text, len(entries))
        rules = [_parse_entry(entry, i, path, lines) for i, entry in enumerate(entries)]
        _reject_duplicates(rules, path)
        return cls(path, rules)

    def options(self, provider: str, names: list[str]) -> tuple[PriceOption, ...]:
        """Options from every entry matching one of the span's model names, in precedence order.

        Precedence: match kind (exact > glob > regex), then an entry naming the provider over one
        for any provider, then the order of `names` (response model before request model), then the
        latest effective date (the span takes the first one not after its timestamp), then file order.
        """
        wanted = catalogue_provider(provider) if provider else ""
        found: list[tuple[tuple[int, int, int, int], PriceOption]] = []
        for name_index, name in enumerate(names):
            lowered = name.lower()
            for rule in self.rules:
                if rule.provider and rule.provider != wanted:
                    continue
                if rule.matches(lowered):
                    newest_first = -(rule.effective_from.toordinal() if rule.effective_from else 0)
                    found.append(((rule.rank, name_index, newest_first, rule.number), rule.option(name)))
        found.sort(key=lambda pair: pair[0])
        return tuple(option for _, option in found)


class _Lines:
    """Where each [[price]] entry and its keys start in the text, for error messages."""

    def __init__(self, text: str, entries: int) -> None:
        self.lines = text.splitlines()
        headers = [i for i, line in enumerate(self.lines) if _ENTRY_HEADER.match(line)]
        # Entries written inline (price = [{...}]) have no header: then we name them by number only.
        self.headers = headers if len(headers) == entries else []

    def entry(self, index: int) -> int | None:
        return self.headers[index] + 1 if self.headers else None

    def key(self, index: int, key: str, tier: int | None = None) -> int | None:
        if not self.headers:
            return None
        start = self.headers[index]
        end = self.headers[index + 1] if index + 1 < len(self.headers) else len(self.lines)
        tier_headers = [i for i in range(start, end) if _TIER_HEADER.match(self.lines[i])]
        if tier is None:
            end = tier_headers[0] if tier_headers else end
        elif tier < len(tier_headers):
            start = tier_headers[tier]
            end = tier_headers[tier + 1] if tier + 1 < len(tier_headers) else end
        else:
            return start + 1
        pattern = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
        for i in range(start, end):
            if pattern.match(self.lines[i]):
                return i + 1
        return start + 1


def _parse_entry(entry: Any, index: int, path: Path, lines: _Lines) -> PriceRule:
    number = index + 1
    model_name = entry.get("model") if isinstance(entry, dict) else None

    def fail(problem: str, key: str | None = None, tier: int | None = None) -> PriceFileError:
        line = lines.key(index, key, tier) if key else lines.entry(index)
        where = f"line {line}, " if line else ""
        what = f" (model {model_name!r})" if isinstance(model_name, str) else ""
        return PriceFileError(f"price file {path}: {where}entry {number}{what}: {problem}")

    if not isinstance(entry, dict):
        raise fail("each [[price]] entry must be a table")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"unknown key {key!r}; allowed: {', '.join(sorted(_ENTRY_KEYS))}", key)

    if not isinstance(model_name, str) or not model_name.strip():
        raise fail("`model` is required and must be a non-empty string", "model")
    model = model_name.strip()
    match = entry.get("match", "exact")
    if match not in MATCH_KINDS:
        raise fail(f"`match` must be one of exact, glob, regex, got {match!r}", "match")
    try:
        matches = _matcher(model, match)
    except ValueError as exc:
        raise fail(f"`model` is not a valid {match} pattern: {exc}", "model") from None

    provider = entry.get("provider", "")
    if not isinstance(provider, str):
        raise fail(f"`provider` must be a string, got {provider!r}", "provider")
    provider = catalogue_provider(provider) if provider.strip() and provider.strip() != "*" else ""

    effective_from = _effective_from(entry.get("effective_from"), lambda p: fail(p, "effective_from"))
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise fail("`note` must be a string", "note")

    prices = _prices(entry, lambda p, k: fail(p, k))
    for required in ("input", "output"):
        if required not in prices:
            raise fail(f"`{required}` (USD per million tokens) is required; write {required} = 0 for a free model")
    per_request = _decimal(entry["per_request"], lambda p: fail(p, "per_request")) if "per_request" in entry else ZERO

    raw_tiers = entry.get("tiers", [])
    if not isinstance(raw_tiers, list):
        raise fail("`tiers` must be an array of tables ([[price.tiers]])", "tiers")
    tiers: list[tuple[int, dict[str, Decimal]]] = []
    for t, tier in enumerate(raw_tiers):
        if not isinstance(tier, dict):
            raise fail(f"tier {t + 1} must be a table", "tiers")
        bad = set(tier) - _TIER_KEYS
        if bad:
            raise fail(f"tier {t + 1}: unknown key {sorted(bad)[0]!r}", sorted(bad)[0], t)
        above = tier.get("above")
        if isinstance(above, bool) or not isinstance(above, int) or above < 0:
            raise fail(f"tier {t + 1}: `above` must be a whole number of prompt tokens >= 0, got {above!r}", "above", t)
        if any(above == seen for seen, _ in tiers):
            raise fail(f"tier {t + 1}: another tier already starts above {above} tokens", "above", t)
        tier_prices = _prices(tier, lambda p, k, t=t: fail(f"tier {t + 1}: {p}", k, t))
        if not tier_prices:
            raise fail(f"tier {t + 1} names no price", "above", t)
        tiers.append((above, tier_prices))

    batch = None
    if "batch" in entry:
        share = _decimal(entry["batch"], lambda p: fail(p, "batch"), "batch")
        if not 0 < share <= 1:
            raise fail(
                f"`batch` is the share of the standard rates batch-API calls pay, above 0 and at most 1"
                f" (0.5 = half price), got {entry['batch']!r}",
                "batch",
            )
        batch = build_sheet(
            {kind: rate * share for kind, rate in prices.items()},
            [(above, {kind: rate * share for kind, rate in tier.items()}) for above, tier in tiers],
            per_request,
        )

    return PriceRule(
        number=number,
        line=lines.entry(index),
        provider=provider,
        model=model,
        match=match,
        effective_from=effective_from,
        sheet=build_sheet(prices, tiers, per_request),
        note=note,
        matches=matches,
        batch=batch,
    )


def _prices(table: Mapping[str, Any], fail: Callable[[str, str], PriceFileError]) -> dict[str, Decimal]:
    prices = {kind: _decimal(table[kind], lambda p, k=kind: fail(p, k), kind) for kind in KINDS if kind in table}
    if "audio" in table:
        audio = _decimal(table["audio"], lambda p: fail(p, "audio"), "audio")
        prices.setdefault("input_audio", audio)
        prices.setdefault("output_audio", audio)
    return prices


def _decimal(value: Any, fail: Callable[[str], PriceFileError], name: str = "per_request") -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise fail(f"`{name}` must be a number, got {value!r}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise fail(f"`{name}` must be a number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise fail(f"`{name}` must be a finite number >= 0, got {value!r}")
    return number


def _effective_from(value: Any, fail: Callable[[str], PriceFileError]) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        raise fail(f"`effective_from` must be a date (YYYY-MM-DD), not a date-time: {value.isoformat()}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise fail(f"`effective_from` must be a date (YYYY-MM-DD), got {value!r}")


def _matcher(pattern: str, match: str) -> Callable[[str], bool]:
    """A predicate over lower-cased model names; globs and regexes run on RE2 (linear time)."""
    import re2

    if match == "exact":
        return pattern.lower().__eq__
    options = re2.Options()
    options.case_sensitive = False
    try:
        compiled = re2.compile(_glob_to_regex(pattern) if match == "glob" else pattern, options)
    except re2.error as exc:
        message = exc.args[0] if exc.args else str(exc)
        raise ValueError(message.decode(errors="replace") if isinstance(message, bytes) else message) from None
    return lambda name: compiled.fullmatch(name) is not None


def _glob_to_regex(glob: str) -> str:
    """Shell-style glob (*, ?, [abc], [!abc]) as an RE2 pattern for the whole name."""
    out, i = [], 0
    while i < len(glob):
        char = glob[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in glob[i + 1 :]:
            end = glob.index("]", i + 1)
            body = glob[i:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


def _reject_duplicates(rules: list[PriceRule], path: Path) -> None:
    seen: dict[tuple[str, str, str, date | None], PriceRule] = {}
    for rule in rules:
        key = (rule.provider, rule.match, rule.model.lower(), rule.effective_from)
        first = seen.setdefault(key, rule)
        if first is not rule:
            where = f"line {rule.line}, " if rule.line else ""
            raise PriceFileError(
                f"price file {path}: {where}entry {rule.number} (model {rule.model!r}): same provider, model, match "
                f"and effective_from as entry {first.number}; keep one"
            )
