"""The `[pricing]` section: which price file overrides and extends the catalogue.

    [pricing]
    price_file = "prices.toml"     # or TRACEHOUSE_PRICE_FILE, which wins

The file is read and checked when the configuration loads, so a mistake in it stops every command
before anything starts; `tracehouse prices reprice` reads it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracehouse.collector.settings import ConfigError, Section, check_keys, snake_keys
from tracehouse.collector.stages.price.price_file import PriceFile

PRICE_FILE_ENV = "TRACEHOUSE_PRICE_FILE"


@dataclass(frozen=True)
class PricingSettings:
    price_file: Path | None = None
    # The price file as loaded; None without one.
    rules: PriceFile | None = None


def parse_pricing(table: Mapping[str, Any], environ: Mapping[str, str]) -> PricingSettings:
    """TRACEHOUSE_PRICE_FILE, else `price_file` in [pricing], else the catalogue alone."""
    table = snake_keys(table)
    check_keys(table, {"price_file"}, "[pricing]")
    raw = environ.get(PRICE_FILE_ENV) or table.get("price_file")
    if raw is not None and not isinstance(raw, str):
        raise ConfigError(f"[pricing] price_file must be a path string, got {raw!r}")
    if not raw:
        return PricingSettings()
    path = Path(raw).expanduser()
    return PricingSettings(path, PriceFile.load(path))


PRICING = Section("pricing", (PRICE_FILE_ENV,), parse_pricing, "pricing: a price file over the catalogue")
