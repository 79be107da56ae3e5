"""`tracehouse prompts`: the prompt registry (issue 16), versions of the app's prompt files and of the templates
seen on spans, numbered per name ("answer v7").

tracehouse prompts sync DIR                      register every file of DIR whose content is new
tracehouse prompts list                          every prompt: versions, the latest, labels, calls
tracehouse prompts show NAME [--version N | --label L]
tracehouse prompts diff NAME A B                 a unified diff of two versions (numbers, hashes or labels)
tracehouse prompts label NAME VERSION LABEL      point LABEL at a version (moves are kept: prompt_labels)

Files are read and checked by the app side's own parser (`tracehouse.instrumentation.prompts`): a file that
does not parse, front matter that is not YAML, two files claiming one name stop `sync` with the file and line,
and nothing is written. Front matter `labels` are kept with the version (file_labels); the registry's labels
move only with `prompts label`. Reads go through `query.read_query` (the running collector, else the store); writes go
through the running collector's local endpoint (POST /prompts) when one owns the store, else into the store
under its lock, one insert per command (collector/prompt_registry.py checks the rows either way).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
import uuid
from typing import IO, TYPE_CHECKING, Any

from tracehouse.collector.config import add_flags
from tracehouse.collector.prompt_registry import (
    MAX_TEMPLATE_CHARS,
    RowsRefused,
    check_label,
    check_name,
    check_rows,
    effective_labels,
    labels_sql,
    quote,
    registry_redactor,
)

if TYPE_CHECKING:
    from tracehouse.collector.config import Config


class PromptsFailed(Exception):
    """The command cannot do what was asked; the message says why (and that nothing was written)."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    command = subparsers.add_parser("prompts", help="the prompt registry: sync files, list, show, diff, label")
    sub = command.add_subparsers(dest="prompts_command", required=True, metavar="COMMAND")

    sync = sub.add_parser("sync", help="register every prompt file of DIR whose content is new (idempotent)")
    add_flags(sync, "prompts")
    sync.add_argument("directory", metavar="DIR", help="the app's prompts directory (*.md files)")

    listing = sub.add_parser("list", help="every prompt with its versions, latest version, labels and calls")
    add_flags(listing, "prompts")
    listing.add_argument("--format", default="table", choices=("table", "jsonl"), help="table (default) or jsonl")

    show = sub.add_parser("show", help="one version of a prompt (default: the latest) with its template")
    add_flags(show, "prompts")
    show.add_argument("name", metavar="NAME")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--version", help="the version: its number (7 or v7) or its content hash")
    which.add_argument("--label", help="the version a label points to")
    show.add_argument("--tenant", default="", help="whose label (default: the shared labels)")

    diff = sub.add_parser("diff", help="a unified diff of two versions of a prompt")
    add_flags(diff, "prompts")
    diff.add_argument("name", metavar="NAME")
    diff.add_argument("old", metavar="A", help="a version number (v3 or 3), a content hash or a label")
    diff.add_argument("new", metavar="B", help="a version number, a content hash or a label")

    label = sub.add_parser("label", help="point a label (e.g. production) at a version; the move is audited")
    add_flags(label, "prompts")
    label.add_argument("name", metavar="NAME")
    label.add_argument("version", metavar="VERSION", help="a version number (v3 or 3) or a content hash")
    label.add_argument("label", metavar="LABEL", help="e.g. production, staging")
    label.add_argument("--tenant", default="", help="a tenant's own label (default: shared by every tenant)")
    label.add_argument("--by", default="", help="who moves it (default: the OS user and host)")
    return command


def run(args: argparse.Namespace, config: Config, out: IO[str] = sys.stdout) -> int:
    commands = {"sync": _sync, "list": _list, "show": _show, "diff": _diff, "label": _label}
    try:
        return commands[args.prompts_command](args, config, out)
    except PromptsFailed as exc:
        print(f"tracehouse: prompts {args.prompts_command}: {exc}", file=sys.stderr)
        return 1
    except RowsRefused as exc:  # checked before anything is sent or inserted
        print(f"tracehouse: prompts {args.prompts_command}: {exc}; nothing written", file=sys.stderr)
        return 1


# --- reading --------------------------------------------------------------------------------------------


def _rows(config: Config, sql: str) -> list[dict[str, Any]]:
    from tracehouse.collector.query import QueryFailed, read_rows

    try:
        return read_rows(config, sql)
    except QueryFailed as exc:
        raise PromptsFailed(str(exc)) from None


_VERSION_COLUMNS = """name, toUInt32(version_number) AS number, version, source, template, file, calls,
    toString(first_seen) AS first_seen, toString(last_seen) AS last_seen"""


def _versions(config: Config, name: str) -> list[dict[str, Any]]:
    return _rows(
        config, f"SELECT {_VERSION_COLUMNS} FROM prompt_versions WHERE name = {quote(name)} ORDER BY version_number"
    )


def _labels(config: Config, name: str, tenant: str) -> dict[str, dict[str, Any]]:
    return effective_labels(_rows(config, labels_sql(name, tenant or None)), tenant or None)


def _resolve(config: Config, name: str, ref: str, tenant: str = "", labels_too: bool = True) -> dict[str, Any]:
    """The version `ref` names: a number (7 or v7), a content hash, or (labels_too) a label."""
    versions = _versions(config, name)
    if not versions:
        raise PromptsFailed(f"no prompt {name!r} in the registry (tracehouse prompts list shows them)")
    text = ref.strip()
    number = text[1:] if text[:1] in ("v", "V") and text[1:].isdigit() else text
    if number.isdigit():
        found = [v for v in versions if int(v["number"]) == int(number)]
        if found:
            return found[0]
    found = [v for v in versions if v["version"] == text.lower()]
    if found:
        return found[0]
    if labels_too:
        label = _labels(config, name, tenant).get(text)
        if label is not None:
            found = [v for v in versions if v["version"] == label["version"]]
            if found:
                return found[0]
    latest = int(versions[-1]["number"])
    kinds = "a version number, a content hash or a label" if labels_too else "a version number or a content hash"
    raise PromptsFailed(f"prompt {name!r} has no version {ref!r} (it has v1 to v{latest}; give {kinds})")


def _list(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    rows = _rows(
        config,
        """SELECT name, toUInt32(count()) AS versions, toUInt32(max(version_number)) AS latest,
            argMax(version, version_number) AS latest_version, argMax(source, version_number) AS source,
            toUInt64(sum(calls)) AS calls, toString(max(last_seen)) AS last_seen
        FROM prompt_versions GROUP BY name ORDER BY name""",
    )
    labels = _rows(config, "SELECT name, label, version_number FROM prompt_labels_current WHERE tenant_id = ''")
    by_name: dict[str, list[str]] = {}
    for row in sorted(labels, key=lambda r: r["label"]):
        by_name.setdefault(row["name"], []).append(f"{row['label']}=v{row['version_number']}")
    for row in rows:
        row["labels"] = by_name.get(row["name"], [])
    if args.format == "jsonl":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), file=out)
        return 0
    if not rows:
        print("no prompts in the registry (tracehouse prompts sync DIR registers the app's files)", file=out)
        return 0
    header = ["name", "versions", "latest", "hash", "source", "calls", "last seen", "labels"]
    table = [
        [
            r["name"],
            str(r["versions"]),
            f"v{r['latest']}",
            r["latest_version"],
            r["source"],
            str(r["calls"]),
            str(r["last_seen"])[:19],
            " ".join(r["labels"]) or "-",
        ]
        for r in rows
    ]
    widths = [max(len(header[i]), *(len(t[i]) for t in table)) for i in range(len(header))]
    for cells in [header, *table]:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip(), file=out)
    return 0


def _show(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    name = check_name(args.name)
    if args.label is not None:
        labels = _labels(config, name, args.tenant)
        if args.label not in labels:
            known = ", ".join(sorted(labels)) or "none"
            raise PromptsFailed(f"prompt {name!r} has no label {args.label!r} (its labels: {known})")
        version = _resolve(config, name, labels[args.label]["version"], labels_too=False)
    elif args.version is not None:
        version = _resolve(config, name, args.version, labels_too=False)
    else:
        versions = _versions(config, name)
        if not versions:
            raise PromptsFailed(f"no prompt {name!r} in the registry (tracehouse prompts list shows them)")
        version = versions[-1]
    labels = _labels(config, name, args.tenant)
    pointing = sorted(label for label, row in labels.items() if row["version"] == version["version"])
    history = _rows(
        config,
        "SELECT toString(Timestamp) AS at, TenantId AS tenant, Label AS label, VersionNumber AS number, "
        f"Version AS version, MovedBy AS moved_by FROM prompt_labels WHERE Name = {quote(name)} "
        "ORDER BY Timestamp, LabelId",
    )
    print(f"prompt {name} v{version['number']} ({version['version']})", file=out)
    print(f"  source {version['source']}" + (f"  file {version['file']}" if version["file"] else ""), file=out)
    print(f"  first seen {version['first_seen'][:19]}  calls {version['calls']}", file=out)
    print(f"  labels {', '.join(pointing) or '-'}", file=out)
    if history:
        print("  label moves:", file=out)
        for move in history:
            whose = f" (tenant {move['tenant']})" if move["tenant"] else ""
            print(
                f"    {move['at'][:19]}  {move['label']}{whose} -> v{move['number']} ({move['version']})"
                f"  by {move['moved_by'] or '-'}",
                file=out,
            )
    print("", file=out)
    template = version["template"]
    out.write(template if template.endswith("\n") else template + "\n")
    return 0


def _diff(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    name = check_name(args.name)
    old, new = _resolve(config, name, args.old), _resolve(config, name, args.new)
    lines = difflib.unified_diff(
        old["template"].splitlines(keepends=True),
        new["template"].splitlines(keepends=True),
        fromfile=f"{name} v{old['number']} ({old['version']})",
        tofile=f"{name} v{new['number']} ({new['version']})",
    )
    for line in lines:
        out.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return 0


# --- writing --------------------------------------------------------------------------------------------


def _sync(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    from pathlib import Path

    from tracehouse.instrumentation import prompts as prompt_files

    directory = Path(args.directory)
    if not directory.is_dir():
        raise PromptsFailed(f"{directory}: not a directory; nothing written")
    try:
        prompts = prompt_files.load_directory(directory)
    except prompt_files.PromptError as exc:
        raise PromptsFailed(f"{exc}; nothing written") from None
    if not prompts:
        print(f"no prompt files (*.md) in {directory}", file=out)
        return 0
    for name in prompts:
        check_name(name)
    _prepare_store(config)
    names = ", ".join(quote(name) for name in sorted(prompts))
    synced = f"SELECT DISTINCT Name, Version FROM prompts WHERE TenantId = '' AND Name IN ({names})"
    known = {(row["Name"], row["Version"]) for row in _rows(config, synced)}
    now = time.time_ns()
    by = _default_user()
    rows = []
    for name, prompt in sorted(prompts.items()):
        if (name, prompt.version) in known:
            continue
        assert prompt.path is not None
        text = prompt_files.normalize(prompt.path.read_text(encoding="utf-8"))
        if len(text) > MAX_TEMPLATE_CHARS:
            raise PromptsFailed(f"{prompt.path}: larger than {MAX_TEMPLATE_CHARS} characters; nothing written")
        rows.append(
            {
                "TenantId": "",
                "Name": name,
                "Version": prompt.version,
                "Template": text,
                "Body": prompt.template,
                "FrontMatter": json.dumps(prompt.metadata, ensure_ascii=False, sort_keys=True, default=str),
                "Labels": list(prompt.labels),
                "File": str(prompt.path),
                "Source": "sync",
                "SyncedBy": by,
                "FirstSeen": now,
            }
        )
    redactor = registry_redactor(config)
    for row in rows:  # one at a time, to name the file of a refused one
        try:
            check_rows("prompts", [row], redactor)
        except RowsRefused as exc:
            raise PromptsFailed(f"{row['File']}: {str(exc).removeprefix('rows[0].')}; nothing written") from None
    route = _write(config, "prompts", rows) if rows else None
    added = {row["Name"] for row in rows}
    numbers = {
        (row["name"], row["version"]): row["number"]
        for row in _rows(
            config,
            f"SELECT name, version, toUInt32(version_number) AS number FROM prompt_versions WHERE name IN ({names})",
        )
    }
    for name, prompt in sorted(prompts.items()):
        number = numbers.get((name, prompt.version))
        shown = f"v{number}" if number is not None else "v?"
        state = "added" if name in added else "unchanged"
        print(f"{name}: {shown} ({prompt.version}) {state}  {prompt.path}", file=out)
    summary = f"{len(rows)} added, {len(prompts) - len(rows)} unchanged"
    print(summary + (f" (recorded through {route})" if route else ""), file=out)
    return 0


def _label(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    name = check_name(args.name)
    label = check_label(args.label)
    _prepare_store(config)
    try:
        version = _resolve(config, name, args.version, labels_too=False)
    except PromptsFailed as exc:
        raise PromptsFailed(f"{exc}; nothing written") from None
    before = _labels(config, name, args.tenant).get(label)
    row = {
        "Timestamp": time.time_ns(),
        "TenantId": args.tenant,
        "Name": name,
        "Label": label,
        "Version": version["version"],
        "VersionNumber": int(version["number"]),
        "MovedBy": args.by or _default_user(),
        "LabelId": uuid.uuid4().hex,
    }
    route = _write(config, "prompt_labels", [row])
    was = f" (was v{before['version_number']})" if before is not None and before["tenant_id"] == args.tenant else ""
    whose = f" for tenant {args.tenant}" if args.tenant else ""
    print(
        f"{name}: {label}{whose} -> v{version['number']} ({version['version']}){was} (recorded through {route})",
        file=out,
    )
    return 0


def _default_user() -> str:
    from tracehouse.collector.forget import default_requester

    return default_requester()


def _collector(config: Config) -> dict | None:
    """The running collector that owns this data dir (its endpoints), or None."""
    from tracehouse.collector.runtime import read_runtime_info

    info = read_runtime_info(config) if config.is_embedded else None
    return info if info is not None and info.get("query_url") else None


def _prepare_store(config: Config) -> None:
    """Without a running collector, bring the store's schema up to date first (a store made before the
    registry has no prompt tables to read); a running collector did that at its start."""
    from tracehouse.collector.runtime import StoreBusy, migrated_store

    if _collector(config) is not None:
        return
    try:
        with migrated_store(config):
            pass
    except StoreBusy as exc:
        raise PromptsFailed(f"{exc}; and no collector answers on its endpoint; nothing written") from None


def _write(config: Config, table: str, rows: list[dict[str, Any]]) -> str:
    """Insert rows through the collector that owns the store, else into the store; where they went."""
    from tracehouse.collector.prompt_registry import ROUTE_PATH
    from tracehouse.collector.runtime import CollectorRefused, post_to_collector

    values = check_rows(table, rows, registry_redactor(config))  # the route checks them again
    info = _collector(config)
    if info is not None:
        body = json.dumps({"table": table, "rows": rows}, ensure_ascii=False).encode()
        try:
            answer = post_to_collector(info, ROUTE_PATH, body, 60)
        except CollectorRefused as exc:
            raise PromptsFailed(f"{exc}; nothing written") from None
        if answer is not None:
            return "the collector"
    _write_to_store(config, table, values)
    return "the store"


def _write_to_store(config: Config, table: str, values: list[list[Any]]) -> None:
    from tracehouse.collector.prompt_registry import insert_rows
    from tracehouse.collector.runtime import StoreBusy, migrated_store

    try:
        with migrated_store(config) as client:
            insert_rows(client, table, values)
    except StoreBusy as exc:
        raise PromptsFailed(f"{exc}; and no collector answers on its endpoint; nothing written") from None
