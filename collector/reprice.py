"""Recompute stored costs (after the price file changed), leaving costs the spans carried alone.

`tracehouse prices reprice` (prices_cli) runs it. Not a stage: it reads and mutates the store, so it
lives here and uses the pricing stage (stages/price) as the one definition of a cost.

Strategy, one day partition at a time, in pages of PAGE_ROWS spans:
1. read a page of the partition's LLM spans that are not 'provided' (ids, tokens, models, cost
   attributes) and price it with the same Pricer the collector runs;
2. load the new values into a Join-engine table keyed by (TraceId, SpanId);
3. one `ALTER TABLE otel_traces UPDATE ... = joinGet(...) IN PARTITION ID ...` mutation, waited for.

Why a mutation and not a re-insert: it rewrites only the ten cost columns of the touched parts,
keeps every row (and its content columns) where it is, cannot duplicate or lose a span if
interrupted (each page is applied whole or not at all; run it again to finish), and leaves spans
inserted meanwhile untouched. The
Python pricer stays the single definition of a cost: no second implementation in SQL.
A materialized view only sees inserts, so the rows of the repriced days in the daily rollups (`llm_daily`,
`llm_user_daily`) are rebuilt from each view's stored query.

Limits: the Join table lives on the node we talk to, so a Replicated / ON CLUSTER store is refused.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import (
    COST_COLUMNS,
    COST_PROVIDED,
    COST_SOURCE,
    COST_USD,
    PRICE_COLUMNS,
    STANDARD_COST_USD,
    TOKEN_COLUMNS,
)
from tracehouse.collector.stages.price.pricer import CALL_KINDS, Pricer
from tracehouse.collector.store import insert_values
from tracehouse.instrumentation.attributes import BATCH_ID

TRACES = "otel_traces"
# Spans priced and written per mutation: bounds memory (a page and its Join table) on busy days.
PAGE_ROWS = 100_000
ROLLUP = "llm_daily"
# Each daily rollup and the materialized view that fills it: reprice rebuilds the repriced days of every one.
ROLLUPS = {ROLLUP: "llm_daily_mv", "llm_user_daily": "llm_user_daily_mv"}
# Spans the pricing stage prices: already priced, or stored before pricing existed and a model call
# by the stage's rule (kind LLM / EMBEDDING, or unclassified with a model or tokens).
LLM_CALL = (
    f"(CostSource != '' OR LlmSpanKind IN ({', '.join(repr(kind) for kind in sorted(CALL_KINDS))})"
    " OR (LlmSpanKind = '' AND (LlmRequestModel != '' OR LlmResponseModel != ''"
    " OR InputTokens IS NOT NULL OR OutputTokens IS NOT NULL)))"
)


def rollup_select(client: Client, days: str, rollup: str = ROLLUP) -> str:
    """A rollup's aggregation for some days, taken from its materialized view itself (the stored query), so
    the view's file in schema/views/ stays the one definition."""
    view = ROLLUPS[rollup]
    rows = client.query(
        "SELECT as_select FROM system.tables WHERE database = currentDatabase() AND name = {view:String}",
        parameters={"view": view},
    ).result_rows
    if not rows:
        raise RepriceError(f"the rollup's materialized view {view} is missing: run `tracehouse migrate`")
    return f"SELECT * FROM ({rows[0][0]}) WHERE day IN ({days})"


_SPAN = ("TraceId", "SpanId", "LlmSpanKind")
_MODEL = ("LlmProvider", "LlmRequestModel", "LlmResponseModel")
# What the pricing stage reads, as a SpanBatch; read from the store in the same order, with the
# attributes cut to the provided-cost ones and the batch id, and the stored cost behind them.
_BATCH_COLUMNS = (*_SPAN, "Timestamp", *_MODEL, *TOKEN_COLUMNS, "SpanAttributes")
_READ_COLUMNS = (
    *_SPAN,
    "toUnixTimestamp64Nano(Timestamp)",
    *_MODEL,
    *TOKEN_COLUMNS,
    f"mapFilter((k, v) -> startsWith(k, 'llm.cost.') OR k IN ('gen_ai.usage.cost', '{BATCH_ID}'), SpanAttributes)",
    COST_USD,
    COST_SOURCE,
)


@dataclass(frozen=True)
class _JoinTable:
    database: str
    name: str

    @property
    def sql(self) -> str:
        return f"`{self.database}`.`{self.name}`"

    @property
    def qualified(self) -> str:
        """As joinGet wants it: mutations run without a current database, so name it in full."""
        return f"{self.database}.{self.name}"


class RepriceError(RuntimeError):
    """Repricing cannot run on this store, or a mutation failed (it was cancelled; nothing half-done)."""


@dataclass
class RepriceProgress:
    total_spans: int
    done_spans: int = 0
    total_days: int = 0
    done_days: int = 0
    day: date | None = None
    stage: str = "reading"  # reading | updating | rollup | done


@dataclass
class RepriceResult:
    spans: int = 0
    changed: int = 0
    cost_before: Decimal = Decimal(0)
    cost_after: Decimal = Decimal(0)
    days: list[date] = field(default_factory=list)
    by_source: dict[str, int] = field(default_factory=dict)


def reprice(
    client: Client,
    pricer: Pricer,
    since: datetime,
    progress: Callable[[RepriceProgress], None] | None = None,
    page_rows: int = PAGE_ROWS,
) -> RepriceResult:
    """Reprice every stored LLM span at or after `since` (UTC) whose cost was not provided by the span."""
    database = client.query("SELECT currentDatabase()").result_rows[0][0]
    _check_engine(client, database)
    if since.tzinfo is not None:
        since = since.astimezone(UTC).replace(tzinfo=None)
    since_sql = f"toDateTime64('{since.strftime('%Y-%m-%d %H:%M:%S.%f')}', 9, 'UTC')"
    scope = f"Timestamp >= {since_sql} AND {LLM_CALL} AND {COST_SOURCE} != '{COST_PROVIDED}'"
    partitions = client.query(
        f"SELECT _partition_id, toDate(min(Timestamp)), count() FROM {TRACES} WHERE {scope} "
        "GROUP BY _partition_id ORDER BY _partition_id"
    ).result_rows
    state = RepriceProgress(total_spans=sum(int(n) for _, _, n in partitions), total_days=len(partitions))
    result = RepriceResult()
    report = progress or (lambda _state: None)
    report(state)
    join = _JoinTable(database, f"tracehouse_reprice_{secrets.token_hex(6)}")
    client.command(
        f"CREATE TABLE {join.sql} (TraceId String, SpanId String, Hit UInt8, "
        + ", ".join(
            f"{c} Nullable(Decimal(38, 12))" if c in COST_COLUMNS or c == STANDARD_COST_USD else f"{c} String"
            for c in PRICE_COLUMNS
        )
        + ") "
        "ENGINE = Join(ANY, LEFT, TraceId, SpanId) SETTINGS persistent = 0"
    )
    try:
        for partition_id, day, _count in partitions:
            state.day = day
            after = ("", "")
            while True:
                state.stage = "reading"
                report(state)
                page = _read_page(client, partition_id, scope, after, page_rows)
                if not page:
                    break
                _price_page(client, pricer, join, page, result)
                state.stage = "updating"
                report(state)
                _apply(client, join, partition_id, scope)
                client.command(f"TRUNCATE TABLE {join.sql}")
                state.done_spans += len(page)
                after = (page[-1][0], page[-1][1])
                if len(page) < page_rows:
                    break
            result.days.append(day)
            state.done_days += 1
        if result.days:
            state.stage = "rollup"
            report(state)
            rebuild_rollup(client, result.days)
    finally:
        client.command(f"DROP TABLE IF EXISTS {join.sql}")
    state.stage = "done"
    report(state)
    return result


def _check_engine(client: Client, database: str) -> None:
    rows = client.query(
        "SELECT engine FROM system.tables WHERE database = {db:String} AND name = {name:String}",
        parameters={"db": database, "name": TRACES},
    ).result_rows
    if not rows:
        raise RepriceError(f"no {TRACES} table in database {database}; run `tracehouse migrate` first")
    engine = rows[0][0]
    if engine.startswith("Replicated") or engine == "Distributed":
        raise RepriceError(f"{TRACES} is {engine}: repricing supports single-node stores only")


def _read_page(client: Client, partition_id: str, scope: str, after: tuple[str, str], limit: int) -> list[tuple]:
    """The next `limit` spans of a partition in (TraceId, SpanId) order: memory stays bounded on big days."""
    return client.query(
        f"SELECT {', '.join(_READ_COLUMNS)} FROM {TRACES} WHERE _partition_id = {{partition:String}} AND {scope} "
        f"AND (TraceId, SpanId) > ({{trace:String}}, {{span:String}}) ORDER BY TraceId, SpanId LIMIT {int(limit)}",
        parameters={"partition": partition_id, "trace": after[0], "span": after[1]},
    ).result_rows


def _price_page(client: Client, pricer: Pricer, join: _JoinTable, page: list[tuple], result: RepriceResult) -> None:
    columns = list(zip(*page, strict=True))
    batch = SpanBatch({name: list(values) for name, values in zip(_BATCH_COLUMNS, columns, strict=False)})
    old_costs, old_sources = columns[-2], columns[-1]
    pricer.price(batch)
    new = [batch.columns[name] for name in PRICE_COLUMNS]
    rows = [[trace, span, 1, *values] for trace, span, *values in zip(columns[0], columns[1], *new, strict=True)]
    insert_values(client, join.sql, ["TraceId", "SpanId", "Hit", *PRICE_COLUMNS], rows)
    for old_cost, old_source, new_cost, new_source in zip(
        old_costs, old_sources, new[0], batch.columns[COST_SOURCE], strict=True
    ):
        result.cost_before += old_cost or 0
        result.cost_after += new_cost or 0
        result.changed += old_cost != new_cost or old_source != new_source
        result.by_source[new_source] = result.by_source.get(new_source, 0) + 1
    result.spans += len(page)


def _apply(client: Client, join: _JoinTable, partition_id: str, scope: str) -> None:
    assignments = ", ".join(f"{c} = joinGet('{join.qualified}', '{c}', TraceId, SpanId)" for c in PRICE_COLUMNS)
    try:
        client.command(
            f"ALTER TABLE {TRACES} UPDATE {assignments} IN PARTITION ID '{partition_id}' "
            f"WHERE joinGet('{join.qualified}', 'Hit', TraceId, SpanId) = 1 AND {scope}",
            settings={"mutations_sync": 2},
        )
    except Exception as exc:
        # A failed mutation is retried by ClickHouse forever; cancel it so the store is left as it was.
        with contextlib.suppress(Exception):
            client.command(
                f"KILL MUTATION WHERE database = '{join.database}' AND table = '{TRACES}' "
                f"AND command LIKE '%{join.name}%'"
            )
        raise RepriceError(f"updating partition {partition_id} failed: {exc}") from exc


def rebuild_rollup(client: Client, days: list[date]) -> None:
    """Recompute the rows of these days in every daily rollup from the spans (a materialized view only sees
    inserts). Each view's query is read before anything is deleted, so a missing view changes nothing."""
    listed = ", ".join(f"'{d.isoformat()}'" for d in days)
    selects = {rollup: rollup_select(client, listed, rollup) for rollup in ROLLUPS}
    for rollup, select in selects.items():
        client.command(f"ALTER TABLE {rollup} DELETE WHERE day IN ({listed})", settings={"mutations_sync": 2})
        # Not deduplicated (schema/0027): a day recomputed to the rows an earlier insert had is still inserted.
        client.command(f"INSERT INTO {rollup} " + select, settings={"insert_deduplicate": 0})
