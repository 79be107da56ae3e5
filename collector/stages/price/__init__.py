"""Pricing stage: cost in USD (Decimal, total and by kind) for every LLM span, with its provenance.

pricer = build(config)                # catalogue (genai-prices, offline) + the configured price file
batch = pricer(batch)                 # the stage; adds columns.PRICE_COLUMNS

The catalogue takes ~0.3 s to import: the names below load on first use, so reading the `[pricing]`
section (stages/price/settings.py) does not pay for it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CATALOGUE_VERSION": "catalogue",
    "Catalogue": "catalogue",
    "PriceOption": "option",
    "PriceFile": "price_file",
    "PriceFileError": "price_file",
    "PriceRule": "price_file",
    "Pricer": "pricer",
    "build": "pricer",
    "PRICE_FILE_ENV": "settings",
    "PricingSettings": "settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
