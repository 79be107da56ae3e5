"""The small-table inserts (prompts, erasures, a repricing's join table, the migrations' bookkeeping) go through
store.insert_values, not clickhouse-connect's insert(), which imports pandas (with numpy and pyarrow, ~90 MiB of
RSS) to ask whether the rows are a DataFrame. Checked where they run: in a running collector (POST /prompts and
POST /forget on its local query endpoint) and in a CLI process (migrate, reprice), with the rows read back,
text with quotes, backslashes, newlines and unicode included."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from collector_process import sql_rows

from tracehouse.collector.runtime import post_to_collector

# Quotes, backslashes, escapes as text, newlines, tabs, unicode beyond the BMP, and what looks like the
# placeholders of query parameters: each must arrive as it is.
TRICKY = "it's \"quoted\", back\\slash \\' \\n {name:String} %(x)s\nnew line\ttab é 😀 ✓ \u2028 end\\"
ONE_LINE = TRICKY.replace("\n", " ")  # a prompt name is one line
PRINTABLE = ONE_LINE.replace("\t", " ").replace("\u2028", " ")  # who synced or moved a prompt: printable too


def loaded_modules(pid: int) -> str:
    """The shared objects a process mapped: importing pandas maps its C extensions (pandas/_libs)."""
    return Path(f"/proc/{pid}/maps").read_text()


def test_prompt_and_forget_routes_of_a_running_collector_insert_without_pandas(start_collector):
    collector = start_collector(migrated=True)
    data = collector.data_dir
    pid = collector.info["pid"]
    assert "pandas" not in loaded_modules(pid)  # the collector starts without it
    info = json.loads((data / "collector.json").read_text())
    prompt = {
        "TenantId": "",
        "Name": ONE_LINE,
        "Version": "0123456789ab",
        "Template": TRICKY,
        "Body": TRICKY + "\n",
        "FrontMatter": "a: 'b'\n",
        "Labels": [TRICKY, ""],
        "File": "prompts/x'y.md",
        "Source": "sync",
        "SyncedBy": PRINTABLE,
        "FirstSeen": 1_764_000_000_123_456_000,
    }
    label = {
        "Timestamp": 1_764_000_001_000_000_000,
        "TenantId": "",
        "Name": ONE_LINE,
        "Label": "production",
        "Version": "0123456789ab",
        "VersionNumber": 1,
        "MovedBy": PRINTABLE,
        "LabelId": "l1",
    }
    for table, row in (("prompts", prompt), ("prompt_labels", label)):
        answer = post_to_collector(info, "/prompts", json.dumps({"table": table, "rows": [row]}).encode(), 60)
        assert json.loads(answer) == {"table": table, "rows": 1}
    forget = {"kind": "user", "value": "nobody", "requested_by": TRICKY}
    erasure = json.loads(post_to_collector(info, "/forget", json.dumps(forget).encode(), 300))
    assert erasure["erasure_id"]

    assert "pandas" not in loaded_modules(pid)
    stored = sql_rows(
        data,
        "SELECT Name, Template, Body, FrontMatter, Labels, File, SyncedBy, "
        "toUnixTimestamp64Nano(FirstSeen) AS FirstSeen FROM prompts",
    )
    assert stored == [
        {
            "Name": ONE_LINE,
            "Template": TRICKY,
            "Body": TRICKY + "\n",
            "FrontMatter": "a: 'b'\n",
            "Labels": [TRICKY, ""],
            "File": "prompts/x'y.md",
            "SyncedBy": PRINTABLE,
            "FirstSeen": prompt["FirstSeen"],
        }
    ]
    moved = sql_rows(data, "SELECT Name, MovedBy, toUnixTimestamp64Nano(Timestamp) AS ts FROM prompt_labels")
    assert moved == [{"Name": ONE_LINE, "MovedBy": PRINTABLE, "ts": label["Timestamp"]}]
    audit = sql_rows(data, "SELECT ErasureId, RequestedBy, SubjectKind, Rows, Route FROM erasures")
    assert audit == [
        {
            "ErasureId": erasure["erasure_id"],
            "RequestedBy": TRICKY,
            "SubjectKind": "user",
            "Rows": erasure["rows"],
            "Route": "collector",
        }
    ]
    assert "pandas" not in loaded_modules(pid)


# In a fresh interpreter: migrate a new embedded store, store priced spans, reprice them with a new price file.
CLI_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime
    from pathlib import Path

    sys.path.insert(0, sys.argv[2])
    from test_price_store import PRICES_V1, PRICES_V2, SPANS

    from tracehouse.collector import store
    from tracehouse.collector.batch import SpanBatch
    from tracehouse.collector.config import parse_config
    from tracehouse.collector.processing import encode_rows
    from tracehouse.collector.reprice import reprice
    from tracehouse.collector.stages.price import build
    from tracehouse.collector.writer import TraceStore

    root = Path(sys.argv[1])
    prices = root / "prices.toml"
    prices.write_text(PRICES_V1)
    config = parse_config({"data_dir": str(root / "data"), "pricing": {"price_file": str(prices)}}, environ={})
    client = store.connect(config.store_url)
    applied = store.migrate(client)
    after_migrate = "pandas" in sys.modules
    rows = list(SPANS.values())
    writer = TraceStore(config.store_url)
    writer.insert(*encode_rows(build(config).price(SpanBatch({n: [r[n] for r in rows] for n in rows[0]}))))
    prices.write_text(PRICES_V2)
    repricing = parse_config({"pricing": {"price_file": str(prices)}}, environ={})  # the prices read anew
    result = reprice(client, build(repricing), datetime(2025, 2, 15, tzinfo=UTC), page_rows=2)
    costs = client.query("SELECT SpanName, toString(CostUsd), CostSource FROM otel_traces ORDER BY SpanName")
    recorded = client.query("SELECT count() FROM tracehouse_migrations FINAL").result_rows[0][0]
    print(json.dumps({
        "applied": len(applied),
        "recorded": recorded,
        "after_migrate": after_migrate,
        "pandas": "pandas" in sys.modules,
        "spans": result.spans,
        "changed": result.changed,
        "costs": [list(row) for row in costs.result_rows],
    }))
    """
)


def test_migrate_and_reprice_in_a_cli_process_insert_without_pandas(tmp_path):
    tests = Path(__file__).parent
    done = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, str(tmp_path), str(tests)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    migrations = len(list((tests.parent / "schema").glob("[0-9][0-9][0-9][0-9]_*.sql")))
    assert out["recorded"] == migrations and out["applied"] > migrations  # the migrations, then the views
    assert out["after_migrate"] is False and out["pandas"] is False
    assert (out["spans"], out["changed"]) == (4, 3)  # as test_price_store's reprice, in pages of two spans
    costs = {name: (cost, source) for name, cost, source in out["costs"]}
    assert costs["house"] == ("0.0015", "user")  # 1000 in at 0.5 + 1000 out at 1 per million
    assert costs["mystery"] == ("0.003", "user")  # priced now: 1000 in + 500 out at 2 per million
    assert costs["provided"] == ("0.5", "provided") and costs["early"] == ("0.003", "user")
