"""The wheel is complete: built, installed into a fresh virtual environment, it runs the CLI and a migration."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist, and the wheel built from that sdist, as a release build makes them (`python -m build`)."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    return out


def test_the_release_build_is_complete_and_its_metadata_valid(dist):
    (sdist,) = dist.glob("tracehouse-*.tar.gz")
    check = _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert check.count("PASSED") == 2, check
    with tarfile.open(sdist) as archive:
        packed = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    # The wheel is built from the sdist: what the sdist lacks, an install from it lacks too.
    shipped = [
        *ROOT.glob("schema/**/*.sql"),
        ROOT / "schema/views/order.txt",
        *ROOT.glob("dashboards/*.json"),
        *ROOT.glob("collector/report_assets/*"),
    ]
    missing = [str(path.relative_to(ROOT)) for path in shipped if str(path.relative_to(ROOT)) not in packed]
    assert missing == []
    (wheel,) = dist.glob("tracehouse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"tracehouse/schema/views/{p.name}" for p in ROOT.glob("schema/views/*")} <= names


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path, dist):
    (wheel,) = dist.glob("tracehouse-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert "tracehouse/schema/0001_otel_traces.sql" in names
    assert "tracehouse/collector/cli.py" in names
    assert "tracehouse/instrumentation/__init__.py" in names
    assert not any(n.startswith("tests/") for n in names)
    # The plain install is the app side only; server pieces come with the `collector` extra.
    plain = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert any("opentelemetry-sdk" in line for line in plain)
    for server_side in ("grpcio", "chdb", "clickhouse-connect", "aiohttp"):
        assert not any(server_side in line for line in plain), server_side
        assert any(server_side in line and 'extra == "collector"' in line for line in metadata.splitlines())

    fresh = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(fresh)
    _run(fresh / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel)
    # Dependencies come from the development environment, read-only, so the test needs no network;
    # tracehouse itself must come from the wheel.
    site = Path(
        subprocess.check_output(
            [fresh / "bin" / "python", "-c", "import site; print(site.getsitepackages()[0])"], text=True
        ).strip()
    )
    (site / "dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = _run(fresh / "bin" / "python", "-c", "import tracehouse.collector as c; print(c.__file__)", cwd=tmp_path)
    assert where.strip().startswith(str(site))
    assert "serve" in _run(fresh / "bin" / "tracehouse", "--help", cwd=tmp_path)
    out = _run(fresh / "bin" / "tracehouse", "migrate", "--data-dir", tmp_path / "store", cwd=tmp_path)
    assert "0001_otel_traces.sql" in out
    assert "up to date" in _run(fresh / "bin" / "tracehouse", "migrate", "--data-dir", tmp_path / "store", cwd=tmp_path)
