"""Indexed flattened attributes (`prefix.{i}.rest`), as OpenInference and OpenLLMetry write lists."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tracehouse.collector.stages.normalize.mapper import KEY_SEPARATOR
from tracehouse.collector.stages.normalize.memo import KeyTextMemo

MAX_INDEX_DIGITS = 9  # an index longer than this is garbage, not a list position

Groups = dict[str, dict[str, dict[str, str]]]


def group_indexed(attrs: Mapping[str, str], prefixes: tuple[str, ...]) -> Groups:
    """One pass over `attrs`: `out[prefix][i][rest] = value` for every key `prefix + f"{i}." + rest`
    (`i` kept as its digits; `ordered` sorts numerically).

    Each prefix ends with '.'. Keys whose index is not a plain decimal number are ignored.
    """
    out: Groups = {}
    for key, value in attrs.items():
        if not key.startswith(prefixes):
            continue
        for prefix in prefixes:
            if key.startswith(prefix):
                break
        index, _, rest = key[len(prefix) :].partition(".")
        if not rest or not index.isdigit() or not index.isascii() or len(index) > MAX_INDEX_DIGITS:
            continue
        # get-then-set: setdefault would build a throwaway dict for every key
        group = out.get(prefix)
        if group is None:
            group = out[prefix] = {}
        entry = group.get(index)
        if entry is None:
            entry = group[index] = {}
        entry[rest] = value
    return out


# For each prefix present, its entries in index order, each as its (rest, key) pairs. Shared: never mutated.
Plan = list[tuple[str, list[list[tuple[str, str]]]]]


class IndexedFamilies:
    """`ordered(group_indexed(attrs, prefixes)[prefix])` for every prefix at once, found with one regular-expression
    scan of the span's key text (`mapper.key_text`): most keys of an LLM span belong to no list, and testing them
    one by one was most of the cost of reading one. A key text seen twice gets a plan, remembered, that says
    where each entry's values are, so later spans with those keys skip the scan as well; one seen once is not
    planned (an app that puts ids in its keys would fill the memo with plans nobody reads)."""

    __slots__ = ("prefixes", "_pattern", "_plans")

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        # With no prefix starting another, the first alternative that matches is the prefix group_indexed picks.
        if any(a != b and a.startswith(b) for a in prefixes for b in prefixes):
            raise ValueError(f"a prefix starts another: {prefixes}")
        self.prefixes = prefixes
        alternatives = "|".join(re.escape(prefix) for prefix in prefixes)
        sep = KEY_SEPARATOR
        self._pattern = re.compile(f"{sep}(({alternatives})([0-9]{{1,{MAX_INDEX_DIGITS}}})\\.([^{sep}]+))")
        # key text -> its count of separators once seen, and (that count, its plan) once seen twice
        self._plans = KeyTextMemo()

    def ordered_groups(self, attrs: Mapping[str, str], keys: str) -> dict[str, list[dict[str, str]]]:
        """prefix -> its entries in index order, for the prefixes present; `keys` is `key_text(attrs)`."""
        planned: tuple[int, Plan] | int | None = self._plans.get(keys)
        if planned is None:
            separators = keys.count(KEY_SEPARATOR)
            self._plans.remember(keys, keys, separators)
            return self._group(attrs, keys) if separators == len(attrs) else self._group_slowly(attrs)
        if isinstance(planned, int):
            planned = self._plans[keys] = (planned, self._plan(keys))
        separators, plan = planned
        if separators != len(attrs):
            return self._group_slowly(attrs)
        # Plain loops: on these few-item entries, comprehensions and dict(zip(...)) cost twice as much.
        out: dict[str, list[dict[str, str]]] = {}
        for prefix, entries in plan:
            items = out[prefix] = []
            for pairs in entries:
                entry = {}
                for rest, key in pairs:
                    entry[rest] = attrs[key]
                items.append(entry)
        return out

    def _group_slowly(self, attrs: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
        # A key holds the separator itself, so the key text does not split into the keys: test them one by one.
        return {prefix: ordered(entries) for prefix, entries in group_indexed(attrs, self.prefixes).items()}

    def _group(self, attrs: Mapping[str, str], keys: str) -> dict[str, list[dict[str, str]]]:
        grouped: Groups = {}
        for key, prefix, index, rest in self._pattern.findall(keys):
            group = grouped.get(prefix)
            if group is None:
                group = grouped[prefix] = {}
            entry = group.get(index)
            if entry is None:
                entry = group[index] = {}
            entry[rest] = attrs[key]
        return {prefix: ordered(group) for prefix, group in grouped.items()}

    def _plan(self, keys: str) -> Plan:
        grouped: dict[str, dict[str, list[tuple[str, str]]]] = {}
        for key, prefix, index, rest in self._pattern.findall(keys):
            group = grouped.get(prefix)
            if group is None:
                group = grouped[prefix] = {}
            pairs = group.get(index)
            if pairs is None:
                group[index] = [(rest, key)]
            else:
                pairs.append((rest, key))
        return [
            (prefix, list(group.values()) if len(group) == 1 else [group[i] for i in sorted(group, key=int)])
            for prefix, group in grouped.items()
        ]


def ordered(items: dict[str, dict[str, str]] | None) -> list[dict[str, str]]:
    """The grouped entries in index order (gaps closed)."""
    if not items:
        return []
    if len(items) == 1:
        return list(items.values())
    return [items[i] for i in sorted(items, key=int)]
