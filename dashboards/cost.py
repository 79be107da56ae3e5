"""Cost (cost.json): where the LLM money goes, by feature, user, provider and model; prompt caching;
unpriced models."""

from __future__ import annotations

from typing import Any

from .panels import LLM_VARIABLES, Layout, dashboard, stat, table, timeseries
from .queries import FEATURE_NAME, RAW_FILTERS, TOTAL_COST, UNPRICED_CALLS, daily, indent, sql, where

# What cached input saved per rollup row: the uncached input price of that row (input cost over uncached
# input tokens) applied to the cached tokens, less what the cached tokens cost.
CACHE_SAVINGS = (
    "if(input_tokens > cache_read_tokens + cache_write_tokens + input_audio_tokens AND cache_read_tokens > 0,\n"
    "    toFloat64(input_cost_usd) * cache_read_tokens"
    " / (input_tokens - cache_read_tokens - cache_write_tokens - input_audio_tokens)\n"
    "      - toFloat64(cache_read_cost_usd),\n"
    "    0)"
)


# Top users by spend over the exact time range without reading a month of spans. The rollup by user (schema/0023)
# answers for a run of whole days R; the spans correct it at the range's ends: plus the calls in the range on days
# outside R, minus the calls in R outside the range (one scan, a sign per span). An end day is in R when less than
# half of it lies outside the range, so at most half a day of spans is read at each end (none at "now"). Both
# sources count the same calls (CostSource != '' AND UserId != '') under the same filters, in exact sums (Decimal
# costs, integer counts), so the answer is the spans' own. R never starts before the day after the rollup's first:
# on a store that had spans before the rollup existed, that day is partial and the days before it empty (until
# `tracehouse prices reprice` rebuilds them), so they are read from the spans.
USER_ROLLUP_COLUMNS = {
    "service": "service",
    "feature": "feature",
    "provider": "provider",
    "model": "model",
    "user": "user_id",
}
ROLLUP_DAYS = """
WITH
  (SELECT if(count() = 0, toDate('2100-01-01'), min(day)) FROM llm_user_daily) AS rollup_first,
  greatest(if(toHour($__fromTime) < 12, toDate($__fromTime), toDate($__fromTime) + 1), rollup_first + 1)
    AS rollup_from,
  if(toHour($__toTime) >= 12, toDate($__toTime), toDate($__toTime) - 1) AS rollup_to,
  toDateTime(rollup_from) AS rollup_start,
  toDateTime(rollup_to + 1) AS rollup_end"""
USERS_WHOLE_DAYS = f"""
-- llm_user_daily over the days R
SELECT user_id, toInt64(sum(calls)) AS calls, sum(cost_usd) AS cost, toInt64(sum(input_tokens)) AS input_sum,
  toInt64(sum(output_tokens)) AS output_sum, toInt64(sum(unpriced_calls)) AS unpriced
FROM llm_user_daily
WHERE day >= rollup_from AND day <= rollup_to{where(USER_ROLLUP_COLUMNS)}
GROUP BY user_id"""
USERS_AT_THE_ENDS = f"""
-- the spans in the range outside R (weight 1) and in R outside the range (-1), near the range's two ends
SELECT UserId AS user_id, sum(weight) AS calls, sum(weight * ifNull(CostUsd, 0)) AS cost,
  sum(weight * ifNull(InputTokens, 0)) AS input_sum, sum(weight * ifNull(OutputTokens, 0)) AS output_sum,
  sum(weight * (CostSource = 'unknown')) AS unpriced
FROM (
  SELECT UserId, CostUsd, InputTokens, OutputTokens, CostSource, if($__timeFilter(Timestamp), 1, -1) AS weight
  FROM otel_traces
  WHERE (Timestamp >= least($__fromTime, rollup_start) AND Timestamp <= greatest($__fromTime, rollup_start)
      OR Timestamp >= least($__toTime, rollup_end) AND Timestamp <= greatest($__toTime, rollup_end))
    AND ($__timeFilter(Timestamp)) != (Timestamp >= rollup_start AND Timestamp < rollup_end)
    AND CostSource != '' AND UserId != ''{RAW_FILTERS.replace(chr(10), chr(10) + "  ")}
)
GROUP BY user_id"""
TOP_USERS_BY_SPEND = (
    f"{sql(ROLLUP_DAYS)}\n"
    "SELECT user_id, toUInt64(sum(calls)) AS calls, toFloat64(sum(cost)) AS cost_usd,\n"
    "  toUInt64(sum(input_sum)) AS input_tokens, toUInt64(sum(output_sum)) AS output_tokens,\n"
    "  toUInt64(sum(unpriced)) AS unpriced_calls\n"
    "FROM (\n"
    f"{indent(sql(USERS_WHOLE_DAYS), 2)}\n"
    "  UNION ALL\n"
    f"{indent(sql(USERS_AT_THE_ENDS), 2)}\n"
    ")\n"
    "GROUP BY user_id\n"
    "HAVING calls > 0\n"
    "ORDER BY cost_usd DESC, user_id\n"
    "LIMIT 20"
)


def daily_cost_by_feature(title: str, description: str) -> dict[str, Any]:
    """Spend per day, a stacked bar per feature (the LLM overview shows it too)."""
    return timeseries(
        title,
        description,
        daily(
            f"""
            SELECT toDateTime(day) AS time, {FEATURE_NAME},
              toFloat64(sum(cost_usd)) AS cost_usd
            FROM DAILY
            GROUP BY time, feature_name
            ORDER BY time
            """
        ),
        "currencyUSD",
        series_label="feature_name",
        stacked=True,
        bars=True,
    )


def cost() -> dict[str, Any]:
    g = Layout()
    g.row("Spend (daily rollup, whole days)")
    g.add(stat("Total cost", "Spend in USD of the priced calls", TOTAL_COST, "currencyUSD"), 5, 4)
    g.add(
        stat(
            "Average cost per call",
            "Spend over the priced calls (unpriced calls excluded)",
            daily(
                "SELECT toFloat64(sum(cost_usd)) / greatest(sum(calls) - sum(unpriced_calls), 1) AS avg_cost_usd\n"
                "FROM DAILY"
            ),
            "currencyUSD",
        ),
        5,
        4,
    )
    g.add(
        stat(
            "Cache hit ratio",
            "Share of input tokens read from the provider's prompt cache",
            daily("SELECT sum(cache_read_tokens) / greatest(sum(input_tokens), 1) AS cache_hit_ratio FROM DAILY"),
            "percentunit",
        ),
        5,
        4,
    )
    g.add(
        stat(
            "Cache savings",
            "What the cached input tokens would have cost at the uncached input price, less what they cost",
            # a ratio per row: one row per key
            daily(f"SELECT sum({CACHE_SAVINGS}) AS cache_savings_usd FROM DAILY", per_key=True),
            "currencyUSD",
        ),
        5,
        4,
    )
    g.add(
        stat(
            "Unpriced calls",
            "Calls of models with no price in the catalogue or the price file (cost unknown, not 0)",
            UNPRICED_CALLS,
            "short",
        ),
        4,
        4,
    )
    g.add(daily_cost_by_feature("Daily cost by feature", "Spend in USD per day by tracehouse.feature"), 12, 9)
    g.add(
        timeseries(
            "Cost by provider and model",
            "Spend in USD per day, one series per provider / model",
            daily(
                """
                SELECT toDateTime(day) AS time, concat(provider, ' / ', model) AS provider_model,
                  toFloat64(sum(cost_usd)) AS cost_usd
                FROM DAILY
                GROUP BY time, provider_model
                ORDER BY time
                """
            ),
            "currencyUSD",
            series_label="provider_model",
            stacked=True,
        ),
        12,
        9,
    )
    g.add(
        timeseries(
            "Cost by token kind",
            "Spend per day split into uncached input, cache reads, cache writes, output and reasoning",
            daily(
                """
                SELECT toDateTime(day) AS time,
                  toFloat64(sum(input_cost_usd)) AS input,
                  toFloat64(sum(cache_read_cost_usd)) AS cache_read,
                  toFloat64(sum(cache_write_cost_usd)) AS cache_write,
                  toFloat64(sum(output_cost_usd)) AS output,
                  toFloat64(sum(reasoning_cost_usd)) AS reasoning,
                  toFloat64(sum(audio_cost_usd)) AS audio
                FROM DAILY
                GROUP BY time
                ORDER BY time
                """
            ),
            "currencyUSD",
            stacked=True,
            bars=True,
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Cache hit ratio by model",
            "Share of input tokens served from the prompt cache per day, by model",
            daily(
                """
                SELECT toDateTime(day) AS time, model,
                  sum(cache_read_tokens) / greatest(sum(input_tokens), 1) AS cache_hit_ratio
                FROM DAILY
                GROUP BY time, model
                ORDER BY time
                """
            ),
            "percentunit",
            series_label="model",
        ),
        12,
        8,
    )
    g.row("Who and what (users: daily rollup by user, exact time range; the others: daily rollup, whole days)")
    g.add(
        table(
            "Top users by spend",
            "The 20 users with the highest spend; calls include unpriced ones",
            TOP_USERS_BY_SPEND,
            units={"cost_usd": "currencyUSD"},
        ),
        12,
        9,
    )
    g.add(
        table(
            "Cost per call by model",
            "Average and 95th percentile cost of one priced call, by provider and model",
            daily(
                """
                SELECT provider, model, sum(priced_calls) AS priced_calls, cost_usd / priced_calls AS avg_cost_usd,
                  quantileMerge(0.95)(cost_p95_state) AS p95_cost_usd, toFloat64(sum(cost_usd)) AS cost_usd
                FROM DAILY
                GROUP BY provider, model
                HAVING priced_calls > 0
                ORDER BY cost_usd DESC
                """
            ),
            units={"avg_cost_usd": "currencyUSD", "p95_cost_usd": "currencyUSD", "cost_usd": "currencyUSD"},
        ),
        12,
        9,
    )
    g.add(
        table(
            "Unpriced models",
            "Models seen without a price: add them to the price file (`tracehouse prices`), then reprice",
            daily(
                """
                SELECT provider, model, sum(unpriced_calls) AS unpriced, sum(calls) AS calls_total,
                  min(day) AS first_day, max(day) AS last_day
                FROM DAILY
                GROUP BY provider, model
                HAVING unpriced > 0
                ORDER BY unpriced DESC
                """
            ),
        ),
        12,
        7,
    )
    g.add(
        timeseries(
            "Unpriced calls per day",
            "Calls whose cost is unknown, per day by model",
            daily(
                """
                SELECT toDateTime(day) AS time, model, sum(unpriced_calls) AS unpriced
                FROM DAILY
                GROUP BY time, model
                HAVING unpriced > 0
                ORDER BY time
                """
            ),
            "short",
            series_label="model",
            bars=True,
        ),
        12,
        7,
    )
    return dashboard(
        "tracehouse-cost",
        "tracehouse / Cost",
        "Where the LLM money goes: by feature, user, provider and model; prompt caching; unpriced models.",
        g,
        LLM_VARIABLES,
        time_from="now-30d",
    )
