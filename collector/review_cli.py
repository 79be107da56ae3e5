"""`tracehouse review`: people judge calls, with an audit trail (the `reviews` table, collector/reviews.py).

tracehouse review list [--state S] [--feature F] [--model M] [--since 7d] [--limit N] [--queue]
tracehouse review show SPAN_ID
tracehouse review set SPAN_ID --approve|--flag|--reject|--reopen [--reason TEXT] [--reviewer NAME] [--force]

Reads go through `query.read_query` (the running collector's endpoint, else the store itself), like
`tracehouse sql`. Writes go through the running collector when one owns the data dir (POST /reviews on its
local query endpoint, into its pipeline: redacted, spooled, acknowledged once durable), else straight into
the store with the same checks and redaction.

The queue (`list --queue`) shows pending calls worth a look first, most urgent first: errors, refusals
(finish reason content_filter), low user feedback (at or below --low-score, default 0.5: a thumbs down is 0),
cost outliers (at least COST_OUTLIER_FACTOR times the median cost of calls of the same model in the window);
then a random share (SAMPLE_SHARE of --limit, at least one row) of the other pending calls, so reviewers also
see what the rules would never pick.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from tracehouse.collector.config import add_flags

if TYPE_CHECKING:
    from tracehouse.collector.config import Config


SAMPLE_SHARE = 0.2
COST_OUTLIER_FACTOR = 3.0
DEFAULT_LOW_SCORE = 0.5
LIST_STATES = ("pending", "approved", "flagged", "rejected", "all")
VERDICTS = {"approve": "approved", "flag": "flagged", "reject": "rejected", "reopen": "pending"}
_SNIPPET_CHARS = 60


class ReviewFailed(Exception):
    """The command cannot do what was asked; the message says why and what to do."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    command = subparsers.add_parser("review", help="review calls: list, show, approve, flag or reject (audited)")
    sub = command.add_subparsers(dest="review_command", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="calls with their review state, newest first (or the review queue)")
    add_flags(listing, "review")
    listing.add_argument("--state", default="all", choices=LIST_STATES, help="only calls in this state")
    listing.add_argument("--feature", help="only calls of this feature")
    listing.add_argument("--model", help="only calls of this model (as llm_calls.model)")
    listing.add_argument("--since", default="7d", help="calls at or after: a date, date-time or 7d, 24h (default 7d)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many calls (default 50)")
    listing.add_argument("--tenant", help="only this tenant's calls")
    listing.add_argument(
        "--queue", action="store_true", help="pending calls worth a look first, then a random share of the rest"
    )
    listing.add_argument(
        "--low-score",
        type=float,
        default=DEFAULT_LOW_SCORE,
        help=f"with --queue: user feedback at or below this is low (default {DEFAULT_LOW_SCORE})",
    )
    listing.add_argument("--format", default="table", choices=("table", "jsonl"), help="table (default) or jsonl")

    show = sub.add_parser("show", help="one call: messages, response, tool calls, cost, scores, review history")
    add_flags(show, "review")
    show.add_argument("span_id", metavar="SPAN_ID", help="the call's span id (16 hex digits)")
    show.add_argument("--tenant", help="the call's tenant, when the span id exists in several")

    verdict = sub.add_parser("set", help="record a review of one call: approve, flag, reject or reopen")
    add_flags(verdict, "review")
    verdict.add_argument("span_id", metavar="SPAN_ID", help="the call's span id (16 hex digits)")
    which = verdict.add_mutually_exclusive_group(required=True)
    for flag, state in VERDICTS.items():
        which.add_argument(f"--{flag}", dest="state", action="store_const", const=state, help=f"state {state}")
    verdict.add_argument("--reason", default="", help="why (redacted like span content)")
    verdict.add_argument("--reviewer", default="", help="who reviews (default: the OS user and host)")
    verdict.add_argument("--tenant", help="the call's tenant, when the span id exists in several")
    verdict.add_argument(
        "--force",
        action="store_true",
        help="write the review even though the span is not in the store (yet); needs --trace",
    )
    verdict.add_argument("--trace", metavar="TRACE_ID", help="with --force: the trace of the span")
    return command


def run(args: argparse.Namespace, config: Config, out: IO[str] = sys.stdout) -> int:
    try:
        if args.review_command == "list":
            return _list(args, config, out)
        if args.review_command == "show":
            return _show(args, config, out)
        return _set(args, config, out)
    except ReviewFailed as exc:
        print(f"tracehouse: review {args.review_command}: {exc}", file=sys.stderr)
        return 1


# --- reading --------------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    from tracehouse.collector.query import string_literal

    return string_literal(value)


def _rows(config: Config, sql: str) -> list[dict[str, Any]]:
    from tracehouse.collector.query import QueryFailed, read_rows

    try:
        return read_rows(config, sql)
    except QueryFailed as exc:
        raise ReviewFailed(str(exc)) from None


def _span_id(text: str) -> str:
    value = text.strip().lower()
    if len(value) != 16 or any(c not in "0123456789abcdef" for c in value):
        raise ReviewFailed(f"SPAN_ID {text!r}: a span id is 16 hex digits, as OTLP/JSON writes it")
    return value


# The short prompt (the last user message's first text) and response (the first output message's first text).
_SNIPPETS = """
    replaceRegexpAll(JSONExtractString(arrayLast(m -> JSONExtractString(m, 'role') = 'user',
        JSONExtractArrayRaw(messages)), 'content', 1, 'text'), '\\\\s+', ' ') AS prompt_text,
    replaceRegexpAll(JSONExtractString(response, 1, 'content', 1, 'text'), '\\\\s+', ' ') AS response_text"""
_LIST_COLUMNS = f"""ts, id AS span_id, trace_id, tenant_id, feature, model, toFloat64(cost_usd) AS cost_usd,
    review_state, reviewed_by, status, error, finish_reason, user_feedback,{_SNIPPETS}"""


def _filters(args: argparse.Namespace) -> list[str]:
    from tracehouse.collector.prices_cli import parse_when

    try:
        since = parse_when(args.since)
    except ValueError as exc:
        raise ReviewFailed(f"--since: {exc}") from None
    conditions = [f"ts >= parseDateTime64BestEffort({_quote(since.isoformat())}, 9)"]
    for column, value in (("feature", args.feature), ("model", args.model), ("tenant_id", args.tenant)):
        if value is not None:
            conditions.append(f"{column} = {_quote(value)}")
    return conditions


def _list(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    if not 1 <= args.limit <= 10_000:
        raise ReviewFailed(f"--limit {args.limit}: between 1 and 10000")
    conditions = _filters(args)
    if args.queue:
        rows = _queue(config, conditions, args.limit, args.low_score)
    else:
        if args.state != "all":
            conditions.append(f"review_state = {_quote(args.state)}")
        sql = f"SELECT {_LIST_COLUMNS} FROM llm_calls_scored WHERE {' AND '.join(conditions)}"
        rows = _rows(config, f"{sql} ORDER BY ts DESC LIMIT {args.limit}")
    if args.format == "jsonl":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), file=out)
        return 0
    _print_table(rows, out, args.queue)
    return 0


def queue_sql(conditions: list[str], low_score: float) -> str:
    """Pending calls of the window with the reason each is worth a look (`why`, '' for none), by priority."""
    where = " AND ".join([*conditions, "review_state = 'pending'"])
    return f"""
    SELECT *,
        multiIf(status = 'Error' OR error != '', 'error',
                finish_reason = 'content_filter', 'refusal',
                user_feedback IS NOT NULL AND user_feedback <= {float(low_score)!r}, 'low score',
                cost_usd > 0 AND cost_usd >= {COST_OUTLIER_FACTOR!r} * model_median_cost, 'cost outlier',
                '') AS why,
        indexOf(['error', 'refusal', 'low score', 'cost outlier'], why) AS priority
    FROM (
        SELECT {_LIST_COLUMNS},
            medianExact(toFloat64(cost_usd)) OVER (PARTITION BY model) AS model_median_cost
        FROM llm_calls_scored
        WHERE {where}
    )"""


def _queue(config: Config, conditions: list[str], limit: int, low_score: float) -> list[dict[str, Any]]:
    base = queue_sql(conditions, low_score)
    samples = max(1, round(limit * SAMPLE_SHARE)) if limit > 1 else 0
    picked = _rows(config, f"SELECT * FROM ({base}) WHERE why != '' ORDER BY priority, ts DESC LIMIT {limit - samples}")
    rest = limit - len(picked)
    sampled = _rows(config, f"SELECT * FROM ({base}) WHERE why = '' ORDER BY rand() LIMIT {rest}") if rest else []
    for row in sampled:
        row["why"] = "sample"
    return picked + sampled


def _clip(text: Any, width: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(rows: list[dict[str, Any]], out: IO[str], queue: bool) -> None:
    if not rows:
        print("no calls match", file=out)
        return
    columns = ["time", "span id", "feature", "model", "cost", "state"] + (["why"] if queue else [])
    columns += ["prompt", "response"]
    table = []
    for row in rows:
        cells = [
            str(row["ts"])[:19],
            row["span_id"],
            row["feature"] or "-",
            row["model"] or "-",
            f"${row['cost_usd']:.6f}",
            row["review_state"],
        ]
        if queue:
            cells.append(row["why"])
        table.append(cells + [row["prompt_text"], row["response_text"]])
    fixed = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns[:-2])]
    terminal = shutil.get_terminal_size((160, 24)).columns
    free = max(20, terminal - sum(fixed) - 2 * len(columns))
    snippet = max(10, min(_SNIPPET_CHARS, free // 2))
    widths = [*fixed, snippet, snippet]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    for cells in table:
        shown = [*cells[:-2], _clip(cells[-2], snippet), _clip(cells[-1], snippet)]
        print("  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip(), file=out)


def _show(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    span_id = _span_id(args.span_id)
    where = f"id = {_quote(span_id)}" + (f" AND tenant_id = {_quote(args.tenant)}" if args.tenant else "")
    calls = _rows(
        config,
        f"SELECT *, toFloat64(cost_usd) AS cost, toString(ts) AS at FROM llm_calls_scored WHERE {where} LIMIT 2",
    )
    if not calls:
        raise ReviewFailed(f"no LLM call with span id {span_id} in the store")
    if len(calls) > 1:
        raise ReviewFailed(f"span id {span_id} is in several tenants: pass --tenant")
    call = calls[0]
    history = _rows(
        config,
        "SELECT toString(Timestamp) AS at, State, Reviewer, Reason FROM reviews "
        f"WHERE SpanId = {_quote(span_id)} AND TenantId = {_quote(call['tenant_id'])} "
        "ORDER BY Timestamp, ReviewId",
    )
    print("\n".join(render_call(call, history)), file=out)
    return 0


def _message_lines(message: dict[str, Any], width: int) -> list[str]:
    role = message.get("role", "?")
    name = f" ({message['name']})" if message.get("name") else ""
    lines = [f"[{role}{name}]"]
    for part in message.get("content") or []:
        text = part.get("text") if part.get("type") == "text" else f"<{part.get('type', 'part')}>"
        for paragraph in str(text).splitlines() or [""]:
            lines += textwrap.wrap(paragraph, width, initial_indent="  ", subsequent_indent="  ") or ["  "]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments", call.get("arguments", ""))
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        lines.append(f"  -> tool call {function.get('name') or call.get('name', '?')}({arguments})")
    return lines


def render_call(call: dict[str, Any], history: list[dict[str, Any]]) -> list[str]:
    """A call for a terminal: what it was, what was said, what it cost, what people said about it."""
    width = min(100, shutil.get_terminal_size((100, 24)).columns - 4)
    feedback = call.get("user_feedback")
    lines = [
        f"call {call['id']}  trace {call['trace_id']}  at {call['at']}",
        f"  service {call['service'] or '-'}  feature {call['feature'] or '-'}  user {call['user_id'] or '-'}",
        f"  model {call['provider'] or '?'}/{call['model'] or '?'}  tokens {call['prompt_tokens']} in, "
        f"{call['completion_tokens']} out  cost ${call['cost']:.6f}  latency {call['latency_ms_total']} ms",
        f"  status {call['status']}"
        + (f"  error {call['error']}" if call.get("error") else "")
        + (f"  finish {call['finish_reason']}" if call.get("finish_reason") else ""),
        f"  review {call['review_state']}"
        + (f" by {call['reviewed_by']}" if call.get("reviewed_by") else "")
        + f"  user feedback {'-' if feedback is None else feedback}",
    ]
    if call.get("scores"):
        lines.append("  scores " + ", ".join(f"{k}={v}" for k, v in sorted(call["scores"].items())))
    sections = (("system", call.get("system_prompt") or ""), ("messages", call.get("messages") or ""))
    for title, text in sections:
        if not text:
            continue
        lines += ["", f"{title}:"]
        if title == "system":
            lines += textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="  ")
            continue
        for message in _json_list(text):
            lines += _message_lines(message, width)
    response = _json_list(call.get("response") or "")
    if response:
        lines += ["", "response:"]
        for message in response:
            lines += _message_lines(message, width)
    lines += ["", "review history:"]
    if not history:
        lines.append("  none (pending)")
    for entry in history:
        reason = f": {entry['Reason']}" if entry["Reason"] else ""
        lines.append(f"  {entry['at'][:19]}  {entry['State']:<8}  {entry['Reviewer'] or '-'}{reason}")
    return lines


def _json_list(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError:
        return [{"role": "?", "content": [{"type": "text", "text": text}]}]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# --- writing --------------------------------------------------------------------------------------------


def _default_reviewer() -> str:
    from tracehouse.collector.forget import default_requester

    return default_requester()


def _set(args: argparse.Namespace, config: Config, out: IO[str]) -> int:
    span_id = _span_id(args.span_id)
    where = f"SpanId = {_quote(span_id)}" + (f" AND TenantId = {_quote(args.tenant)}" if args.tenant else "")
    found = _rows(config, f"SELECT DISTINCT TenantId, TraceId FROM otel_traces WHERE {where} LIMIT 3")
    if len({row["TenantId"] for row in found}) > 1:
        raise ReviewFailed(f"span id {span_id} is in several tenants: pass --tenant")
    if found:
        tenant, trace_id = found[0]["TenantId"], found[0]["TraceId"]
    elif not args.force:
        raise ReviewFailed(
            f"no span {span_id} in the store, nothing written (it may not have arrived yet: "
            "--force --trace TRACE_ID writes the review anyway, and it joins once the span lands)"
        )
    elif not args.trace:
        raise ReviewFailed("--force needs --trace TRACE_ID: a review joins its call by trace and span")
    else:
        tenant, trace_id = args.tenant or "", args.trace
    review = {
        "id": uuid.uuid4().hex,  # every `set` is a change of its own, even when it repeats an earlier one
        "trace_id": trace_id,
        "span_id": span_id,
        "state": args.state,
        "reason": args.reason,
        "reviewer": args.reviewer or _default_reviewer(),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "tenant_id": tenant,
    }
    body = json.dumps(review).encode()
    route = _write_through_collector(config, body)
    if route is None:
        _write_to_store(config, body)
        route = "the store"
    print(f"review {span_id}: {args.state} (recorded through {route})", file=out)
    return 0


def _write_through_collector(config: Config, body: bytes) -> str | None:
    """POST the review to the collector that owns this data dir; None when no collector answers."""
    from tracehouse.collector.reviews import REVIEW_ROUTE
    from tracehouse.collector.runtime import CollectorRefused, post_to_collector, read_runtime_info

    info = read_runtime_info(config) if config.is_embedded else None
    if info is None or not info.get("query_url"):
        return None
    try:
        answer = post_to_collector(info, REVIEW_ROUTE, body, 60)
    except CollectorRefused as exc:
        raise ReviewFailed(str(exc)) from None
    return None if answer is None else "the collector"


def _write_to_store(config: Config, body: bytes) -> None:
    from tracehouse.collector import store
    from tracehouse.collector.errors import Invalid
    from tracehouse.collector.reviews import REVIEWS_TABLE, ReviewProcessor
    from tracehouse.collector.runtime import StoreBusy, lock_store
    from tracehouse.collector.writer import TraceStore

    try:
        processed = ReviewProcessor.from_config(config).process(body, None, time.time_ns())
    except Invalid as exc:
        raise ReviewFailed(str(exc)) from None
    try:
        lock = lock_store(config)
    except StoreBusy as exc:
        raise ReviewFailed(f"{exc}; and no collector answers on its endpoint") from None
    try:
        client = store.connect(config.store_url)
        try:
            store.migrate(client, config.cluster, retention_settings=config.retention)
        finally:
            client.close()
        trace_store = TraceStore(config.store_url, cluster=config.cluster, retention=config.retention)
        try:
            trace_store.insert(processed.header, processed.payload, None, REVIEWS_TABLE)
        finally:
            trace_store.close()
    finally:
        if lock:
            lock.close()
