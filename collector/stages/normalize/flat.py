"""Indexed flattened attributes (`prefix.{i}.rest`), as OpenInference and OpenLLMetry write lists."""

from __future__ import annotations

from collections.abc import Mapping

MAX_INDEX_DIGITS = 9  # an index longer than this is garbage, not a list position


def group_indexed(attrs: Mapping[str, str], prefixes: tuple[str, ...]) -> dict[str, dict[str, dict[str, str]]]:
    """One pass over `attrs`: `out[prefix][i][rest] = value` for every key `prefix + f"{i}." + rest`
    (`i` kept as its digits; `ordered` sorts numerically).

    Each prefix ends with '.'. Keys whose index is not a plain decimal number are ignored.
    """
    out: dict[str, dict[int, dict[str, str]]] = {}
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


def ordered(items: dict[str, dict[str, str]] | None) -> list[dict[str, str]]:
    """The grouped entries in index order (gaps closed)."""
    if not items:
        return []
    return [items[i] for i in sorted(items, key=int)]
