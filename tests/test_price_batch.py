"""Batch-API pricing, in the pricing stage and in the store.

A call with `tracehouse.batch.id` is one request of a provider batch job: it is priced at genai-prices'
`processing: batch` variant (checked against genai-prices' own calc_price with that price context), or at
the price file's `batch` share; StandardCostUsd keeps the live-rate cost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price
from test_price import M, ns, one
from test_price_store import cli
from test_price_store import span as store_span

from tracehouse.collector import store
from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.config import parse_config
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.stages.price import PriceFile, PriceFileError, Pricer, build
from tracehouse.collector.writer import TraceStore
from tracehouse.instrumentation.attributes import BATCH_ID, BATCH_OUTCOME

DEC_2026 = ns(2026, 12, 1, 12)  # genai-prices' batch variants start 2026-10-14
SEPT_2026 = ns(2026, 9, 1, 12)
BATCH = {BATCH_ID: "batch_abc"}


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer()


def _genai(model: str, provider: str, ts: int, batch: bool, **tokens: int) -> D:
    when = datetime.fromtimestamp(ts / 1e9, UTC)
    context = {"processing": "batch"} if batch else None
    return calc_price(
        Usage(**tokens), model, provider_id=provider, genai_request_timestamp=when, price_context=context
    ).total_price


@pytest.mark.parametrize(
    ("provider", "model", "tokens"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", {"input_tokens": 1000, "cache_read_tokens": 200, "output_tokens": 500}),
        (
            "anthropic",
            "claude-sonnet-4-5",
            {"input_tokens": 3000, "cache_read_tokens": 1000, "cache_write_tokens": 500, "output_tokens": 800},
        ),
    ],
)
def test_a_batch_request_costs_what_genai_prices_says_for_batch_processing(pricer, provider, model, tokens):
    args = {
        "input": tokens["input_tokens"],
        "output": tokens["output_tokens"],
        "cache_read": tokens.get("cache_read_tokens"),
        "cache_write": tokens.get("cache_write_tokens"),
    }
    got = one(pricer, provider=provider, response_model=model, ts=DEC_2026, attrs=BATCH, kind="LLM", **args)
    batch_cost = _genai(model, provider, DEC_2026, True, **tokens)
    live_cost = _genai(model, provider, DEC_2026, False, **tokens)
    assert batch_cost < live_cost  # not vacuous: the variant is a discount
    assert got["CostUsd"] == batch_cost
    assert (got["PriceVariant"], got["StandardCostUsd"], got["CostSource"]) == ("batch", live_cost, "catalogue")
    # The parts still add up to the total at batch rates.
    parts = ("InputCostUsd", "CacheReadCostUsd", "CacheWriteCostUsd", "OutputCostUsd")
    assert sum(got[p] or 0 for p in parts) == got["CostUsd"]


def test_gpt_4o_mini_batch_by_hand(pricer):
    # batch: input 0.075, output 0.3; cache read keeps its 0.075 (the variant does not name it)
    got = one(pricer, provider="openai", model="gpt-4o-mini", ts=DEC_2026, attrs=BATCH, input=1000, output=500,
              cache_read=200)  # fmt: skip
    assert got["CostUsd"] == 800 * D("0.075") / M + 200 * D("0.075") / M + 500 * D("0.3") / M == D("0.000225")
    assert got["StandardCostUsd"] == 800 * D("0.15") / M + 200 * D("0.075") / M + 500 * D("0.6") / M


def test_live_calls_and_batch_calls_without_batch_rates_pay_standard_rates(pricer):
    live = one(pricer, provider="openai", model="gpt-4o-mini", ts=DEC_2026, input=1000, output=500)
    assert live["CostUsd"] == D("0.00045") and (live["PriceVariant"], live["StandardCostUsd"]) == ("", None)
    # Before genai-prices' batch variants start, no batch rate is known: standard rates, no variant.
    early = one(pricer, provider="openai", model="gpt-4o-mini", ts=SEPT_2026, attrs=BATCH, input=1000, output=500)
    assert early["CostUsd"] == D("0.00045") and (early["PriceVariant"], early["StandardCostUsd"]) == ("", None)
    # An empty batch id is no batch.
    empty = one(pricer, provider="openai", model="gpt-4o-mini", ts=DEC_2026, attrs={BATCH_ID: ""}, input=1000,
                output=500)  # fmt: skip
    assert empty["PriceVariant"] == ""


PRICE_FILE = """
[[price]]
model = "house-model"
input = 2
output = 4
batch = 0.5

[[price]]
model = "live-only"
input = 2
output = 4
"""


def test_the_price_files_batch_share(tmp_path):
    pricer = Pricer(PriceFile.parse(PRICE_FILE))
    got = one(pricer, model="house-model", ts=DEC_2026, attrs=BATCH, input=1000, output=1000)
    assert got["CostUsd"] == 1000 * D(1) / M + 1000 * D(2) / M == D("0.003")
    assert (got["PriceVariant"], got["StandardCostUsd"], got["CostSource"]) == ("batch", D("0.006"), "user")
    # An entry without `batch` prices batch calls at its own rates: the user's entry wins over the catalogue.
    plain = one(pricer, model="live-only", ts=DEC_2026, attrs=BATCH, input=1000, output=1000)
    assert (plain["CostUsd"], plain["PriceVariant"]) == (D("0.006"), "")


@pytest.mark.parametrize("value", ["0", "1.5", "-0.5", '"half"', "true"])
def test_a_bad_batch_share_is_refused_naming_the_key_and_line(value):
    text = f'[[price]]\nmodel = "m"\ninput = 1\noutput = 1\nbatch = {value}\n'
    with pytest.raises(PriceFileError) as caught:
        PriceFile.parse(text, "prices.toml")
    message = str(caught.value)
    assert "prices.toml: line 5, entry 1 (model 'm')" in message and "`batch`" in message


def _stored_row(name: str, model: str, response_model: str = "", attrs=None, **tokens) -> dict:
    row = store_span(name, DEC_2026, model, "openai", attrs=attrs, **tokens)
    row["LlmResponseModel"] = response_model
    return row


@pytest.fixture
def batch_store(tmp_path: Path):
    """An embedded store with a failed call, a live call and a batch call, priced by the stage and written by the
    collector's own insert path."""
    price_file = tmp_path / "prices.toml"
    price_file.write_text("")
    config = parse_config({"data_dir": str(tmp_path / "data"), "pricing": {"price_file": str(price_file)}}, environ={})
    rows = [
        _stored_row("failed", "gpt-4o-mini"),
        _stored_row("live", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", input=1000, output=500),
        _stored_row(
            "batched",
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            BATCH | {BATCH_OUTCOME: "handled"},
            input=1000,
            output=500,
        ),  # fmt: skip
    ]
    batch = build(config).price(SpanBatch({name: [r[name] for r in rows] for name in rows[0]}))
    writer = TraceStore(config.store_url)
    writer.insert(*encode_rows(batch))
    client = store.connect(config.store_url)
    yield config, client, price_file
    client.close()
    writer.close()


def test_the_store_keeps_the_batch_price_and_the_live_cost(batch_store):
    _, client, _ = batch_store
    batched = client.query(
        "SELECT batch_id, batch_outcome, price_variant, cost_usd, standard_cost_usd FROM llm_calls "
        "WHERE span_name = 'batched'"
    ).result_rows
    assert batched == [("batch_abc", "handled", "batch", D("0.000225"), D("0.00045"))]
    live = client.query(
        "SELECT batch_id, price_variant, cost_usd, standard_cost_usd FROM llm_calls WHERE span_name = 'live'"
    ).result_rows
    assert live == [("", "", D("0.00045"), None)]
    # The daily rollup sums the cost paid (batch rates).
    daily = client.query("SELECT sum(calls), sum(cost_usd) FROM llm_daily").result_rows
    assert daily == [(3, D("0.000225") + D("0.00045"))]


def test_reprice_applies_the_price_files_batch_share(batch_store):
    config, client, price_file = batch_store
    price_file.write_text('[[price]]\nmodel = "gpt-4o-mini*"\nmatch = "glob"\ninput = 1\noutput = 2\nbatch = 0.25\n')
    code, out, err = cli(config, "reprice", "--since", "2026-11-30")
    assert code == 0, err
    rows = client.query(
        "SELECT span_name, cost_source, price_variant, cost_usd, standard_cost_usd, model FROM llm_calls ORDER BY 1"
    ).result_rows
    live = 1000 * D(1) / M + 500 * D(2) / M
    # A price-file entry does not change the canonical model: still the catalogue's id.
    assert rows == [
        ("batched", "user", "batch", live / 4, live, "gpt-4o-mini"),
        ("failed", "user", "", D(0), None, "gpt-4o-mini"),
        ("live", "user", "", live, None, "gpt-4o-mini"),
    ]


def test_a_models_failures_and_successes_group_as_its_canonical_model(tmp_path):
    """A failed call carries only the request model (gpt-4o-mini), a successful one the dated response model:
    llm_calls.model and the daily rollup group both under the catalogue's id; the raw names stay as sent, and a
    model the catalogue does not know keeps its own name."""
    config = parse_config({"data_dir": str(tmp_path / "data")}, environ={})
    rows = [
        _stored_row("failed", "gpt-4o-mini"),
        _stored_row("ok", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", input=1000, output=500),
        _stored_row("dated-request", "gpt-4o-mini-2024-07-18", input=10, output=5),
        _stored_row("house", "house-model-7", "house-model-7-0611", input=10, output=5),
        _stored_row("request-only", "house-model-7", input=10, output=5),
    ]
    batch = build(config).price(SpanBatch({name: [r[name] for r in rows] for name in rows[0]}))
    writer = TraceStore(config.store_url)
    writer.insert(*encode_rows(batch))
    writer.close()
    client = store.connect(config.store_url)
    try:
        calls = client.query(
            "SELECT span_name, model, request_model, response_model FROM llm_calls ORDER BY span_name"
        ).result_rows
        daily = client.query("SELECT model, sum(calls), sum(errors) FROM llm_daily GROUP BY model ORDER BY model")
    finally:
        client.close()
    assert calls == [
        ("dated-request", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", ""),
        ("failed", "gpt-4o-mini", "gpt-4o-mini", ""),
        ("house", "house-model-7-0611", "house-model-7", "house-model-7-0611"),
        ("ok", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        ("request-only", "house-model-7", "house-model-7", ""),
    ]
    assert daily.result_rows == [("gpt-4o-mini", 3, 0), ("house-model-7", 1, 0), ("house-model-7-0611", 1, 0)]
