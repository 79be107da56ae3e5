"""`tracehouse export`: stored calls (or traces) to a file that eval and fine-tuning tools read.

tracehouse export [--where CONDITION] [--since 7d] [--limit N] [--traces]
                  --format jsonl|csv|parquet|openai-chat|openai-eval --out FILE
                  [--sample N [--stratify-by feature,model] [--seed S]]
                  [--only-reviewed approved|flagged|rejected] [--exclude-redacted]

Reads go through `query.read_query` (the running collector's endpoint, else the store itself), so the
read-only guard checks every query, the condition included: it is first run alone, last in a count query,
where the guard refuses what it refuses (a file(), a system table); then it must be one condition (no
comment, no `;`, parentheses balanced outside string literals), so it cannot change the query around it.

Rows stream page by page below a snapshot of the newest key (ts, id) (start, trace_id for traces) taken at
the start: one query cuts the rows into pages (PAGE_BYTES of content or --page-rows rows, whichever comes
first, each page its last key), then one read per page between its keys. A million calls never sit in
memory, and calls landing meanwhile do not shift pages. jsonl and csv are ClickHouse's JSONEachRow and
CSVWithNames; parquet is one query (one valid file; the query limits bind it, --query-max-result-rows and
--query-max-result-bytes raise them when no collector runs). openai-chat writes one {"messages": [...]}
line per call, openai-eval the input messages with the reference answer ("ideal") and metadata. The file
is written beside FILE and renamed into place once complete: a failed or cancelled export leaves no half
file.

Redacted text stays as stored (its placeholders); --exclude-redacted leaves out calls that carry any.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tracehouse.collector.config import add_flags

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

FORMATS = ("jsonl", "csv", "parquet", "openai-chat", "openai-eval")
# The formats ClickHouse writes itself; the openai ones are built here from JSONEachRow pages.
CLICKHOUSE_FORMATS = {"jsonl": "JSONEachRow", "csv": "CSVWithNames", "parquet": "Parquet"}
OPENAI_FORMATS = ("openai-chat", "openai-eval")
REVIEW_STATES = ("approved", "flagged", "rejected")
DEFAULT_PAGE_ROWS = 50_000
# A page also ends once its content (messages, response, ...) passes this many bytes, so that a page of
# long conversations stays well inside a read's result limit (query_max_result_bytes, 256 MiB by default).
PAGE_BYTES = 48 << 20
CONTENT_BYTES = (
    "512 + length(system_prompt) + length(messages) + length(tools) + length(response) + length(tool_calls)"
    " + length(prompt_template) + length(prompt_variables) + length(invocation_parameters)"
)
MAX_STRATA = 1_000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"")
_COMMENT_OR_END = re.compile(r"--|/\*|\*/|#|;")


class ExportFailed(Exception):
    """The export cannot run as asked; the message names the flag and what to do."""


@dataclass(frozen=True)
class Source:
    """What one output row is: a view, its time column and its id (the keyset is (time, id))."""

    table: str
    ts: str
    id: str
    noun: str

    @property
    def key(self) -> str:
        return f"(toUnixTimestamp64Nano({self.ts}), {self.id})"

    def bound(self, op: str, key: list[Any]) -> str:
        """The keyset condition `key op (ts, id)`, with the time bound alone beside it: that one ClickHouse
        can use to skip partitions and granules (the table is ordered and partitioned by time)."""
        time_op = op.rstrip("=") + "="  # > and >= both keep ts >= the key's time, < and <= ts <=
        at = f"fromUnixTimestamp64Nano(toInt64({int(key[0])}))"
        return f"{self.ts} {time_op} {at} AND {self.key} {op} {_key_literal(key)}"


CALLS = Source("llm_calls", "ts", "id", "calls")
SCORED_CALLS = Source("llm_calls_scored", "ts", "id", "calls")
TRACES = Source("traces", "start", "trace_id", "traces")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    command = subparsers.add_parser(
        "export", help="export calls (or traces) to jsonl, csv, parquet or OpenAI chat/eval datasets"
    )
    add_flags(command, "export")
    command.add_argument("--where", default="1", help="SQL condition over llm_calls (or traces); default all")
    command.add_argument("--since", default="7d", help="rows at or after: a date, date-time or 7d, 24h (default 7d)")
    command.add_argument("--limit", type=int, help="at most this many rows, the newest (after --sample)")
    command.add_argument("--traces", action="store_true", help="export the traces view, one row per trace")
    # Required, but checked in `run` rather than by argparse, so `--format parquet` alone parses (the README
    # shows flags on their own, and tests/test_readme_commands.py parses each).
    command.add_argument("--format", choices=FORMATS, help="the file's format (required)")
    command.add_argument("--out", metavar="FILE", help="the file to write, replaced once complete (required)")
    command.add_argument("--sample", type=int, metavar="N", help="a reproducible sample of N rows")
    command.add_argument(
        "--stratify-by",
        default="",
        metavar="COLUMNS",
        help="with --sample: columns whose value combinations keep their share, e.g. feature,model",
    )
    command.add_argument("--seed", type=int, default=0, help="with --sample: the seed (same seed, same sample)")
    command.add_argument(
        "--only-reviewed",
        choices=REVIEW_STATES,
        metavar="STATE",
        help="only calls whose latest review is STATE (approved, flagged, rejected); reads llm_calls_scored",
    )
    command.add_argument(
        "--exclude-redacted",
        action="store_true",
        help="leave out calls in which the redactor replaced anything (by default they are exported, redacted)",
    )
    command.add_argument(
        "--page-rows",
        type=int,
        default=DEFAULT_PAGE_ROWS,
        help=f"rows per read (default {DEFAULT_PAGE_ROWS}); lower it for very large rows",
    )
    return command


def run(args: argparse.Namespace, config: Config, err: IO[str] = sys.stderr) -> int:
    from tracehouse.collector.query import QueryCancelled

    missing = [flag for flag, value in (("--format", args.format), ("--out", args.out)) if not value]
    if missing:
        needed = ", ".join(missing)
        print(
            f"tracehouse export: the following arguments are required: {needed} (see tracehouse export --help)",
            file=err,
        )
        return 2
    progress = Progress(err, "traces" if args.traces else "calls")
    try:
        plan = plan_export(args, config)
        written, skipped = write_export(plan, config, Path(args.out), progress)
    except ExportFailed as exc:
        progress.clear()
        print(f"tracehouse export: {exc}", file=err)
        return 1
    except (QueryCancelled, KeyboardInterrupt):
        progress.clear()
        print("tracehouse export: cancelled, nothing written", file=err)
        return 130
    progress.clear()
    note = f" (skipped {skipped} with no stored messages or response)" if skipped else ""
    print(f"exported {written} {plan.source.noun} to {args.out}{note}", file=err)
    return 0


# --- the plan: which rows, in which order ------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    source: Source
    format: str
    rows_sql: str  # every row to export (any order), below the snapshot key
    pages: list[Page]

    @property
    def total(self) -> int:
        return sum(page.rows for page in self.pages)


@dataclass(frozen=True)
class Page:
    rows: int
    last: list[Any]  # the key of the page's last row: [ts in ns, id]


def _quote(value: str) -> str:
    from tracehouse.collector.query import string_literal

    return string_literal(value)


def _key_literal(key: list[Any]) -> str:
    return f"({int(key[0])}, {_quote(str(key[1]))})"


def _rows(config: Config, sql: str, what: str) -> list[dict[str, Any]]:
    from tracehouse.collector.query import NoStore, QueryFailed, read_rows

    try:
        return read_rows(config, sql)
    except NoStore as exc:
        raise ExportFailed(str(exc)) from None
    except QueryFailed as exc:
        raise ExportFailed(f"{what}: {exc}") from None


def check_condition(condition: str) -> None:
    """One condition over a row: outside string literals no comment, no `;`, parentheses balanced, so it
    cannot close the WHERE around it or hide what follows."""
    code = _QUOTED.sub("''", condition)
    if code.count("'") % 2 or code.count('"') % 2 or code.count("`") % 2:
        raise ExportFailed(f"--where: an unterminated quote in {condition!r}")
    found = _COMMENT_OR_END.search(code)
    if found:
        raise ExportFailed(f"--where: one condition, without comments or ';' (found {found.group()!r})")
    depth = 0
    for char in code:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise ExportFailed("--where: one condition, with balanced parentheses (it cannot close the query's own)")


def _filters(args: argparse.Namespace, source: Source) -> list[str]:
    from tracehouse.collector.prices_cli import parse_when

    try:
        since = parse_when(args.since)
    except ValueError as exc:
        raise ExportFailed(f"--since: {exc}") from None
    filters = [f"{source.ts} >= parseDateTime64BestEffort({_quote(since.isoformat())}, 9)"]
    if args.only_reviewed:
        filters.append(f"review_state = {_quote(args.only_reviewed)}")
    if args.exclude_redacted:
        if source is TRACES:
            filters.append("trace_id NOT IN (SELECT trace_id FROM llm_calls WHERE notEmpty(redaction_counts))")
        else:
            filters.append("empty(redaction_counts)")
    return filters


def _check_args(args: argparse.Namespace) -> None:
    if args.traces and args.format in OPENAI_FORMATS:
        raise ExportFailed(
            f"--format {args.format} writes calls' messages: not with --traces (use jsonl, csv or parquet)"
        )
    if args.traces and args.only_reviewed:
        raise ExportFailed("--only-reviewed selects reviewed calls: not with --traces")
    if args.limit is not None and args.limit < 1:
        raise ExportFailed(f"--limit {args.limit}: at least 1")
    if args.sample is not None and args.sample < 1:
        raise ExportFailed(f"--sample {args.sample}: at least 1")
    if args.sample is None and (args.stratify_by or args.seed):
        raise ExportFailed("--stratify-by and --seed shape a sample: add --sample N")
    if not 1 <= args.page_rows <= 1_000_000:
        raise ExportFailed(f"--page-rows {args.page_rows}: between 1 and 1000000")
    if not args.where.strip():
        raise ExportFailed("--where: an empty condition (leave the flag out to export every row)")


def _strata_columns(text: str) -> list[str]:
    columns = [name.strip() for name in text.split(",") if name.strip()]
    for name in columns:
        if not _IDENTIFIER.fullmatch(name):
            raise ExportFailed(f"--stratify-by: {name!r} is not a column name (e.g. feature,model)")
    return columns


def plan_export(args: argparse.Namespace, config: Config) -> Plan:
    """The rows to export as one SQL set, below a snapshot of the newest key, with their count."""
    _check_args(args)
    strata = _strata_columns(args.stratify_by)
    if args.traces:
        source = TRACES
    elif args.only_reviewed or args.format == "openai-eval":
        source = SCORED_CALLS  # review_state, and the scores the eval metadata carries
    else:
        source = CALLS
    filters = " AND ".join(_filters(args, source))
    # The condition last: whatever it tries to add after it is part of the query the guard checks.
    probe = f"SELECT count() AS n, max({source.key}) AS last FROM {source.table} WHERE {filters} AND ({args.where})"
    found = _rows(config, probe, "--where")[0]
    check_condition(args.where)
    snapshot = source.bound("<=", found["last"])
    base = f"SELECT * FROM {source.table} WHERE {filters} AND ({args.where}) AND {snapshot}"
    if not int(found["n"]):
        base += " AND 0"
    rows_sql = base
    if args.sample is not None:
        rows_sql = _sample_sql(config, base, source, strata, args.sample, args.seed)
    if args.limit is not None:
        newest = _rows(
            config,
            f"SELECT {source.key} AS k FROM ({rows_sql}) ORDER BY {source.ts} DESC, {source.id} DESC"
            f" LIMIT 1 OFFSET {args.limit - 1}",
            "--limit",
        )
        if newest:
            rows_sql = f"SELECT * FROM ({rows_sql}) WHERE {source.bound('>=', newest[0]['k'])}"
    return Plan(source, args.format, rows_sql, _pages(config, source, rows_sql, args.page_rows))


def _pages(config: Config, source: Source, rows_sql: str, page_rows: int) -> list[Page]:
    """Cut the rows, in (ts, id) order, into pages of at most `page_rows` rows and about PAGE_BYTES of content:
    one query, each page its row count and last key."""
    size = CONTENT_BYTES if source is not TRACES else "0"
    window = "WINDOW w AS (ORDER BY ts_ns, row_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    numbered = (
        f"SELECT (ts_ns, row_id) AS k, greatest(intDiv(row_number() OVER w - 1, {int(page_rows)}),"
        f" intDiv(sum(row_bytes) OVER w - row_bytes, {PAGE_BYTES})) AS page"
        f" FROM (SELECT toUnixTimestamp64Nano({source.ts}) AS ts_ns, {source.id} AS row_id, {size} AS row_bytes"
        f" FROM ({rows_sql})) {window}"
    )
    found = _rows(
        config, f"SELECT count() AS n, max(k) AS last FROM ({numbered}) GROUP BY page ORDER BY page", "paging"
    )
    return [Page(int(row["n"]), row["last"]) for row in found]


def stratum_quotas(counts: list[int], wanted: int) -> list[int]:
    """How many rows each stratum gives to a sample of `wanted`: its share, rounded so the quotas sum to
    min(wanted, total) (largest remainder; ties go to the earlier stratum)."""
    total = sum(counts)
    if wanted >= total:
        return list(counts)
    exact = [wanted * n / total for n in counts]
    quotas = [int(x) for x in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in by_remainder[: wanted - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _sample_sql(config: Config, base: str, source: Source, strata: list[str], wanted: int, seed: int) -> str:
    """`wanted` rows of `base`, each stratum its share, chosen within it by cityHash64(id, seed)."""
    values = [f"ifNull(toString(`{name}`), '')" for name in strata]
    if values:
        labels = ", ".join(f"{value} AS s{i}" for i, value in enumerate(values))
        groups = ", ".join(f"s{i}" for i in range(len(values)))
        found = _rows(
            config,
            f"SELECT {labels}, count() AS n FROM ({base}) GROUP BY {groups} ORDER BY {groups}",
            "--stratify-by",
        )
        if len(found) > MAX_STRATA:
            raise ExportFailed(f"--stratify-by: {len(found)} strata; at most {MAX_STRATA} (choose coarser columns)")
        quotas = stratum_quotas([int(row["n"]) for row in found], wanted)
        arms = []
        for row, quota in zip(found, quotas, strict=True):
            match = " AND ".join(f"{value} = {_quote(row[f's{i}'])}" for i, value in enumerate(values))
            arms.append(f"{match}, {quota}")
        quota_sql = f"multiIf({', '.join(arms)}, 0)" if arms else "0"
        partition = f"PARTITION BY {', '.join(values)} "
    else:
        quota_sql, partition = str(wanted), ""
    order = f"cityHash64({source.id}, {int(seed)}), {source.id}"
    ranked = f"SELECT *, row_number() OVER ({partition}ORDER BY {order}) AS _stratum_rank FROM ({base})"
    return f"SELECT * EXCEPT (_stratum_rank) FROM ({ranked}) WHERE _stratum_rank <= {quota_sql}"


# --- writing --------------------------------------------------------------------------------------------


class Progress:
    """A line on stderr rewritten in place when it is a terminal; nothing in between otherwise."""

    def __init__(self, stream: IO[str], noun: str) -> None:
        self.stream = stream
        self.noun = noun
        self.live = stream.isatty()
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if self.live:
            self.stream.write(f"\rexporting: {done}/{total} {self.noun}")
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def _read(config: Config, sql: str, fmt: str) -> bytes:
    from tracehouse.collector.query import QueryFailed, read_query

    try:
        return read_query(config, sql, fmt).body
    except QueryFailed as exc:
        hint = ""
        if "limit" in str(exc).lower() or "too many" in str(exc).lower():
            hint = " (lower --page-rows, or for parquet raise --query-max-result-rows/-bytes or export jsonl)"
        raise ExportFailed(f"reading the rows: {exc}{hint}") from None


def write_export(plan: Plan, config: Config, out: Path, progress: Progress) -> tuple[int, int]:
    """Write the plan's rows to `out` (complete or not at all); (rows written, calls skipped)."""
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise ExportFailed(f"--out {out}: no directory {directory}")
    handle, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(handle, "wb") as sink:
            if plan.format == "parquet":
                progress.update(0, plan.total)
                sink.write(_read(config, f"SELECT * FROM ({plan.rows_sql}) ORDER BY {_order(plan.source)}", "Parquet"))
                written, skipped = plan.total, 0
            else:
                written, skipped = _write_pages(plan, config, sink, progress)
        os.replace(partial, out)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return written, skipped


def _order(source: Source) -> str:
    return f"{source.ts}, {source.id}"


def _write_pages(plan: Plan, config: Config, sink: IO[bytes], progress: Progress) -> tuple[int, int]:
    """One read per page, between the page's keys; the last page open-ended (rows that landed below the
    snapshot since the pages were cut join it), so no row is lost or written twice."""
    source = plan.source
    convert = _line_converter(plan.format)
    fmt = "JSONEachRow" if convert else CLICKHOUSE_FORMATS[plan.format]
    done = skipped = 0
    after = ""
    pages = plan.pages or [Page(0, [])]
    for number, page in enumerate(pages):
        if not page.rows:
            where = " AND 0"  # no rows: the format's empty file (CSV's header)
        elif number == len(pages) - 1:
            where = after
        else:
            where = f"{after} AND {source.bound('<=', page.last)}"
        body = _read(config, f"SELECT * FROM ({plan.rows_sql}) WHERE 1{where} ORDER BY {_order(source)}", fmt)
        if convert:
            lines, count, dropped = _convert_page(body, convert)
            sink.write(lines)
            skipped += dropped
            done += count
        else:
            if number and fmt == "CSVWithNames":
                body = body.split(b"\n", 1)[1] if b"\n" in body else b""
            sink.write(body)
            done += body.count(b"\n") if fmt == "JSONEachRow" else page.rows
        progress.update(done + skipped, plan.total)
        if page.rows:
            after = f" AND {source.bound('>', page.last)}"
    return done, skipped


def _convert_page(body: bytes, convert: Callable[[dict[str, Any]], dict[str, Any] | None]) -> tuple[bytes, int, int]:
    """A page of JSONEachRow calls as lines of the chosen format: (lines, calls written, calls skipped)."""
    import orjson

    out: list[bytes] = []
    dropped = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        record = convert(orjson.loads(line))
        if record is None:
            dropped += 1
            continue
        out.append(orjson.dumps(record))
    return (b"\n".join(out) + b"\n" if out else b""), len(out), dropped


def _line_converter(fmt: str) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
    if fmt == "openai-chat":
        return openai_chat_record
    if fmt == "openai-eval":
        return openai_eval_record
    return None


# --- the OpenAI chat format, from the canonical messages -------------------------------------------------


def _json_list(text: Any) -> list[dict[str, Any]]:
    import orjson

    if not text:
        return []
    try:
        value = orjson.loads(text) if isinstance(text, str) else text
    except ValueError:
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _content(parts: Any, role: str) -> str | list[dict[str, Any]]:
    """A message's text as one string; a user message with images as OpenAI content parts."""
    texts: list[str] = []
    images: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict) or part.get("type") == "reasoning":
            continue
        if part.get("type") == "image" and isinstance(part.get("url"), str):
            images.append(part["url"])
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
    text = "\n".join(texts)
    if images and role == "user":
        listed: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        return listed + [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return text


def _tool_calls(calls: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    import orjson

    converted = []
    for i, call in enumerate(calls, start):
        arguments = call.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps({} if arguments is None else arguments).decode()
        converted.append(
            {
                "id": call.get("id") or f"call_{i}",
                "type": "function",
                "function": {"name": call.get("name") or "", "arguments": arguments},
            }
        )
    return converted


class _Conversation:
    """OpenAI chat messages, with every tool result answering a call id an assistant message made."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.unanswered: list[str] = []
        self.calls_seen = 0

    def add(self, message: dict[str, Any]) -> None:
        role = message.get("role")
        if role in ("system", "developer"):
            self.messages.append({"role": "system", "content": _text(_content(message.get("content"), "system"))})
        elif role == "assistant":
            self.assistant(message.get("content"), message.get("tool_calls") or [], message.get("name"))
        elif role == "tool":
            call_id = message.get("tool_call_id") or ""
            if call_id in self.unanswered:
                self.unanswered.remove(call_id)
            elif self.unanswered:
                call_id = self.unanswered.pop(0)  # a result without its id answers the oldest open call
            else:
                # A result no stored call asked for: kept as what the user passed back, not a tool message.
                text = _text(_content(message.get("content"), "user"))
                self.messages.append({"role": "user", "content": text})
                return
            self.messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": _text(_content(message.get("content"), "tool"))}
            )
        else:
            out: dict[str, Any] = {"role": "user", "content": _content(message.get("content"), "user")}
            if message.get("name"):
                out["name"] = message["name"]
            self.messages.append(out)

    def assistant(self, parts: Any, calls: list[dict[str, Any]], name: Any = None) -> None:
        out: dict[str, Any] = {"role": "assistant", "content": _text(_content(parts, "assistant"))}
        if calls:
            converted = _tool_calls([c for c in calls if isinstance(c, dict)], self.calls_seen)
            self.calls_seen += len(converted)
            out["tool_calls"] = converted
            self.unanswered = [c["id"] for c in converted]
            if not out["content"]:
                out["content"] = None  # as the API itself returns a message that only calls tools
        if name:
            out["name"] = name
        self.messages.append(out)


def _text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content if part.get("type") == "text")


def _prompt_and_answer(call: dict[str, Any]) -> tuple[_Conversation, list[dict[str, Any]]] | None:
    """The conversation up to the response, and the response's assistant messages; None when the call has
    no stored input or no response (content not kept, or an error)."""
    conversation = _Conversation()
    if call.get("system_prompt"):
        conversation.messages.append({"role": "system", "content": call["system_prompt"]})
    inputs = _json_list(call.get("messages"))
    for message in inputs:
        conversation.add(message)
    response = [m for m in _json_list(call.get("response")) if m.get("role", "assistant") == "assistant"]
    listed = _json_list(call.get("tool_calls"))
    if listed and not any(m.get("tool_calls") for m in response):
        response = response or [{"role": "assistant", "content": []}]
        response[-1] = {**response[-1], "tool_calls": listed}
    if not inputs or not response:
        return None
    return conversation, response


def openai_chat_record(call: dict[str, Any]) -> dict[str, Any] | None:
    """{"messages": [...]}: the call's system prompt, messages (tool calls and results) and response."""
    found = _prompt_and_answer(call)
    if found is None:
        return None
    conversation, response = found
    for message in response:
        conversation.assistant(message.get("content"), message.get("tool_calls") or [], message.get("name"))
    return {"messages": conversation.messages}


def openai_eval_record(call: dict[str, Any]) -> dict[str, Any] | None:
    """The input messages, the response as the reference answer ("ideal"), and what the call was."""
    found = _prompt_and_answer(call)
    if found is None:
        return None
    conversation, response = found
    answer = _Conversation()
    answer.calls_seen = conversation.calls_seen
    for message in response:
        answer.assistant(message.get("content"), message.get("tool_calls") or [])
    record: dict[str, Any] = {
        "messages": conversation.messages,
        "ideal": "\n".join(m["content"] for m in answer.messages if m.get("content")),
    }
    ideal_calls = [call for m in answer.messages for call in m.get("tool_calls", [])]
    if ideal_calls:
        record["ideal_tool_calls"] = ideal_calls
    metadata: dict[str, Any] = {
        "span_id": call.get("id"),
        "trace_id": call.get("trace_id"),
        "ts": call.get("ts"),
        "provider": call.get("provider"),
        "model": call.get("model"),
        "feature": call.get("feature"),
        "prompt_name": call.get("prompt_name"),
        "prompt_version": call.get("prompt_version"),
    }
    if call.get("scores"):
        metadata["scores"] = call["scores"]
    if call.get("user_feedback") is not None:
        metadata["user_feedback"] = call["user_feedback"]
    if call.get("review_state") not in (None, "pending"):
        metadata["review_state"] = call["review_state"]
    record["metadata"] = metadata
    return record
