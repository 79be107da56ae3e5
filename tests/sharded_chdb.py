"""The sharded layout on a real chDB, in a process of its own (chDB: one store and one config per process).

    python tests/sharded_chdb.py DIR      # prints one JSON object of what it found

chDB runs no server and keeps no Keeper, so no `ON CLUSTER` and no Replicated engine here, and it treats every
shard address as remote, so a Distributed table cannot read: what runs is everything else.
- The store's config defines the cluster `tracehouse`: two shards at 127.0.0.1:9000 and 127.0.0.2:9000,
  never reached (the Distributed tables' sends are stopped).
- Two databases stand for the two shards' nodes, `default` and `shard2`; each gets every statement of
  store.sharded_statements (bootstrap, migrations, views as on a fresh store and as on one that has them,
  retention with a policy and without): the same statements a sharded cluster runs, less ON CLUSTER and the
  Replicated engines.
- The collector's own insert (the stages and encoder on an OTLP request, the writer's table, format and
  deduplication token) goes into `default.otel_traces`, the Distributed table, which splits it into one
  queued block per shard, as it does before sending them. The blocks are read back (format `Distributed`)
  and each is inserted into its shard's `otel_traces_local`, as the shard's server does when the block
  arrives: then the materialized views of each shard fire on their own local table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import clickhouse_connect
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracehouse.collector import store
from tracehouse.collector.config import Config
from tracehouse.collector.processing import INSERT_FORMAT, process_body
from tracehouse.collector.retention import Override, RetentionSettings
from tracehouse.collector.stages import default_stages
from tracehouse.collector.writer import TRACES_TABLE

CLUSTER = "tracehouse"
SHARDS = {1: "default", 2: "shard2"}
TRACES, SPANS_PER_TRACE = 24, 3
TOKEN = "tracehouse-spool-4f2c9a0d1e3b5a77-0-72"  # the drainer's form: spool id, range
CONFIG = """<clickhouse>
  <remote_servers>
    <tracehouse>
      <shard><internal_replication>true</internal_replication><replica><host>127.0.0.1</host><port>9000</port></replica></shard>
      <shard><internal_replication>true</internal_replication><replica><host>127.0.0.2</host><port>9000</port></replica></shard>
    </tracehouse>
  </remote_servers>
</clickhouse>
"""


def statements() -> list[str]:
    """Every statement migrate can run, in migrate's order, each as the sharded layout has it."""
    policy = RetentionSettings(30, 400, 1000, (Override(service="bot", content_days=0),))
    plain = [
        *store.bootstrap_statements(),
        *(s for m in store.load_migrations() for s in m.statements),
        *(s for v in store.load_views() for s in v.statements(exists=False)),
        *(s for v in store.load_views() for s in v.statements(exists=True)),
        *(s for settings in (policy, RetentionSettings()) for s in store._retention_statements(settings)),
    ]
    return [part for statement in plain for part in store.sharded_statements(statement, CLUSTER)]


def otlp_request() -> bytes:
    """OpenInference LLM spans, SPANS_PER_TRACE per trace, with a prompt template and a batch id."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "sharded-app"
    ss = rs.scope_spans.add()
    ss.scope.name = "openinference.instrumentation.openai"
    start = 1_764_000_000_000_000_000
    for t in range(TRACES):
        for s in range(SPANS_PER_TRACE):
            span = ss.spans.add()
            span.trace_id = (t + 1).to_bytes(16, "big")
            span.span_id = (t * 100 + s + 1).to_bytes(8, "big")
            span.name = "ChatCompletion"
            span.kind = 1
            span.start_time_unix_nano = start + t * 1_000_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + 250_000_000
            for key, value in {
                "openinference.span.kind": "LLM",
                "llm.provider": "openai",
                "llm.model_name": "gpt-4o-mini-2024-07-18",
                "llm.prompt_template.template": f"Answer {{question}} ({t % 3})",
                "llm.prompt_template.name": "answer",
                "user.id": f"user-{t % 5}",
                "tracehouse.batch.id": f"batch-{t}",
            }.items():
                kv = span.attributes.add()
                kv.key, kv.value.string_value = key, value
            for key, number in (("llm.token_count.prompt", 100), ("llm.token_count.completion", 20)):
                kv = span.attributes.add()
                kv.key, kv.value.int_value = key, number
    return request.SerializeToString()


def rows(client, query: str) -> list[list]:
    return [list(row) for row in client.query(query).result_rows]


def main(folder: Path) -> None:
    (folder / "config.xml").write_text(CONFIG)
    client = clickhouse_connect.get_client(
        dsn=f"chdb://{folder}/store", chdb_options={"config-file": str(folder / "config.xml")}
    )
    facts: dict = {}
    executed = statements()
    for database in SHARDS.values():
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.command(f"USE {database}")
        for statement in executed:
            try:
                client.command(statement)
            except Exception as exc:  # REMOVE TTL where none was set: what apply_retention passes over too
                if "REMOVE TTL" not in statement or not store._NO_TTL_TO_REMOVE.search(str(exc)):
                    raise
    facts["statements"] = executed
    client.command("USE default")
    tables = rows(
        client,
        "SELECT name, engine, engine_full, create_table_query FROM system.tables "
        "WHERE database = 'default' ORDER BY name",
    )
    facts["tables"] = {
        name: {"engine": engine, "engine_full": full, "create": create} for name, engine, full, create in tables
    }
    columns = "SELECT name, type, default_kind, default_expression, compression_codec FROM system.columns"
    facts["columns"] = {
        name: rows(client, f"{columns} WHERE database = 'default' AND table = '{name}' ORDER BY position")
        for name, engine, *_ in tables
        if engine != "View" and engine != "MaterializedView"
    }
    for name, engine, *_ in tables:
        if engine == "Distributed":
            client.command(f"SYSTEM STOP DISTRIBUTED SENDS {name}")

    # The collector's insert, as writer.TraceStore makes it, into the name it always wrote to.
    processed = process_body(default_stages(Config()), otlp_request(), False, None)
    facts["header"] = processed.header.decode().split(",")
    client.raw_insert(
        TRACES_TABLE,
        column_names=facts["header"],
        insert_block=processed.payload,
        settings={"insert_deduplication_token": TOKEN, "max_partitions_per_insert_block": 0},
        fmt=INSERT_FORMAT,
    )
    # Nothing: the Distributed table queues the rows for the shards (this node is none of them).
    facts["written_locally"] = rows(client, "SELECT count() FROM default.otel_traces_local")[0][0]
    client.command(
        "INSERT INTO scores (Timestamp, TenantId, TraceId, SpanId, ScoreId, Name, Value, ValueType, Source) "
        "SELECT now64(9), '', leftPad(lower(hex(number + 1)), 32, '0'), '', "
        f"toString(number), 'user', 1, 'numeric', 'user' FROM numbers({TRACES})"
    )

    queued: dict[str, dict[int, list[dict]]] = {}
    for table, path in rows(
        client, "SELECT table, data_path FROM system.distribution_queue WHERE database = 'default'"
    ):
        shard = int(Path(path).name.removeprefix("shard").split("_")[0])
        for block in sorted(Path(path).glob("*.bin")):
            names = [row[0] for row in rows(client, f"DESCRIBE file('{block}', 'Distributed')")]
            got = rows(client, f"SELECT {', '.join(f'`{n}`' for n in names)} FROM file('{block}', 'Distributed')")
            entry = {
                "columns": names,
                "trace_ids": [row[names.index("TraceId")] for row in got],
                # The insert's settings travel in the block's header, the deduplication token among them.
                "token": TOKEN.encode() in block.read_bytes(),
            }
            queued.setdefault(table, {}).setdefault(shard, []).append(entry)
            # The shard's server: the block it receives goes into its local table.
            listed = ", ".join(f"`{n}`" for n in names)
            native = client.raw_query(f"SELECT {listed} FROM file('{block}', 'Distributed')", fmt="Native")
            client.raw_insert(f"{SHARDS[shard]}.{table}_local", column_names=names, insert_block=native, fmt="Native")
    facts["queued"] = queued
    ids = sorted(
        {i for blocks in queued.get(TRACES_TABLE, {}).values() for block in blocks for i in block["trace_ids"]}
    )
    listed_ids = ", ".join(f"'{i}'" for i in ids)  # hex digits
    facts["expected_shard"] = dict(
        rows(client, f"SELECT id, cityHash64(id) % 2 + 1 FROM (SELECT arrayJoin([{listed_ids}]) AS id)")
    )
    facts["shards"] = {
        shard: {
            "spans": rows(client, f"SELECT count(), uniqExact(TraceId) FROM {db}.otel_traces_local")[0],
            "batch_ids": rows(client, f"SELECT countIf(BatchId != '') FROM {db}.otel_traces_local")[0][0],
            "llm_daily_calls": rows(client, f"SELECT sum(calls) FROM {db}.llm_daily_local")[0][0],
            "trace_index": rows(client, f"SELECT uniqExact(TraceId) FROM {db}.otel_traces_trace_id_ts_local")[0][0],
            "prompt_calls": rows(client, f"SELECT sum(Calls) FROM {db}.prompt_observations_local")[0][0],
            "scores": rows(client, f"SELECT count() FROM {db}.scores_local")[0][0],
            "scores_of_other_shards": rows(
                client,
                f"SELECT count() FROM {db}.scores_local "
                f"WHERE TraceId NOT IN (SELECT TraceId FROM {db}.otel_traces_local)",
            )[0][0],
        }
        for shard, db in SHARDS.items()
    }
    client.close()
    print(json.dumps(facts, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
