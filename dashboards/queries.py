"""The SQL the dashboards share: the model expression, the filter variables, the daily rollup source,
one trace's spans, and the queries more than one panel runs.

Query text is written as indented triple-quoted strings; `sql()` strips the indentation, and fragments
spliced into a query (the filters, the trace window) carry their own smaller indentation and keep it.
Grafana gets the text exactly as built here, so a change of spacing is a change of every JSON file.
"""

from __future__ import annotations

import re
import textwrap

from tracehouse.collector.columns import RAW_INPUT_MESSAGE_KEYS, RAW_OUTPUT_MESSAGE_KEYS

# The model of a call: the one that answered, else the one requested (as llm_calls and llm_daily say).
MODEL = "LlmModel"  # the model column of otel_traces (schema/0011_llm_model.sql): response model, else request model

# --- filters ----------------------------------------------------------------------------------------

FILTERS = ("service", "feature", "provider", "model", "user")

# Column each filter variable applies to, per source: the llm_calls view, the raw spans, the rollup.
CALLS_COLUMNS = {
    "service": "service",
    "feature": "feature",
    "provider": "provider",
    "model": "model",
    "user": "user_id",
}
RAW_COLUMNS = {
    "service": "ServiceName",
    "feature": "Feature",
    "provider": "LlmProvider",
    "model": MODEL,
    "user": "UserId",
}
ROLLUP_COLUMNS = {"service": "service", "feature": "feature", "provider": "provider", "model": "model"}


def sql(text: str) -> str:
    """Strip the indentation of the first line from every line that has it: lines spliced in from the
    shared filters carry their own (smaller) indentation and keep it."""
    lines = text.strip("\n").split("\n")
    base = len(lines[0]) - len(lines[0].lstrip(" "))
    return "\n".join(line[base:] if line.startswith(" " * base) else line for line in lines).rstrip()


def indent(text: str, spaces: int) -> str:
    return textwrap.indent(text, " " * spaces)


def cond(var: str, column: str) -> str:
    """A filter that disappears (1=1) when the variable is All or empty."""
    return f"$__conditionalAll({column} IN (${{{var}:singlequote}}), ${var})"


def where(columns: dict[str, str], only: tuple[str, ...] = FILTERS) -> str:
    """The `AND ...` lines for the filter variables this source has a column for."""
    return "".join(f"\n  AND {cond(var, columns[var])}" for var in only if var in columns)


CALLS_FILTERS = where(CALLS_COLUMNS)
RAW_FILTERS = where(RAW_COLUMNS)

# The spans that are LLM calls: the llm_calls view's WHERE (schema/views/llm_calls.sql; tests/test_dashboards.py
# checks they agree). A panel that reads otel_traces itself with it counts the same calls, and its query skips
# the analysis of the view's 60 columns: ~3 ms of a ~10 ms answer over a day (bench/bench_panels.py).
LLM_CALL = "(LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content'))"
RAW_CALLS_IN_RANGE = f"$__timeFilter(Timestamp) AND {LLM_CALL}{RAW_FILTERS}"


def rollup_values(column: str, only: tuple[str, ...]) -> str:
    """The values of one rollup column in the time range, narrowed by the filters chosen before it."""
    return (
        f"SELECT DISTINCT {column} FROM llm_daily\n"
        f"WHERE $__dateFilter(day) AND {column} != ''{where(ROLLUP_COLUMNS, only)}\n"
        f"ORDER BY {column}"
    )


# --- the daily rollup -------------------------------------------------------------------------------

# Rows of (day, service, feature, provider, model) with the rollup's sums: from llm_daily over whole
# days, or, when a user is selected ($__conditionalAll(0, $user) is 0), from the spans of that user with
# the rollup's own definition of a call (CostSource != '': the spans the pricing stage priced or tried to).
# llm_daily's rows come as stored, not merged per key first: a key can have several rows (parts not merged
# yet), so a query over them sums (or -Merges the states); merging per key first cost ~10 of ~30 ms for
# the cost states on 1M calls (bench/bench_query.py). A query whose expression is not additive over rows
# (a ratio per row) asks for one row per key (`per_key`).
# The keys are llm_daily's sum columns; the values compute the same sums from the spans.
RAW_SUMS = {
    "calls": "count()",
    "errors": "countIf(StatusCode = 'Error')",
    "unpriced_calls": "countIf(CostSource = 'unknown')",
    "input_tokens": "sum(ifNull(InputTokens, 0))",
    "output_tokens": "sum(ifNull(OutputTokens, 0))",
    "cache_read_tokens": "sum(ifNull(CacheReadTokens, 0))",
    "cache_write_tokens": "sum(ifNull(CacheWriteTokens, 0))",
    "reasoning_tokens": "sum(ifNull(ReasoningTokens, 0))",
    "input_audio_tokens": "sum(ifNull(InputAudioTokens, 0))",
    "cost_usd": "sum(ifNull(CostUsd, 0))",
    "input_cost_usd": "sum(ifNull(InputCostUsd, 0))",
    "cache_read_cost_usd": "sum(ifNull(CacheReadCostUsd, 0))",
    "cache_write_cost_usd": "sum(ifNull(CacheWriteCostUsd, 0))",
    "output_cost_usd": "sum(ifNull(OutputCostUsd, 0))",
    "reasoning_cost_usd": "sum(ifNull(ReasoningCostUsd, 0))",
    "audio_cost_usd": "sum(ifNull(AudioCostUsd, 0))",
    "priced_calls": "countIf(CostUsd IS NOT NULL)",
    "cost_p95_state": "quantileState(0.95)(toFloat64(CostUsd))",
}
ROLLUP_SUMS = tuple(RAW_SUMS)
# How the rollup's rows of one key combine: sum, but for the aggregate states (schema/0022), merged as states.
ROLLUP_MERGES = {"cost_p95_state": "quantileMergeState(0.95)"}
ROLLUP_KEY = "day, service, feature, provider, model"


def daily_source(sums: tuple[str, ...] = ROLLUP_SUMS, per_key: bool = False) -> str:
    """The daily rows with only the sums a panel uses (one per key with `per_key`)."""
    if per_key:
        rollup = ",\n".join(f"  {ROLLUP_MERGES.get(name, 'sum')}({name}) AS {name}" for name in sums)
    else:
        rollup = ",\n".join(f"  {name}" for name in sums)
    raw = ",\n".join(f"  {RAW_SUMS[name]} AS {name}" for name in sums)
    group = f"GROUP BY {ROLLUP_KEY}\n" if per_key else ""
    return (
        "-- llm_daily over whole days; the spans of the selected users when a user is selected\n"
        f"SELECT {ROLLUP_KEY},\n"
        f"{rollup}\n"
        "FROM llm_daily\n"
        "WHERE $__dateFilter(day)"
        f"{where(ROLLUP_COLUMNS)}\n"
        "  AND $__conditionalAll(0, $user)\n"
        f"{group}"
        "UNION ALL\n"
        "SELECT toDate(Timestamp) AS day, ServiceName AS service, Feature AS feature, LlmProvider AS provider,\n"
        f"  {MODEL} AS model,\n"
        f"{raw}\n"
        "FROM otel_traces\n"
        "WHERE toDate(Timestamp) >= toDate($__fromTime) AND toDate(Timestamp) <= toDate($__toTime)\n"
        "  AND CostSource != ''"
        f"{RAW_FILTERS}\n"
        "  AND NOT ($__conditionalAll(0, $user))\n"
        f"GROUP BY {ROLLUP_KEY}"
    )


def daily(select: str, per_key: bool = False) -> str:
    """A query over the daily rows: `select` reads `FROM DAILY`, which becomes the rollup-or-spans
    subquery with the sums the select names; it aggregates them, unless `per_key` gives one row per key."""
    head, _, tail = sql(select).partition("FROM DAILY")
    used = tuple(name for name in ROLLUP_SUMS if re.search(rf"\b{name}\b", head + tail))
    return f"{head}FROM (\n{indent(daily_source(used or ('calls',), per_key), 2)}\n){tail}"


# --- fragments and queries more than one panel uses --------------------------------------------------

FEATURE_NAME = "if(feature = '', '(no feature)', feature) AS feature_name"
ERROR_KIND = "if(error_type != '', error_type, 'error') AS error_kind"

# WHERE conditions over llm_calls: every call in the time range, the failed ones, the streamed ones.
CALLS_IN_RANGE = f"$__timeFilter(ts){CALLS_FILTERS}"
FAILED_CALLS = f"$__timeFilter(ts) AND (status = 'Error' OR error_type != ''){CALLS_FILTERS}"
STREAMED_CALLS = f"$__timeFilter(ts) AND latency_ms_first_token IS NOT NULL{CALLS_FILTERS}"

TOTAL_COST = daily("SELECT toFloat64(sum(cost_usd)) AS cost_usd FROM DAILY")
UNPRICED_CALLS = daily("SELECT sum(unpriced_calls) AS unpriced_calls FROM DAILY")


def over_calls(columns: str, condition: str = CALLS_IN_RANGE) -> str:
    """One row over the LLM calls that meet `condition`."""
    return f"SELECT {columns}\nFROM llm_calls\nWHERE {condition}"


def calls_per_interval(columns: str, group_by: str = "time", condition: str = CALLS_IN_RANGE) -> str:
    """A series over the LLM calls that meet `condition`: `columns` per interval (and per `group_by`)."""
    return sql(
        f"""
        SELECT $__timeInterval(ts) AS time, {columns}
        FROM llm_calls
        WHERE {condition}
        GROUP BY {group_by}
        ORDER BY time
        """
    )


# --- queries of `tracehouse report` that no Grafana panel runs (collector/report.py) ------------------

TOP_FEATURES_BY_SPEND = daily(
    f"""
    SELECT {FEATURE_NAME}, sum(calls) AS calls, toFloat64(sum(cost_usd)) AS cost_usd,
      sum(unpriced_calls) AS unpriced_calls
    FROM DAILY
    GROUP BY feature_name
    ORDER BY cost_usd DESC, feature_name
    LIMIT 20
    """
)


def calls_prompts(ids: str) -> str:
    """The prompt (system prompt and input messages) of the calls in the time range whose span ids `ids`
    lists as SQL string literals: the report shows them beside the slowest and costliest calls."""
    return over_calls("id, system_prompt, messages", f"$__timeFilter(ts) AND id IN ({ids})")


# --- one trace ----------------------------------------------------------------------------------------


def trace_window(trace_literal: str) -> str:
    """`WITH` the selected trace and its time range from the otel_traces_trace_id_ts lookup, so a query
    over its spans or calls reads only that range (as the plugin's own trace view does)."""
    return (
        "WITH\n"
        f"  {trace_literal} AS selected_trace,\n"
        "  (SELECT min(Start) FROM otel_traces_trace_id_ts WHERE TraceId = selected_trace) AS trace_start,\n"
        "  (SELECT max(End) + 1 FROM otel_traces_trace_id_ts WHERE TraceId = selected_trace) AS trace_end"
    )


# A span still has its raw input / output messages in SpanAttributes (collector/columns.py RAW_INPUT_MESSAGE_KEYS,
# RAW_OUTPUT_MESSAGE_KEYS): `[content_copies] raw_messages = "drop"` leaves them out where the typed columns
# hold them, and the trace view then shows the typed ones.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.]+")


def _any_key_matches(globs: tuple[str, ...]) -> str:
    """SQL: whether SpanAttributes holds a key one of the globs matches. Each glob is a key or a
    `prefix[0-9]*` (the forms columns.py uses); any other shape is refused so the SQL cannot drift."""
    keys = [glob for glob in globs if not glob.endswith("[0-9]*")]
    prefixes = [glob.removesuffix("[0-9]*") for glob in globs if glob.endswith("[0-9]*")]
    if not keys or not prefixes or not all(_PLAIN_KEY.fullmatch(name) for name in keys + prefixes):
        raise ValueError(f"raw message key globs must be keys or prefix[0-9]*: {globs!r}")
    listed = ", ".join(f"'{key}'" for key in keys)
    alternatives = "|".join(prefix.replace(".", "[.]") for prefix in prefixes)
    return f"arrayExists(k -> k IN ({listed}) OR match(k, '^({alternatives})[0-9]'), mapKeys(SpanAttributes))"


RAW_INPUT_PRESENT = _any_key_matches(RAW_INPUT_MESSAGE_KEYS)
RAW_OUTPUT_PRESENT = _any_key_matches(RAW_OUTPUT_MESSAGE_KEYS)


def trace_spans(trace_literal: str) -> str:
    """Every span of one trace in the columns Grafana's trace view reads (traceID, spanID, parentSpanID,
    serviceName, operationName, startTime and duration in ms, tags, serviceTags, ...), narrowed to the
    trace's time range. The normalized LLM fields join the span tags, so the view shows each call's
    model, tokens and cost, and its typed messages where the raw ones were not stored."""
    return sql(
        f"""
        {trace_window(trace_literal)}
        SELECT
          TraceId AS traceID,
          SpanId AS spanID,
          ParentSpanId AS parentSpanID,
          ServiceName AS serviceName,
          SpanName AS operationName,
          toUnixTimestamp64Nano(Timestamp) / 1000000 AS startTime,
          Duration / 1000000 AS duration,
          arrayConcat(
            arrayMap(kv -> map('key', kv.1, 'value', kv.2), arrayFilter(kv -> kv.2 != '', [
              ('llm.model', {MODEL}),
              ('llm.provider', toString(LlmProvider)),
              ('llm.input_tokens', ifNull(toString(InputTokens), '')),
              ('llm.output_tokens', ifNull(toString(OutputTokens), '')),
              ('llm.cached_tokens', ifNull(toString(CacheReadTokens), '')),
              ('llm.cost_usd', ifNull(toString(CostUsd), '')),
              ('llm.cost_source', toString(CostSource)),
              ('llm.finish_reason', toString(FinishReason)),
              ('llm.user', UserId),
              ('llm.feature', toString(Feature)),
              ('llm.prompt', toString(PromptTemplateName)),
              ('llm.prompt_version', toString(PromptVersion)),
              ('llm.system_prompt', if({RAW_INPUT_PRESENT}, '', SystemPrompt)),
              ('llm.input_messages', if({RAW_INPUT_PRESENT}, '', InputMessages)),
              ('llm.output_messages', if({RAW_OUTPUT_PRESENT}, '', OutputMessages))
            ])),
            arrayMap(key -> map('key', toString(key), 'value', SpanAttributes[key]), mapKeys(SpanAttributes))
          ) AS tags,
          arrayMap(key -> map('key', toString(key), 'value', ResourceAttributes[key]), mapKeys(ResourceAttributes))
            AS serviceTags,
          if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 2, 0) AS statusCode,
          StatusMessage AS statusMessage,
          SpanKind AS kind,
          ScopeName AS instrumentationLibraryName,
          ScopeVersion AS instrumentationLibraryVersion,
          TraceState AS traceState
        FROM otel_traces
        WHERE TraceId = selected_trace AND Timestamp >= trace_start AND Timestamp <= trace_end
        ORDER BY Timestamp
        LIMIT 10000
        """
    )
