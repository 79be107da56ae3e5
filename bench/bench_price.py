"""Pricing cost per span with a warm look-up cache: the stage on batches of normalized LLM spans.

    .venv/bin/python bench/bench_price.py [--spans 20000] [--rounds 7]

The batch mixes a dozen models (catalogue, dated and prefixed names, a tiered model, a price-file
glob, an unknown model), cached and reasoning tokens, a few spans that carry their own cost and a
share of non-LLM spans, the way a real batch looks after normalization. Prints the best and median
µs per span over the rounds, after one warm-up round that fills the look-up cache.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.stages.price import PriceFile, Pricer

PRICE_FILE = """
[[price]]
model = "ft:gpt-4o-mini:acme:*"
match = "glob"
input = 0.30
cache_read = 0.15
output = 1.20
"""
MODELS = [
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "o3", ""),
    ("", "openai/gpt-4.1", ""),
    ("anthropic", "claude-3-5-sonnet-20241022", ""),
    ("anthropic", "claude-sonnet-4-5", ""),
    ("google", "gemini-2.5-pro", ""),
    ("azure", "prod-deployment", "gpt-4o-2024-08-06"),
    ("aws_bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", ""),
    ("deepseek", "deepseek-chat", ""),
    ("openai", "ft:gpt-4o-mini:acme:support:abc", ""),
    ("openai", "in-house-unknown", ""),
]


def make_batch(spans: int, seed: int = 7) -> SpanBatch:
    rng = random.Random(seed)
    now = time.time_ns()
    columns: dict[str, list] = {
        name: []
        for name in (
            "SpanId",
            "Timestamp",
            "SpanAttributes",
            "LlmSpanKind",
            "LlmProvider",
            "LlmRequestModel",
            "LlmResponseModel",
            "InputTokens",
            "OutputTokens",
            "CacheReadTokens",
            "CacheWriteTokens",
            "ReasoningTokens",
            "InputAudioTokens",
            "OutputAudioTokens",
        )
    }
    for i in range(spans):
        columns["SpanId"].append(f"{i:016x}")
        columns["Timestamp"].append(now - rng.randint(0, 86_400) * 1_000_000_000)
        if rng.random() < 0.2:  # a tool span: no model, no tokens
            for name, value in (("SpanAttributes", {"tool.name": "search"}), ("LlmSpanKind", "TOOL")):
                columns[name].append(value)
            for name in ("LlmProvider", "LlmRequestModel", "LlmResponseModel"):
                columns[name].append("")
            for name in list(columns)[7:]:
                columns[name].append(None)
            continue
        provider, model, response_model = rng.choice(MODELS)
        attrs = {"llm.model_name": model, "llm.token_count.prompt": "1200", "input.value": "hi"}
        if rng.random() < 0.03:
            attrs["llm.cost.total"] = "0.00123"
        prompt = rng.randint(50, 20_000) if rng.random() < 0.98 else rng.randint(200_001, 400_000)
        completion = rng.randint(10, 2000)
        columns["SpanAttributes"].append(attrs)
        columns["LlmSpanKind"].append("LLM")
        columns["LlmProvider"].append(provider)
        columns["LlmRequestModel"].append(model)
        columns["LlmResponseModel"].append(response_model)
        columns["InputTokens"].append(prompt)
        columns["OutputTokens"].append(completion)
        columns["CacheReadTokens"].append(prompt // 2 if rng.random() < 0.4 else None)
        columns["CacheWriteTokens"].append(prompt // 10 if provider == "anthropic" and rng.random() < 0.3 else None)
        columns["ReasoningTokens"].append(completion // 2 if model == "o3" else None)
        columns["InputAudioTokens"].append(None)
        columns["OutputAudioTokens"].append(None)
    return SpanBatch(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    pricer = Pricer(PriceFile.parse(PRICE_FILE, "bench-prices.toml"))
    batch = make_batch(args.spans)
    started = time.perf_counter()
    priced = pricer.price(batch)
    cold = time.perf_counter() - started
    timings = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        pricer.price(batch)
        timings.append(time.perf_counter() - started)
    per_span = [t / args.spans * 1e6 for t in timings]
    sources = dict(sorted(Counter(source for source in priced.columns["CostSource"] if source).items()))
    print(f"pricing stage, {args.spans:,} spans per batch, {len(MODELS)} models; spans by source: {sources}")
    print(f"  first batch (cold look-up cache): {cold / args.spans * 1e6:.2f} µs/span")
    print(f"  warm: best {min(per_span):.2f} µs/span, median {statistics.median(per_span):.2f} µs/span")


if __name__ == "__main__":
    main()
