"""The collector's structure, as a test: data flows one way, and imports follow it.

    OTLP -> receivers -> pipeline -> processing (parse, decode, stages, encode) -> spool / writer -> store

Every module under collector/ belongs to one layer of LAYERS (lowest first). A module imports modules
of its own layer or of a layer below it, never of one above; a stage imports only its own stage, the
batch contract and the shared pure helpers; and no modules import each other in a circle.

Imports are read from the source (ast), nothing is imported: module-level and function-level imports
alike. `if TYPE_CHECKING:` imports count for the layer rules (naming a type is knowing about it), not
for cycles (they never run).
"""

from __future__ import annotations

import ast
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "collector"
PACKAGE = "tracehouse.collector"


@dataclass(frozen=True)
class Layer:
    name: str
    owns: str
    paths: tuple[str, ...]  # under collector/: a module, or a folder ("stages/") for everything in it


# Lowest first: a layer may use the layers listed before it, never those after it.
LAYERS: tuple[Layer, ...] = (
    Layer(
        "shared",
        "contracts and helpers every layer may use: the SpanBatch and the column names stages exchange, "
        "the error vocabulary, the config section machinery, rate-limited logs, metrics, the encryption keys "
        "and record sealing the storage layer and the config share, SQL text split without a parser",
        (
            "__init__.py",
            "batch.py",
            "columns.py",
            "errors.py",
            "settings.py",
            "logs.py",
            "metrics.py",
            "encryption.py",
            "sql_text.py",
        ),
    ),
    Layer(
        "stages",
        "pure functions over a SpanBatch, in order: decode (with OTLP parsing), normalize, price, sample, redact",
        ("stages/",),
    ),
    Layer(
        "processing",
        "the CPU part of a request (parse, decode, stages, encode rows) and the worker processes that run it; "
        "the same for scores and reviews (check, redact, encode)",
        ("processing.py", "workers.py", "scores.py", "reviews.py"),
    ),
    Layer(
        "storage",
        "the durable spool, the writer (drainer, direct writer) and the one ClickHouse client with its migrations "
        "and the retention TTLs it applies",
        ("spool.py", "writer.py", "store.py", "retention.py"),
    ),
    Layer(
        "pipeline",
        "one request from receiver to durable: processing, then spool or writer, then the acknowledgement",
        ("pipeline.py",),
    ),
    Layer("auth", "API keys -> tenants", ("auth.py",)),
    Layer(
        "config",
        "the one configuration surface, composed of the sections their owners parse (auth, the stages)",
        ("config.py",),
    ),
    Layer(
        "receivers",
        "OTLP/gRPC and OTLP/HTTP, and the one translation of pipeline errors into wire statuses; the prompt "
        "registry's rows and its read API (GET /v1/prompts/NAME)",
        ("receivers/", "prompt_registry.py"),
    ),
    Layer(
        "data dir and queries",
        "what a collector keeps in its data dir (private files, the store lock, collector.json) and the "
        "read-only SQL surface with its client, the ClickHouse wire formats it speaks (Native, compressed blocks) "
        "and the per-table filters of a tenant's read key",
        ("files.py", "runtime.py", "query.py", "clickhouse_native.py", "clickhouse_compressed.py", "tenant_reads.py"),
    ),
    Layer(
        "erasure",
        "`tracehouse forget`: a subject's rows out of every table and the spool, as a route of the collector's "
        "query endpoint or on the store itself",
        ("forget.py",),
    ),
    Layer("service", "assembles a running collector from all of the above", ("service.py",)),
    Layer(
        "commands",
        "the `tracehouse` command: serve, migrate, sql, prices (and the repricing it runs on the store), report "
        "(the dashboards' panels as one HTML file, their SQL expanded as Grafana's ClickHouse plugin does)",
        (
            "__main__.py",
            "cli.py",
            "prices_cli.py",
            "reprice.py",
            "report.py",
            "grafana_macros.py",
            "retention_cli.py",
            "review_cli.py",
            "replay.py",
            "prompts_cli.py",
            "export_cli.py",
        ),
    ),
)

# What a stage may import besides its own stage (stages/<name>.py, or everything in stages/<name>/): the
# batch contract (SpanBatch, the column names stages exchange), the error vocabulary, the config section
# machinery (settings: each stage parses its own section), logging, and the `Stage` type of
# stages/__init__.py. The stage list (stages/__init__.py) imports every stage. Not metrics, files or
# anything doing I/O. Config sits above the stages (it is composed of their sections): a stage's
# build(config) names it in type hints only.
STAGE_CONTRACTS = ("batch", "columns", "errors", "settings", "logs", "stages")
# Config is handed down to every part's build / from_config: any layer may name its type (under
# TYPE_CHECKING); importing it at run time is for the layers above it.
TYPE_ONLY_ANYWHERE = ("config",)
# Only the receivers speak the wire: gRPC codes, google.rpc.Status, RetryInfo.
WIRE_LIBRARIES = ("grpc", "google.rpc")

# Imports against the rules that are on their way out, with where they go. The test fails once one is
# gone, so this list only shrinks.
# Keys are (importing module, imported module) without the `tracehouse.collector.` prefix.
PENDING: dict[tuple[str, str], str] = {}


# --- reading the source ------------------------------------------------------------------------


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _short(module: str) -> str:
    return module.removeprefix(PACKAGE).removeprefix(".") or "(collector/__init__.py)"


MODULES: dict[str, Path] = {_name(path): path for path in sorted(ROOT.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    source: str
    target: str  # a collector module, or for an outside library its name as written
    line: int
    type_only: bool

    @property
    def where(self) -> str:
        return f"collector/{MODULES[self.source].relative_to(ROOT)}:{self.line}"

    def __str__(self) -> str:
        kind = " (type only)" if self.type_only else ""
        return f"{self.where} imports {self.target}{kind}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in `node`, at any depth (functions, classes, try, if), with whether it
    sits under `if TYPE_CHECKING:`."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, type_only
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.body:
            yield from _statements(child, True)
        for child in node.orelse:
            yield from _statements(child, type_only)
        return
    for child in ast.iter_child_nodes(node):
        yield from _statements(child, type_only)


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports_of(module: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    for node, type_only in _statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, type_only)
            continue
        base = _absolute(module, node)
        for alias in node.names:
            # `from package import module` imports the module; `from module import name`, the module.
            submodule = f"{base}.{alias.name}"
            yield Import(module, submodule if submodule in MODULES else base, node.lineno, type_only)


IMPORTS: list[Import] = list(dict.fromkeys(imp for module in MODULES for imp in _imports_of(module)))
INTERNAL: list[Import] = [imp for imp in IMPORTS if imp.target == PACKAGE or imp.target.startswith(PACKAGE + ".")]


def _path_of(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT))


def layer_of(module: str) -> Layer:
    path = _path_of(module)
    found = [layer for layer in LAYERS for entry in layer.paths if path == entry or path.startswith(entry)]
    assert len(found) == 1, f"collector/{path} needs exactly one layer in LAYERS (tests/test_architecture.py)"
    return found[0]


def _rank(module: str) -> int:
    return LAYERS.index(layer_of(module))


def _stage_of(module: str) -> str | None:
    """The stage a module belongs to (`stages.redact`, `stages.sample`), None outside stages/ and for the
    stage list (stages/__init__.py) itself."""
    parts = _path_of(module).removesuffix(".py").split("/")
    if parts[0] != "stages" or parts == ["stages", "__init__"]:
        return None
    return f"{PACKAGE}.stages.{parts[1]}"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# --- the rules ---------------------------------------------------------------------------------


def test_every_module_has_a_layer():
    unassigned = []
    for module in MODULES:
        try:
            layer_of(module)
        except AssertionError as exc:
            unassigned.append(str(exc))
    assert not unassigned, "\n".join(unassigned)


def test_every_collector_import_names_a_module():
    missing = [str(imp) for imp in INTERNAL if imp.target not in MODULES]
    assert not missing, "imports of collector modules that do not exist:\n" + "\n".join(missing)


def _pending(imp: Import) -> bool:
    return (_short(imp.source), _short(imp.target)) in PENDING


def test_imports_never_go_to_a_higher_layer():
    against = []
    for imp in INTERNAL:
        if imp.target not in MODULES or _pending(imp):
            continue
        if imp.type_only and _short(imp.target) in TYPE_ONLY_ANYWHERE:
            continue
        source, target = layer_of(imp.source), layer_of(imp.target)
        if LAYERS.index(target) > LAYERS.index(source):
            against.append(f"{imp}: the {source.name} layer may not import from {target.name}, a layer above it")
    assert not against, "imports against the flow (see LAYERS):\n" + "\n".join(against)


def test_stages_import_only_their_own_stage_and_the_shared_contracts():
    allowed = {f"{PACKAGE}.{name}" for name in STAGE_CONTRACTS}
    outside = []
    for imp in INTERNAL:
        stage = _stage_of(imp.source)
        if stage is None or _within(imp.target, stage) or imp.target in allowed or _pending(imp):
            continue
        if imp.type_only and _short(imp.target) in TYPE_ONLY_ANYWHERE:
            continue
        outside.append(
            f"{imp}: a stage imports only its own stage ({_short(stage)}), "
            f"{', '.join(STAGE_CONTRACTS)}, and Config in type hints"
        )
    assert not outside, "\n".join(outside)


def test_only_the_receivers_speak_the_wire():
    speaking = [
        f"{imp}: gRPC codes and google.rpc statuses belong to receivers/ (pipeline errors: collector/errors.py)"
        for imp in IMPORTS
        if any(_within(imp.target, library) for library in WIRE_LIBRARIES)
        and not _path_of(imp.source).startswith("receivers/")
    ]
    assert not speaking, "\n".join(speaking)


def _cycles() -> list[list[Import]]:
    """Groups of modules that import each other in a circle (strongly connected components of the imports
    that run), each as the imports between its modules."""
    edges: dict[str, list[Import]] = {module: [] for module in MODULES}
    for imp in INTERNAL:
        if not imp.type_only and imp.target in MODULES and imp.target != imp.source:
            edges[imp.source].append(imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[Import]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for imp in edges[module]:
            if imp.target not in index:
                visit(imp.target)
                low[module] = min(low[module], low[imp.target])
            elif imp.target in stack:
                low[module] = min(low[module], index[imp.target])
        if low[module] == index[module]:
            members = set()
            while True:
                member = stack.pop()
                members.add(member)
                if member == module:
                    break
            if len(members) > 1:
                groups.append([imp for m in sorted(members) for imp in edges[m] if imp.target in members])

    for module in MODULES:
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "modules importing each other in a circle:\n" + "\n\n".join(
        "\n".join(str(imp) for imp in group) for group in cycles
    )


def test_pending_exceptions_still_exist():
    """An allowance whose import is gone must go too: the exceptions only shrink."""
    present = {(_short(imp.source), _short(imp.target)) for imp in INTERNAL}
    gone = [f"{source} -> {target}" for source, target in PENDING if (source, target) not in present]
    assert not gone, "remove from PENDING, the import is gone: " + ", ".join(gone)


def test_the_rules_catch_what_they_should():
    """The checks themselves: a stage reaching into the pipeline, a layer importing upwards, a cycle."""
    stage = f"{PACKAGE}.stages.sample"
    upward = Import(stage, f"{PACKAGE}.pipeline", 1, False)
    assert LAYERS.index(layer_of(upward.target)) > LAYERS.index(layer_of(upward.source))
    assert _stage_of(stage) == stage and not _within(f"{PACKAGE}.stages.redact", stage)
    assert _stage_of(f"{PACKAGE}.stages") is None  # the stage list may import every stage
    assert _stage_of(f"{PACKAGE}.stages.redact.columns") == f"{PACKAGE}.stages.redact"
    # function-level and TYPE_CHECKING imports are read, and told apart
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\ndef f():\n    import b\n"
        "class C:\n    def g(self):\n        from c import d\n"
    )
    found = {(node.names[0].name, type_only) for node, type_only in _statements(ast.parse(source))}
    assert {("a", True), ("b", False), ("d", False)} <= found


# --- the error vocabulary, translated once ----------------------------------------------------------


def test_every_pipeline_error_has_its_wire_status():
    """What each kind of refusal becomes on the wire (the OTLP specification's status codes)."""
    import grpc

    from tracehouse.collector import errors
    from tracehouse.collector.receivers.otlp import wire_error

    expected = {
        errors.Retryable: (grpc.StatusCode.UNAVAILABLE, 503, 7),
        errors.Permanent: (grpc.StatusCode.INVALID_ARGUMENT, 400, None),
        errors.Invalid: (grpc.StatusCode.INVALID_ARGUMENT, 400, None),
        errors.TooLarge: (grpc.StatusCode.RESOURCE_EXHAUSTED, 413, None),
        errors.Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, 401, None),
    }
    kinds = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.PipelineError) and value is not errors.PipelineError
    }
    assert kinds == set(expected), "a new kind of pipeline error needs its wire status in receivers/otlp.py"
    for kind, (code, status, retry_after) in expected.items():
        error = kind(100) if kind is errors.TooLarge else kind("why", 7) if kind is errors.Retryable else kind("why")
        wire = wire_error(error)
        assert (wire.grpc_code, wire.http_status, wire.retry_after_seconds) == (code, status, retry_after), kind
        assert wire.message == error.message


@pytest.mark.parametrize("make", ["retryable", "too_large", "invalid"])
def test_pipeline_errors_cross_the_worker_boundary_whole(make):
    """Worker processes raise them; they come back pickled, retry delay and message intact."""
    from tracehouse.collector import errors

    error = {
        "retryable": lambda: errors.Retryable("spool is full", retry_after_seconds=5),
        "too_large": lambda: errors.TooLarge(4096),
        "invalid": lambda: errors.Invalid("not protobuf"),
    }[make]()
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and vars(back) == vars(error) and str(back) == str(error)
