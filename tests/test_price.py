"""The pricing stage, called directly on batches, against hand-computed costs.

Catalogue prices are genai-prices 0.2.3's bundled data (USD per million tokens), quoted next to each
computation. Token semantics: InputTokens includes cache read/write tokens, OutputTokens includes
reasoning tokens, so uncached input = InputTokens - CacheReadTokens - CacheWriteTokens.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import PRICE_COLUMNS
from tracehouse.collector.config import Config, ConfigError, parse_config
from tracehouse.collector.stages.normalize.providers import normalize_provider
from tracehouse.collector.stages.price import PriceFile, PriceFileError, Pricer, build

M = D(1_000_000)  # prices are per million tokens


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000_000


JULY_2025 = ns(2025, 7, 1, 12)

TOKEN_ARGS = {
    "input": "InputTokens",
    "output": "OutputTokens",
    "cache_read": "CacheReadTokens",
    "cache_write": "CacheWriteTokens",
    "reasoning": "ReasoningTokens",
    "input_audio": "InputAudioTokens",
    "output_audio": "OutputAudioTokens",
}


def span(
    model: str = "", provider: str = "", response_model: str = "", ts: int = JULY_2025, attrs=None, kind="", **tokens
):
    row = {
        "LlmSpanKind": kind,
        "SpanAttributes": attrs or {},
        "LlmProvider": provider,
        "LlmRequestModel": model,
        "LlmResponseModel": response_model,
        "Timestamp": ts,
    }
    for arg, column in TOKEN_ARGS.items():
        row[column] = tokens.pop(arg, None)
    assert not tokens, f"unknown token kinds {tokens}"
    return row


def price(pricer: Pricer, *spans: dict) -> list[dict]:
    names = list(spans[0])
    batch = SpanBatch({name: [s[name] for s in spans] for name in names} | {"SpanId": ["x"] * len(spans)})
    out = pricer.price(batch)
    return [{name: out.columns[name][i] for name in PRICE_COLUMNS} for i in range(len(spans))]


def one(pricer: Pricer, **kwargs) -> dict:
    return price(pricer, span(**kwargs))[0]


@pytest.fixture(scope="module")
def catalogue_only() -> Pricer:
    return Pricer()


def user_pricer(text: str) -> Pricer:
    return Pricer(PriceFile.parse(text, "prices.toml"))


# -- catalogue ----------------------------------------------------------------------------------


def test_gpt_4o_mini_with_cached_input(catalogue_only):
    # gpt-4o-mini: input 0.15, cache read 0.075, output 0.6
    got = one(catalogue_only, model="gpt-4o-mini", provider="openai", input=1000, cache_read=400, output=200)
    assert got["InputCostUsd"] == (1000 - 400) * D("0.15") / M == D("0.00009")
    assert got["CacheReadCostUsd"] == 400 * D("0.075") / M == D("0.00003")
    assert got["OutputCostUsd"] == 200 * D("0.6") / M == D("0.00012")
    assert got["CostUsd"] == D("0.00009") + D("0.00003") + D("0.00012") == D("0.00024")
    assert got["CacheWriteCostUsd"] == got["ReasoningCostUsd"] == got["AudioCostUsd"] == 0
    assert (got["CostSource"], got["PriceModel"], got["PriceEffectiveFrom"]) == ("catalogue", "gpt-4o-mini", "")


def test_anthropic_cache_write_and_read(catalogue_only):
    # claude-3-5-sonnet: input 3, cache write 3.75, cache read 0.3, output 15
    got = one(
        catalogue_only,
        model="claude-3-5-sonnet-20241022",
        provider="anthropic",
        input=5000,
        cache_read=3000,
        cache_write=1000,
        output=500,
    )
    assert got["InputCostUsd"] == (5000 - 3000 - 1000) * D(3) / M == D("0.003")
    assert got["CacheReadCostUsd"] == 3000 * D("0.3") / M == D("0.0009")
    assert got["CacheWriteCostUsd"] == 1000 * D("3.75") / M == D("0.00375")
    assert got["OutputCostUsd"] == 500 * D(15) / M == D("0.0075")
    assert got["CostUsd"] == D("0.003") + D("0.0009") + D("0.00375") + D("0.0075") == D("0.01515")
    assert got["PriceModel"] == "claude-3-5-sonnet"


def test_reasoning_model(catalogue_only):
    # o3 from 2025-06-10: input 2, cache read 0.5, output 8; reasoning tokens are output tokens
    got = one(catalogue_only, model="o3", provider="openai", input=1000, output=2000, reasoning=1500)
    assert got["InputCostUsd"] == 1000 * D(2) / M == D("0.002")
    assert got["OutputCostUsd"] == (2000 - 1500) * D(8) / M == D("0.004")
    assert got["ReasoningCostUsd"] == 1500 * D(8) / M == D("0.012")
    assert got["CostUsd"] == D("0.002") + D("0.004") + D("0.012") == D("0.018")
    assert got["PriceEffectiveFrom"] == "2025-06-10"


def test_tiered_long_context_price(catalogue_only):
    # claude-sonnet-4-5: base input 3, cache read 0.3, output 15; prompts over 200k tokens pay
    # input 6, cache read 0.6, output 22.5 on every token of the call
    long = one(
        catalogue_only, model="claude-sonnet-4-5", provider="anthropic", input=250_000, cache_read=50_000, output=1000
    )
    assert long["InputCostUsd"] == (250_000 - 50_000) * D(6) / M == D("1.2")
    assert long["CacheReadCostUsd"] == 50_000 * D("0.6") / M == D("0.03")
    assert long["OutputCostUsd"] == 1000 * D("22.5") / M == D("0.0225")
    assert long["CostUsd"] == D("1.2") + D("0.03") + D("0.0225") == D("1.2525")
    # exactly 200k is not over the threshold
    short = one(catalogue_only, model="claude-sonnet-4-5", provider="anthropic", input=200_000, output=1000)
    assert short["CostUsd"] == 200_000 * D(3) / M + 1000 * D(15) / M == D("0.615")


def test_dated_model_names(catalogue_only):
    # a snapshot the catalogue lists, and one it does not (priced as its undated model), both at gpt-4o-mini prices
    for name in ("gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-09-01"):
        got = one(catalogue_only, model=name, provider="openai", input=1_000_000, output=1_000_000)
        assert got["CostUsd"] == 1_000_000 * D("0.15") / M + 1_000_000 * D("0.6") / M == D("0.75"), name
        assert got["PriceModel"] == "gpt-4o-mini"


def test_provider_prefixed_names(catalogue_only):
    # gpt-4o: input 2.5, output 10; claude-3-5-sonnet: input 3, output 15
    for provider in ("", "openai", "litellm"):
        got = one(catalogue_only, model="openai/gpt-4o", provider=provider, input=1000, output=100)
        assert got["CostUsd"] == 1000 * D("2.5") / M + 100 * D(10) / M == D("0.0035"), provider
        assert got["PriceModel"] == "gpt-4o"
    got = one(catalogue_only, model="anthropic/claude-3-5-sonnet-20241022", input=1000, output=100)
    assert got["CostUsd"] == 1000 * D(3) / M + 100 * D(15) / M == D("0.0045")


def test_azure_deployment_priced_by_its_response_model(catalogue_only):
    # the request names the deployment; the response names the model (azure gpt-4o: input 2.5, cache 1.25, output 10)
    got = one(
        catalogue_only,
        model="prod-chat-deployment",
        response_model="gpt-4o-2024-08-06",
        provider="azure",
        input=2000,
        cache_read=1000,
        output=100,
    )
    assert got["CostUsd"] == (2000 - 1000) * D("2.5") / M + 1000 * D("1.25") / M + 100 * D(10) / M == D("0.00475")
    assert got["PriceModel"] == "gpt-4o"


def test_bedrock_inference_profile_and_arn(catalogue_only):
    # Bedrock claude-3-5-sonnet v2: input 3, output 15
    for model in (
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    ):
        got = one(catalogue_only, model=model, provider="aws_bedrock", input=1000, output=100)
        assert got["CostUsd"] == 1000 * D(3) / M + 100 * D(15) / M == D("0.0045"), model


@pytest.mark.parametrize("raw", ["bedrock", "aws.bedrock", "amazon-bedrock", "aws", "AWS_Bedrock"])
def test_every_spelling_of_bedrock_is_one_provider_for_normalize_and_pricing(catalogue_only, raw):
    # Normalization stores one id for every spelling; the catalogue, a price file's `provider` and a model
    # prefix all reach Bedrock's prices from any of them (claude-3-5-sonnet v2 on Bedrock: input 3, output 15).
    stored = normalize_provider(raw)
    assert stored == "aws_bedrock"
    assert catalogue_only.catalogue.provider_id(stored) == catalogue_only.catalogue.provider_id(raw) == "aws"
    got = one(
        catalogue_only, model="us.anthropic.claude-3-5-sonnet-20241022-v2:0", provider=stored, input=1000, output=100
    )
    assert got["CostUsd"] == D("0.0045")
    prefixed = one(catalogue_only, model=f"{raw}/us.anthropic.claude-3-5-sonnet-20241022-v2:0", input=1000, output=100)
    assert prefixed["CostUsd"] == D("0.0045")
    house = user_pricer(f'[[price]]\nprovider = "{raw}"\nmodel = "house"\ninput = 1\noutput = 1\n')
    assert one(house, model="house", provider=stored, input=1_000_000)["CostSource"] == "user"
    assert one(house, model="house", provider="openai", input=1_000_000)["CostSource"] == "unknown"


def test_normalized_ids_the_catalogue_spells_otherwise(catalogue_only):
    for raw, stored, catalogue_id in [("x-ai", "xai", "x-ai"), ("moonshotai", "moonshot", "moonshotai")]:
        assert normalize_provider(raw) == stored
        assert catalogue_only.catalogue.provider_id(stored) == catalogue_id
    assert catalogue_only.catalogue.provider_id(normalize_provider("ollama")) is None  # self-hosted: no catalogue


def test_catalogue_effective_date_change_between_two_spans(catalogue_only):
    # o3 cost input 10 / output 40 until 2025-06-09, then input 2 / output 8
    before, after = price(
        catalogue_only,
        span(model="o3", provider="openai", ts=ns(2025, 6, 9, 23, 59), input=1000, output=1000),
        span(model="o3", provider="openai", ts=ns(2025, 6, 10, 0, 0), input=1000, output=1000),
    )
    assert before["CostUsd"] == 1000 * D(10) / M + 1000 * D(40) / M == D("0.05")
    assert after["CostUsd"] == 1000 * D(2) / M + 1000 * D(8) / M == D("0.01")
    assert (before["PriceEffectiveFrom"], after["PriceEffectiveFrom"]) == ("", "2025-06-10")


def test_time_of_day_prices(catalogue_only):
    # deepseek-chat: 00:30-16:30 UTC input 0.27 / output 1.1, otherwise input 0.135 / output 0.55
    peak, off_peak = price(
        catalogue_only,
        span(model="deepseek-chat", provider="deepseek", ts=ns(2025, 3, 1, 12), input=1000, output=1000),
        span(model="deepseek-chat", provider="deepseek", ts=ns(2025, 3, 1, 20), input=1000, output=1000),
    )
    assert peak["CostUsd"] == 1000 * D("0.27") / M + 1000 * D("1.1") / M == D("0.00137")
    assert off_peak["CostUsd"] == 1000 * D("0.135") / M + 1000 * D("0.55") / M == D("0.000685")


@pytest.mark.parametrize(
    ("model", "provider", "tokens", "usage"),
    [
        ("gpt-4o-mini", "openai", {"input": 1000, "cache_read": 400, "output": 200}, None),
        (
            "claude-3-5-sonnet",
            "anthropic",
            {"input": 5000, "cache_read": 3000, "cache_write": 1000, "output": 500},
            None,
        ),
        ("claude-sonnet-4-5", "anthropic", {"input": 250_000, "cache_read": 50_000, "output": 1000}, None),
        ("o3", "openai", {"input": 1000, "output": 2000, "reasoning": 1500}, {"output_reasoning_tokens": 1500}),
    ],
)
def test_totals_agree_with_genai_prices_own_calculation(catalogue_only, model, provider, tokens, usage):
    got = one(catalogue_only, model=model, provider=provider, **tokens)
    kwargs = {f"{k}_tokens": v for k, v in tokens.items() if k != "reasoning"} | (usage or {})
    expected = calc_price(
        Usage(**kwargs), model, provider_id=provider, genai_request_timestamp=datetime(2025, 7, 1, 12, tzinfo=UTC)
    )
    assert got["CostUsd"] == expected.total_price


def test_unknown_model_is_null_not_zero_and_counted():
    pricer = Pricer()
    spans = [
        span(model="my-private-model", provider="openai", input=100, output=10),
        span(model="my-private-model", provider="openai", input=5, output=1),
        span(model="llama3", provider="ollama", input=5, output=1),
    ]
    rows = price(pricer, *spans)
    for got in rows:
        assert got["CostSource"] == "unknown"
        assert all(got[c] is None for c in PRICE_COLUMNS[:7])
        assert (got["PriceModel"], got["PriceEffectiveFrom"]) == ("", "")
    # Counted from the rows' CostSource: per (provider, model) by `tracehouse prices unknown` over the
    # store (tests/test_price_store.py), in all by tracehouse_unpriced_calls (tests/test_metrics.py).
    unpriced = Counter(
        (s["LlmProvider"], s["LlmRequestModel"])
        for s, got in zip(spans, rows, strict=True)
        if got["CostSource"] == "unknown"
    )
    assert unpriced == {("openai", "my-private-model"): 2, ("ollama", "llama3"): 1}
    assert [got["CostSource"] for got in rows].count("unknown") == 3


def test_spans_that_are_not_llm_calls_get_no_cost(catalogue_only):
    got = one(catalogue_only)
    assert got["CostSource"] == ""
    assert all(got[c] is None for c in PRICE_COLUMNS[:7])


def test_only_model_calls_are_priced(catalogue_only):
    # gpt-4o-mini: input 0.15, output 0.6; text-embedding-3-small: input 0.02
    call, embedding, agent, tool_with_cost, unclassified = price(
        catalogue_only,
        span(kind="LLM", model="gpt-4o-mini", provider="openai", input=1000, output=100),
        span(kind="EMBEDDING", model="text-embedding-3-small", provider="openai", input=1000),
        # an agent span repeats its child's usage: pricing it too would count the call twice
        span(kind="AGENT", model="gpt-4o-mini", provider="openai", input=1000, output=100),
        span(kind="CHAIN", attrs={"llm.cost.total": "0.5"}),
        span(kind="", model="gpt-4o-mini", provider="openai", input=1000, output=100),
    )
    assert call["CostUsd"] == unclassified["CostUsd"] == 1000 * D("0.15") / M + 100 * D("0.6") / M == D("0.00021")
    assert embedding["CostUsd"] == 1000 * D("0.02") / M == D("0.00002")
    for got in (agent, tool_with_cost):
        assert (got["CostUsd"], got["CostSource"]) == (None, "")


def test_known_model_without_token_counts_costs_zero(catalogue_only):
    # e.g. a call that failed before usage was reported: the price is known, nothing was billed
    got = one(catalogue_only, model="gpt-4o-mini", provider="openai")
    assert (got["CostUsd"], got["CostSource"]) == (0, "catalogue")


def test_decimal_arithmetic_has_no_float_drift(catalogue_only):
    # one token of gpt-4o-mini output is 0.6 / 1e6 USD; ten such spans add up exactly
    rows = price(catalogue_only, *[span(model="gpt-4o-mini", provider="openai", output=1)] * 10)
    assert sum(r["CostUsd"] for r in rows) == 10 * D("0.6") / M == D("0.000006")
    assert all(isinstance(r["CostUsd"], D) for r in rows)


def test_audio_tokens_use_audio_rates_from_the_price_file():
    pricer = user_pricer(
        """
        [[price]]
        model = "voice-1"
        input = 2.5
        output = 10
        input_audio = 40
        output_audio = 80
        """
    )
    got = one(pricer, model="voice-1", input=1000, input_audio=600, output=500, output_audio=300)
    assert got["InputCostUsd"] == (1000 - 600) * D("2.5") / M == D("0.001")
    assert got["OutputCostUsd"] == (500 - 300) * D(10) / M == D("0.002")
    assert got["AudioCostUsd"] == 600 * D(40) / M + 300 * D(80) / M == D("0.048")
    assert got["CostUsd"] == D("0.001") + D("0.002") + D("0.048") == D("0.051")


def test_empty_batch(catalogue_only):
    batch = SpanBatch({"SpanId": [], "SpanAttributes": [], "Timestamp": []})
    out = catalogue_only.price(batch)
    assert all(out.columns[c] == [] for c in PRICE_COLUMNS)


# -- user price file ----------------------------------------------------------------------------

OVERRIDES = """
# negotiated discount on gpt-4o-mini
[[price]]
provider = "openai"
model = "gpt-4o-mini"
input = 0.10
cache_read = 0.05
output = 0.40

# every fine-tune of ours
[[price]]
model = "ft:gpt-4o-mini:acme:*"
match = "glob"
input = 0.30
output = 1.20

[[price]]
model = "ft:.*"
match = "regex"
input = 9
output = 9

# a self-hosted model costs nothing
[[price]]
provider = "ollama"
model = "llama3*"
match = "glob"
input = 0
output = 0
"""


def test_user_override_beats_the_catalogue():
    pricer = user_pricer(OVERRIDES)
    got = one(pricer, model="gpt-4o-mini", provider="openai", input=1000, cache_read=400, output=200)
    assert got["CostUsd"] == (1000 - 400) * D("0.10") / M + 400 * D("0.05") / M + 200 * D("0.40") / M == D("0.00016")
    assert (got["CostSource"], got["PriceModel"]) == ("user", "gpt-4o-mini")
    # the entry names openai: the same model at azure still gets the catalogue's azure price
    # (azure gpt-4o-mini: input 0.15, output 0.6)
    azure = one(pricer, model="gpt-4o-mini", provider="azure", input=1000, output=200)
    assert azure["CostSource"] == "catalogue"
    assert azure["CostUsd"] == 1000 * D("0.15") / M + 200 * D("0.6") / M == D("0.00027")


def test_user_extends_the_catalogue_with_glob_and_regex():
    pricer = user_pricer(OVERRIDES)
    glob, regex, local = price(
        pricer,
        span(model="ft:gpt-4o-mini:acme:support-v2:abc123", provider="openai", input=1000, output=1000),
        span(model="ft:llama:other", provider="openai", input=1000, output=1000),
        span(model="llama3.1:8b", provider="ollama", input=1000, output=1000),
    )
    # the glob entry and the regex entry both match the first name: glob is more specific
    assert glob["CostUsd"] == 1000 * D("0.30") / M + 1000 * D("1.20") / M == D("0.0015")
    assert glob["PriceModel"] == "ft:gpt-4o-mini:acme:*"
    assert regex["CostUsd"] == 1000 * D(9) / M + 1000 * D(9) / M == D("0.018")
    assert (local["CostUsd"], local["CostSource"]) == (0, "user")


def test_user_precedence_exact_then_glob_then_regex_then_provider():
    pricer = user_pricer(
        """
        [[price]]
        model = "m.*"
        match = "regex"
        input = 3
        output = 0
        [[price]]
        model = "m-*"
        match = "glob"
        input = 2
        output = 0
        [[price]]
        model = "m-1"
        input = 1
        output = 0
        [[price]]
        provider = "acme"
        model = "m-*"
        match = "glob"
        input = 4
        output = 0
        """
    )
    exact, glob_for_acme, glob_any, regex = price(
        pricer,
        span(model="m-1", provider="acme", input=1_000_000),
        span(model="m-2", provider="acme", input=1_000_000),
        span(model="m-2", provider="other", input=1_000_000),
        span(model="mx", provider="other", input=1_000_000),
    )
    assert [r["CostUsd"] for r in (exact, glob_for_acme, glob_any, regex)] == [1, 4, 2, 3]


def test_user_effective_date_change_between_two_spans():
    pricer = user_pricer(
        """
        [[price]]
        model = "house-model"
        input = 1
        output = 2

        [[price]]
        model = "house-model"
        effective_from = 2025-03-01
        input = 0.5
        output = 1
        """
    )
    before, after = price(
        pricer,
        span(model="house-model", ts=ns(2025, 2, 28, 23, 59), input=1000, output=1000),
        span(model="house-model", ts=ns(2025, 3, 1), input=1000, output=1000),
    )
    assert before["CostUsd"] == 1000 * D(1) / M + 1000 * D(2) / M == D("0.003")
    assert after["CostUsd"] == 1000 * D("0.5") / M + 1000 * D(1) / M == D("0.0015")
    assert (before["PriceEffectiveFrom"], after["PriceEffectiveFrom"]) == ("", "2025-03-01")


def test_a_user_entry_starting_later_leaves_earlier_spans_to_the_catalogue():
    pricer = user_pricer(
        """
        [[price]]
        provider = "openai"
        model = "gpt-4o-mini"
        effective_from = "2025-05-01"
        input = 0.1
        output = 0.4
        """
    )
    before, after = price(
        pricer,
        span(model="gpt-4o-mini", provider="openai", ts=ns(2025, 4, 30), input=1000, output=1000),
        span(model="gpt-4o-mini", provider="openai", ts=ns(2025, 5, 1), input=1000, output=1000),
    )
    assert (before["CostSource"], before["CostUsd"]) == ("catalogue", 1000 * D("0.15") / M + 1000 * D("0.6") / M)
    assert (after["CostSource"], after["CostUsd"]) == ("user", 1000 * D("0.1") / M + 1000 * D("0.4") / M)


def test_user_tiers_by_prompt_size():
    pricer = user_pricer(
        """
        [[price]]
        model = "big-context"
        input = 1
        cache_read = 0.1
        output = 4

        [[price.tiers]]
        above = 128_000
        input = 2
        output = 8

        [[price.tiers]]
        above = 500_000
        input = 3
        """
    )
    small, mid, large = price(
        pricer,
        span(model="big-context", input=128_000, output=1000),
        span(model="big-context", input=200_000, cache_read=100_000, output=1000),
        span(model="big-context", input=600_000, output=1000),
    )
    assert small["CostUsd"] == 128_000 * D(1) / M + 1000 * D(4) / M == D("0.132")
    # the tier overrides input and output only: cache read keeps its own 0.1
    assert mid["CostUsd"] == (200_000 - 100_000) * D(2) / M + 100_000 * D("0.1") / M + 1000 * D(8) / M == D("0.218")
    # the top tier names only input: output keeps the base 4 (a tier overrides only the kinds it names)
    assert large["CostUsd"] == 600_000 * D(3) / M + 1000 * D(4) / M == D("1.804")


def test_price_file_numbers_are_exact_decimals():
    pricer = user_pricer('[[price]]\nmodel = "m"\ninput = 0.1\noutput = "0.2"\nper_request = 0.005\n')
    got = one(pricer, model="m", input=3, output=3)
    # 0.1 as a float would give 3.0000000000000004e-07
    assert got["CostUsd"] == 3 * D("0.1") / M + 3 * D("0.2") / M + D("0.005") == D("0.0050009")


# -- costs the span carries ---------------------------------------------------------------------


def test_provided_cost_wins():
    pricer = user_pricer(OVERRIDES)
    total, genai, detailed = price(
        pricer,
        span(model="gpt-4o-mini", provider="openai", input=1000, output=200, attrs={"llm.cost.total": "0.0123"}),
        span(model="gpt-4o-mini", provider="openai", input=1000, attrs={"gen_ai.usage.cost": "2.5e-05"}),
        span(
            model="gpt-4o-mini",
            provider="openai",
            input=1000,
            cache_read=400,
            output=200,
            attrs={
                "llm.cost.prompt": "0.0004",
                "llm.cost.prompt_details.cache_read": "0.0001",
                "llm.cost.completion": "0.0008",
                "llm.cost.completion_details.reasoning": "0.0003",
            },
        ),
    )
    assert (total["CostUsd"], total["CostSource"], total["InputCostUsd"]) == (D("0.0123"), "provided", None)
    assert (genai["CostUsd"], genai["CostSource"]) == (D("0.000025"), "provided")
    assert detailed["CostUsd"] == D("0.0004") + D("0.0008") == D("0.0012")
    assert detailed["InputCostUsd"] == D("0.0004") - D("0.0001") == D("0.0003")
    assert detailed["CacheReadCostUsd"] == D("0.0001")
    assert detailed["OutputCostUsd"] == D("0.0008") - D("0.0003") == D("0.0005")
    assert detailed["ReasoningCostUsd"] == D("0.0003")
    assert detailed["PriceModel"] == ""


def test_unusable_provided_cost_falls_back_to_the_price(catalogue_only):
    for attrs in ({"llm.cost.total": "n/a"}, {"llm.cost.total": "-1"}, {"llm.cost.prompt": "0.1"}):
        got = one(catalogue_only, model="gpt-4o-mini", provider="openai", output=1000, attrs=attrs)
        assert (got["CostSource"], got["CostUsd"]) == ("catalogue", 1000 * D("0.6") / M), attrs


# -- malformed price files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[price]]\nmodel = "m"\ninput = 1\noutput = \n', ["line 4", "not valid TOML"]),
        ('[[price]]\nmodel = "m"\ninput = 1\n', ["line 1", "entry 1", "`output`", "required"]),
        (
            '[[price]]\nmodel = "a"\ninput = 1\noutput = 1\n\n[[price]]\nmodel = "b"\ninput = -1\noutput = 1\n',
            ["line 8", "entry 2 (model 'b')", "`input` must be a finite number >= 0"],
        ),
        (
            '[[price]]\nmodel = "m"\ninput = 1\noutput = 1\ncached_input = 0.5\n',
            ["line 5", "unknown key 'cached_input'"],
        ),
        ('[[price]]\nmodel = "m"\nmatch = "fuzzy"\ninput = 1\noutput = 1\n', ["line 3", "exact, glob, regex"]),
        ('[[price]]\nmodel = "gpt-(4"\nmatch = "regex"\ninput = 1\noutput = 1\n', ["line 2", "not a valid regex"]),
        ('[[price]]\nmodel = "m"\neffective_from = "March"\ninput = 1\noutput = 1\n', ["line 3", "YYYY-MM-DD"]),
        ('[[price]]\nmodel = "m"\ninput = "cheap"\noutput = 1\n', ["line 3", "`input` must be a number"]),
        ("[[price]]\ninput = 1\noutput = 1\n", ["entry 1", "`model` is required"]),
        ('[[prices]]\nmodel = "m"\n', ["unknown top-level key(s) prices"]),
        (
            '[[price]]\nmodel = "m"\ninput = 1\noutput = 1\n[[price.tiers]]\nabove = 10\ninput = 2\n'
            "[[price.tiers]]\nabove = -5\ninput = 3\n",
            ["line 9", "tier 2", "`above`"],
        ),
        (
            '[[price]]\nmodel = "m"\ninput = 1\noutput = 1\n[[price]]\nmodel = "M"\ninput = 2\noutput = 2\n',
            ["line 5", "entry 2", "as entry 1"],
        ),
    ],
)
def test_malformed_price_files_name_the_line_and_the_problem(text, expected):
    with pytest.raises(PriceFileError) as info:
        PriceFile.parse(text, "prices.toml")
    message = str(info.value)
    assert message.startswith("price file prices.toml: ")
    for part in expected:
        assert part in message, message


def test_missing_price_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config({"pricing": {"price_file": str(tmp_path / "nope.toml")}}, environ={})


def test_price_file_path_from_config_and_environment(tmp_path):
    from_config = tmp_path / "a.toml"
    from_env = tmp_path / "b.toml"
    for path in (from_config, from_env):
        path.write_text('[[price]]\nmodel = "house"\ninput = 1\noutput = 1\n')
    document = {"pricing": {"price_file": str(from_config)}}
    assert parse_config(document, environ={}).pricing.price_file == from_config
    assert parse_config(document, environ={"TRACEHOUSE_PRICE_FILE": str(from_env)}).pricing.price_file == from_env
    assert parse_config({}, environ={}).pricing.price_file is None
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_config({"pricing": {"pricefile": "x"}}, environ={})


def test_pricer_from_config_loads_the_price_file(tmp_path: Path):
    path = tmp_path / "prices.toml"
    path.write_text('[[price]]\nmodel = "house"\ninput = 1\noutput = 1\n')
    pricer = build(parse_config({"pricing": {"price_file": str(path)}}, environ={}))
    assert one(pricer, model="house", input=1_000_000)["CostUsd"] == 1


# -- tracehouse prices show ---------------------------------------------------------------------


def show(*argv: str, config: Config | None = None) -> tuple[int, str]:
    import argparse
    import io

    from tracehouse.collector import prices_cli

    parser = argparse.ArgumentParser()
    prices_cli.add_parser(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    code = prices_cli.run(parser.parse_args(["prices", "show", *argv]), config or Config(), out, io.StringIO())
    return code, out.getvalue()


def test_prices_show_names_the_rule_and_its_prices(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACEHOUSE_PRICE_FILE", raising=False)
    code, out = show("openai/gpt-4o-mini-2024-07-18", "--at", "2025-07-01")
    assert code == 0
    assert "catalogue genai-prices 0.2.3: provider openai, model gpt-4o-mini" in out
    assert "matched as 'gpt-4o-mini-2024-07-18'" in out
    assert [
        line.split() for line in out.splitlines() if line.strip().startswith(("input ", "cache_read", "reasoning"))
    ] == [
        ["input", "0.15"],
        ["cache_read", "0.075"],
        ["reasoning", "0.6", "(output", "rate)"],
    ]

    path = tmp_path / "prices.toml"
    path.write_text(OVERRIDES)
    config = parse_config({"pricing": {"price_file": str(path)}}, environ={})
    code, out = show("ft:gpt-4o-mini:acme:v2", "--provider", "openai", config=config)
    assert code == 0
    assert f"user price file {path}, entry 2, line 11: glob 'ft:gpt-4o-mini:acme:*' (any provider)" in out
    assert f"user price file {path}, entry 3, line 17: regex 'ft:.*'" in out  # also matching, lower precedence

    code, out = show("claude-sonnet-4-5", "--provider", "anthropic")
    assert "prompt above 200,000 tokens" in out and "input 6," in out


def test_prices_show_unknown_model_exits_1():
    code, out = show("my-private-model", "--provider", "openai")
    assert code == 1
    assert "no price" in out and "never 0" in out


PROVIDER_SCOPED = """
[[price]]
provider = "openai"
model = "house-model"
input = 1
output = 2

[[price]]
provider = "azure"
model = "house-model"
input = 3
output = 4
effective_from = 2030-01-01

[[price]]
provider = "openai"
model = "gpt-4o-mini"
input = 9
output = 9
"""


def _blocks(out: str) -> dict[str, list[str]]:
    """`prices show` output without --provider, by the heading of each provider's block."""
    blocks: dict[str, list[str]] = {}
    heading = ""
    for line in out.splitlines()[1:]:
        if line.startswith("  spans with "):
            heading = line.strip()
            blocks[heading] = []
        else:
            blocks.setdefault(heading, []).append(line.strip())
    return blocks


def test_prices_show_without_provider_shows_what_ingest_applies_per_provider(tmp_path):
    """A provider-scoped entry prices the spans of that provider, and the spans with no provider whose model
    the catalogue finds at that provider: `prices show` without --provider shows each provider's price and
    the no-provider one, and each is the price the pricer gives such a span at ingest."""
    path = tmp_path / "prices.toml"
    path.write_text(PROVIDER_SCOPED)
    config = parse_config({"pricing": {"price_file": str(path)}}, environ={})
    pricer = user_pricer(PROVIDER_SCOPED)

    code, out = show("house-model", "--at", "2026-01-01", config=config)
    assert code == 0, out
    blocks = _blocks(out)
    assert list(blocks) == [
        "spans with provider openai (a price-file entry for this model names it):",
        "spans with provider azure (a price-file entry for this model names it):",
        "spans with no provider (for another provider: --provider NAME):",
    ]
    openai, azure, nobody = blocks.values()
    assert f"priced by  user price file {path}, entry 1, line 2: exact 'house-model' (openai)" in openai
    assert [line.split() for line in openai if line.startswith(("input ", "output "))] == [
        ["input", "1"],
        ["output", "2"],
    ]
    assert azure[0].startswith("no price") and "entries that match but start later:" in azure
    assert nobody[0].startswith("no price")
    at = ns(2026, 1, 1)
    assert one(pricer, model="house-model", provider="openai", input=1_000_000, ts=at)["CostUsd"] == 1
    assert one(pricer, model="house-model", provider="azure", input=1_000_000, ts=at)["CostSource"] == "unknown"
    assert one(pricer, model="house-model", input=1_000_000, ts=at)["CostSource"] == "unknown"

    # A catalogue model with an entry for one provider: that provider's spans get the entry, and so do the
    # spans with no provider, since the catalogue finds the model at that provider (openai), not its own price.
    code, out = show("gpt-4o-mini", "--at", "2026-01-01", config=config)
    assert code == 0, out
    openai, nobody = _blocks(out).values()
    assert f"priced by  user price file {path}, entry 3, line 15: exact 'gpt-4o-mini' (openai)" in openai
    assert f"priced by  user price file {path}, entry 3, line 15: exact 'gpt-4o-mini' (openai)" in nobody
    assert ["input", "9"] in [line.split() for line in nobody]
    assert one(pricer, model="gpt-4o-mini", provider="openai", input=1_000_000, ts=at)["CostUsd"] == 9
    assert one(pricer, model="gpt-4o-mini", input=1_000_000, ts=at)["CostUsd"] == 9
    # ... while a provider the entry does not name keeps the catalogue's price.
    assert one(pricer, model="gpt-4o-mini", provider="azure", input=1_000_000, ts=at)["CostSource"] == "catalogue"

    # With --provider: that provider's block only, as before.
    code, out = show("house-model", "--provider", "openai", config=config)
    assert code == 0 and "spans with" not in out and "exact 'house-model' (openai)" in out
    code, out = show("house-model", "--provider", "anthropic", config=config)
    assert code == 1 and "no price" in out


def test_junk_model_names_keep_the_pricer_memory_bounded(monkeypatch):
    from tracehouse.collector.stages.price import pricer as pricer_module

    monkeypatch.setattr(pricer_module, "MAX_CACHED_MODELS", 2)
    pricer = Pricer()
    rows = price(pricer, *[span(model=f"junk-{i}", provider="openai", input=1) for i in range(5)])
    assert [got["CostSource"] for got in rows] == ["unknown"] * 5
    assert len(pricer._options) <= 2 and len(pricer._always) <= 2
