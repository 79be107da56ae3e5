"""The collector's memory settings (issue 19). The embedded engine's (store.ENGINE_MERGE_TREE, ENGINE_JEMALLOC) are
the ones the real engine runs with, read back through the collector's own client path (store.connect) in a fresh
process (chDB takes its options and its allocator's once per process), with the data dir plain and encrypted
(chDB takes one config file: ours is merged into the encryption's). And chDB loads without pyarrow."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tracehouse.collector import store

pytestmark = pytest.mark.timeout(180)

_READ_BACK = """
import json, sys
from tracehouse.collector import store
from tracehouse.collector.config import load_config
config = load_config(sys.argv[2] or None, {"data_dir": sys.argv[1]})
store.use_encryption(config.data_dir, config.encryption, True)
client = store.connect(config.store_url)
rows = client.query("SELECT name, value, changed FROM system.merge_tree_settings").result_rows
print(json.dumps({name: [value, changed] for name, value, changed in rows}))
"""


def _fresh(code: str, *args: str) -> str:
    """The last line `code` prints in a fresh interpreter, without a JE_MALLOC_CONF of the caller's."""
    env = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def _engine_merge_tree(data_dir: Path, config: Path | None = None) -> dict[str, list]:
    return json.loads(_fresh(_READ_BACK, str(data_dir), str(config or "")))


def test_the_embedded_store_merges_vertically(tmp_path):
    settings = _engine_merge_tree(tmp_path / "data")
    assert store.ENGINE_MERGE_TREE  # the settings this test guards
    for name, value in store.ENGINE_MERGE_TREE.items():
        assert settings[name] == [value, 1], name
    # And again on the store as it is now on disk (its engine config already written).
    assert _engine_merge_tree(tmp_path / "data")["vertical_merge_algorithm_min_rows_to_activate"] == ["1", 1]


def test_an_encrypted_store_keeps_both_its_disk_policy_and_the_memory_settings(tmp_path):
    key_file = tmp_path / "keys" / "tracehouse.key"
    key_file.parent.mkdir()
    key_file.write_text(secrets.token_hex(32) + "\n")
    config = tmp_path / "tracehouse.toml"
    config.write_text(f'[encryption]\nkey_file = "{key_file}"\n')
    settings = _engine_merge_tree(tmp_path / "data", config)
    for name, value in store.ENGINE_MERGE_TREE.items():
        assert settings[name] == [value, 1], name
    from tracehouse.collector.encryption import STORAGE_POLICY

    assert settings["storage_policy"] == [STORAGE_POLICY, 1]


_JEMALLOC = """
import re, sys
from tracehouse.collector import store
client = store.connect("chdb://" + sys.argv[1])
stats = client.query("SELECT stats FROM system.jemalloc_stats").result_rows[0][0]
print(re.search(r"opt.dirty_decay_ms: (-?\\d+)", stats).group(1))
"""


def test_the_engine_allocator_returns_freed_pages_after_a_second(tmp_path):
    assert store.ENGINE_JEMALLOC == "dirty_decay_ms:1000"
    assert _fresh(_JEMALLOC, str(tmp_path / "store")) == "1000"  # chDB's own default is 5000


_IMPORTS = """
import sys
from tracehouse.collector import store
client = store.connect("chdb://" + sys.argv[1])
assert store.migrate(client)  # a new store: every migration and view recorded
assert client.query("SELECT 41 + 1").result_rows == [(42,)]
loaded = sorted(m for m in ("pyarrow", "numpy", "pandas") if m in sys.modules)
import pyarrow  # still there for whoever wants it
print(",".join(loaded) or "none")
"""


def test_the_store_opens_and_migrates_without_pandas_pyarrow_and_numpy(tmp_path):
    assert _fresh(_IMPORTS, str(tmp_path / "store")) == "none"
