"""Pricing stage: cost in USD (Decimal, total and by kind) for every LLM span, with its provenance.

pricer = Pricer.from_config(config)   # catalogue (genai-prices, offline) + optional price file
batch = pricer.price(batch)           # the stage; adds PRICE_COLUMNS
pricer.unknown                        # Counter[(provider, model)] of spans no price covered
"""

from tracehouse.collector.stages.price.catalogue import CATALOGUE_VERSION, Catalogue
from tracehouse.collector.stages.price.option import PriceOption
from tracehouse.collector.stages.price.price_file import PriceFile, PriceFileError, PriceRule
from tracehouse.collector.stages.price.pricer import (
    CATALOGUE,
    COST_COLUMNS,
    PRICE_COLUMNS,
    PRICE_FILE_ENV,
    PROVIDED,
    UNKNOWN,
    USER,
    Pricer,
    price_file_path,
)

__all__ = [
    "CATALOGUE",
    "CATALOGUE_VERSION",
    "COST_COLUMNS",
    "PRICE_COLUMNS",
    "PRICE_FILE_ENV",
    "PROVIDED",
    "UNKNOWN",
    "USER",
    "Catalogue",
    "PriceFile",
    "PriceFileError",
    "PriceOption",
    "PriceRule",
    "Pricer",
    "price_file_path",
]
