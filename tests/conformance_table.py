"""Print the conformance suite's differential view (instrumentation x llm_calls field) as markdown.

    .venv/bin/python tests/conformance_table.py [--readme]

Runs the same cases as tests/test_conformance.py (a collector, the fake providers, one app per
instrumentation) in a temporary directory and prints the table; with --readme, wrapped in the markers the
README keeps it between (tests/test_conformance.py checks the README's copy against a fresh run). Writes
nothing itself.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_conformance import TABLE_END, TABLE_START, markdown_table, run_suite  # noqa: E402


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="tracehouse-conformance-") as work_dir:
        suite = run_suite(Path(work_dir))
    table = markdown_table(suite)
    print(f"{TABLE_START}\n{table}{TABLE_END}" if "--readme" in argv else table, end="")
    for name, why in suite.failures.items():
        print(f"{name} did not run:\n{why}", file=sys.stderr)
    return 1 if suite.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
