"""The vocabulary every configuration section speaks: its error, key checks and value coercion.

Import-free apart from the standard library, so the stages, the receivers' auth and config.py can
all use it without importing each other. A section (one `[table]` of the config file, plus the
TRACEHOUSE_* variables that belong to it) is declared next to the stage that reads it, as a
`Section`; config.py lists the sections and parses each once, at load.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Parsed = TypeVar("Parsed")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the setting and the problem."""


@dataclass(frozen=True)
class Section(Generic[Parsed]):
    """One table of the config file, its environment variables, and the parser beside its stage."""

    table: str
    # TRACEHOUSE_* variables this section reads (they win over the table's keys).
    env: tuple[str, ...]
    # (the table as read from the file, the environment) -> the typed settings; raises ConfigError.
    parse: Callable[[Mapping[str, Any], Mapping[str, str]], Parsed]
    # What the README's configuration table says the section is for.
    summary: str


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean X?' for the nearest known name, or the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(known)}" if known else ""


def check_keys(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """Refuse a table with a key nobody reads (a typo would silently keep the default)."""
    known = set(known)
    unknown = [key for key in table if key not in known]
    if unknown:
        raise ConfigError("; ".join(f"{where}: unknown setting {key!r}{did_you_mean(key, known)}" for key in unknown))


def snake_keys(table: Mapping[str, Any]) -> dict[str, Any]:
    """The file may spell keys with hyphens (`price-file`) or underscores; the code uses underscores."""
    return {key.replace("-", "_"): value for key, value in table.items()}


def as_bool(value: Any) -> bool:
    """true/false, or their usual spellings in an environment variable; ValueError otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "enabled"):
        return True
    if text in ("0", "false", "no", "off", "disabled"):
        return False
    raise ValueError(value)
