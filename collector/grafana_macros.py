"""What Grafana and the ClickHouse data source plugin (grafana-clickhouse-datasource) do to a panel's SQL
before ClickHouse sees it: the one expansion that tests (dashboard and alert queries run as Grafana would)
and `tracehouse report` (the dashboards' panels run outside Grafana) both use.

Three steps, in the plugin's order:
1. `$__conditionalAll(condition, $var)` (the plugin's frontend, before variables are replaced): the
   condition when the variable has a concrete selection, `1=1` when it is All or empty. Arguments are
   split at commas outside parentheses; the second must be a plain `$var`.
2. Template variables (Grafana's template service with the plugin's default format): `$var`, `${var}`,
   `${var:format}`, `[[var]]`. A multi-value selection (a list) becomes `'a','b'` by default (the
   plugin joins the values in single quotes, without escaping); a single value is inserted as is.
   All without a custom all value means every option. Formats: singlequote (`'a','b'`, `'` escaped as
   `\\'`), doublequote, sqlstring (`'` doubled), csv, raw, pipe, text, queryparam, percentencode.
3. The plugin's backend macros, as its documentation lists them (with `from`/`to` the time range in
   Unix seconds or milliseconds, dates in UTC, `interval` the query interval, at least 1 s / 1 ms):
     $__timeFilter(c)          c >= toDateTime(from) AND c <= toDateTime(to)
     $__timeFilter_ms(c)       c >= fromUnixTimestamp64Milli(from_ms) AND c <= fromUnixTimestamp64Milli(to_ms)
     $__dateFilter(c)          c >= toDate('YYYY-MM-DD') AND c <= toDate('YYYY-MM-DD')
     $__dateTimeFilter(d, t)   (d >= toDate(..) AND d <= toDate(..)) AND (t >= toDateTime(..) AND t <= toDateTime(..))
     $__dt(d, t)               the same
     $__fromTime, $__toTime    toDateTime(from), toDateTime(to)
     $__fromTime_ms, $__toTime_ms   fromUnixTimestamp64Milli(from_ms), ...(to_ms)
     $__timeInterval(c)        toStartOfInterval(toDateTime(c), INTERVAL <interval s> second)
     $__timeInterval_ms(c)     toStartOfInterval(toDateTime64(c, 3), INTERVAL <interval ms> millisecond)
     $__interval_s             <interval s>

Anything left that looks like a variable or a macro is an error here (Grafana would send it verbatim
and ClickHouse would fail on it), so an undefined variable or a misspelt macro fails the test.

`portability_problems` flags macro uses that the plugin's macro engines (they changed across plugin
versions) do not all expand the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

ALL = "$__all"


class ExpansionError(ValueError):
    """A query Grafana or the plugin would not turn into valid SQL."""


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's current state. `value` is a str (single value, textbox) or a list (multi
    value); [ALL] (or ALL) is the All option, which stands for `options` unless `all_value` is set."""

    name: str
    value: str | list[str]
    options: Sequence[str] = ()
    all_value: str | None = None

    @property
    def is_all(self) -> bool:
        return self.value == ALL or self.value == [ALL]

    def current_text(self) -> str:
        """The plugin's `current.value.toString()`: a list joins with commas."""
        return ",".join(self.value) if isinstance(self.value, list) else self.value


@dataclass(frozen=True)
class QueryContext:
    """The time range and interval Grafana sends with a query, plus its global variables."""

    time_from: datetime
    time_to: datetime
    interval_ms: int = 60_000
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def from_s(self) -> int:
        return int(self.time_from.timestamp() // 1)

    @property
    def to_s(self) -> int:
        return int(self.time_to.timestamp() // 1)

    @property
    def from_ms(self) -> int:
        return int(self.time_from.timestamp() * 1000 // 1)

    @property
    def to_ms(self) -> int:
        return int(self.time_to.timestamp() * 1000 // 1)

    def builtins(self) -> dict[str, str]:
        """Grafana's global variables (the ones a SQL panel may use)."""
        found = {
            "__from": str(self.from_ms),
            "__to": str(self.to_ms),
            "__interval_ms": str(self.interval_ms),
            "__interval": _grafana_interval(self.interval_ms),
            "__range_s": str(self.to_s - self.from_s),
            "__range_ms": str(self.to_ms - self.from_ms),
        }
        found.update(self.extra)
        return found


def _grafana_interval(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# --- step 1: $__conditionalAll ----------------------------------------------------------------------

CONDITIONAL_ALL = "$__conditionalAll("


def macro_args(text: str, open_paren: int) -> list[str] | None:
    """Arguments of the call whose `(` is at `open_paren`: split at commas at depth 1, kept verbatim
    (not trimmed). None when the parentheses do not close."""
    depth = 0
    args: list[str] = []
    start = open_paren + 1
    for index in range(open_paren, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:index])
                return args
        elif char == "," and depth == 1:
            args.append(text[start:index])
            start = index + 1
    return None


def apply_conditional_all(sql: str, variables: Mapping[str, Variable]) -> str:
    """The plugin's frontend step, last occurrence first, each replaced where its text first appears."""
    index = sql.rfind(CONDITIONAL_ALL)
    while index != -1:
        args = macro_args(sql, index + len(CONDITIONAL_ALL) - 1)
        if args is None or len(args) != 2:
            raise ExpansionError(f"$__conditionalAll needs (condition, $variable): {sql[index : index + 80]!r}")
        reference = args[1].strip()
        if not re.fullmatch(r"\$\w+", reference):
            raise ExpansionError(f"$__conditionalAll's second argument must be a plain $variable, not {reference!r}")
        variable = variables.get(reference[1:])
        if variable is None:
            raise ExpansionError(f"$__conditionalAll refers to undefined variable {reference}")
        text = variable.current_text()
        phrase = "1=1" if text in ("", ALL) else args[0]
        sql = sql.replace(f"{CONDITIONAL_ALL}{args[0]},{args[1]})", phrase, 1)
        index = sql.rfind(CONDITIONAL_ALL)
    return sql


# --- step 2: template variables ---------------------------------------------------------------------

# Grafana's variable syntaxes: $name, [[name:format]], ${name.fieldPath:format}
VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")


def _plugin_format(value: str | list[str]) -> str:
    if isinstance(value, list):
        return "'" + "','".join(value) + "'"
    return value


def _format(value: str | list[str], fmt: str, name: str) -> str:
    values = value if isinstance(value, list) else [value]
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt in ("csv", "raw"):
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "text":
        return " + ".join(values)
    if fmt == "percentencode":
        return quote(",".join(values), safe="")
    if fmt == "queryparam":
        return "&".join(f"var-{name}={quote(v, safe='')}" for v in values)
    raise ExpansionError(f"variable format {fmt!r} is not supported here")


def interpolate_variables(sql: str, variables: Mapping[str, Variable], context: QueryContext) -> str:
    builtins = context.builtins()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if match.group(5):
            raise ExpansionError(f"field paths are not supported here: {match.group(0)}")
        if name in variables:
            variable = variables[name]
            value: str | list[str] = variable.value
            if variable.is_all:
                if variable.all_value is not None:
                    if fmt not in ("text", "percentencode"):
                        return variable.all_value
                    value = variable.all_value
                else:
                    value = list(variable.options)
            return _format(value, fmt, name) if fmt else _plugin_format(value)
        if name in builtins:
            return builtins[name]
        return match.group(0)  # Grafana leaves unknown names alone; step 3 decides

    return VARIABLE.sub(replace, sql)


# --- step 3: the backend macros ---------------------------------------------------------------------

MACRO = re.compile(r"\$__(\w+)")
ARITY = {
    "timeFilter": 1,
    "timeFilter_ms": 1,
    "dateFilter": 1,
    "dateTimeFilter": 2,
    "dt": 2,
    "timeInterval": 1,
    "timeInterval_ms": 1,
    "fromTime": 0,
    "toTime": 0,
    "fromTime_ms": 0,
    "toTime_ms": 0,
    "interval_s": 0,
}


def _date(moment: datetime) -> str:
    return f"toDate('{moment.astimezone(UTC).strftime('%Y-%m-%d')}')"


def _expand_macro(name: str, args: list[str], c: QueryContext) -> str:
    interval_s = max(c.interval_ms / 1000, 1)
    interval_ms = max(c.interval_ms, 1)
    from_dt, to_dt = f"toDateTime({c.from_s})", f"toDateTime({c.to_s})"
    from_ms, to_ms = f"fromUnixTimestamp64Milli({c.from_ms})", f"fromUnixTimestamp64Milli({c.to_ms})"
    if name == "timeFilter":
        return f"{args[0]} >= {from_dt} AND {args[0]} <= {to_dt}"
    if name == "timeFilter_ms":
        return f"{args[0]} >= {from_ms} AND {args[0]} <= {to_ms}"
    if name == "dateFilter":
        return f"{args[0]} >= {_date(c.time_from)} AND {args[0]} <= {_date(c.time_to)}"
    if name in ("dateTimeFilter", "dt"):
        date_column, time_column = args
        return (
            f"({date_column} >= {_date(c.time_from)} AND {date_column} <= {_date(c.time_to)}) AND "
            f"({time_column} >= {from_dt} AND {time_column} <= {to_dt})"
        )
    if name == "timeInterval":
        return f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {int(interval_s)} second)"
    if name == "timeInterval_ms":
        return f"toStartOfInterval(toDateTime64({args[0]}, 3), INTERVAL {int(interval_ms)} millisecond)"
    if name == "fromTime":
        return from_dt
    if name == "toTime":
        return to_dt
    if name == "fromTime_ms":
        return from_ms
    if name == "toTime_ms":
        return to_ms
    if name == "interval_s":
        return str(int(interval_s))
    raise ExpansionError(f"unknown macro $__{name}")  # pragma: no cover - ARITY guards


def expand_macros(sql: str, context: QueryContext) -> str:
    out: list[str] = []
    position = 0
    for match in MACRO.finditer(sql):
        if match.start() < position:
            continue
        name = match.group(1)
        if name not in ARITY:
            raise ExpansionError(f"unknown macro or variable ${'__' + name}")
        end = match.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            raw = macro_args(sql, end)
            if raw is None:
                raise ExpansionError(f"unclosed $__{name}(")
            end = end + sum(len(a) for a in raw) + len(raw) + 1
            args = [a.strip() for a in raw]
            if args == [""]:
                args = []
        if len(args) != ARITY[name]:
            raise ExpansionError(
                f"$__{name} takes {ARITY[name]} argument(s), got {len(args)}: {sql[match.start() : end]}"
            )
        out.append(sql[position : match.start()])
        out.append(_expand_macro(name, args, context))
        position = end
    out.append(sql[position:])
    return "".join(out)


LEFTOVER = re.compile(r"\$\{?\w+|\[\[\w+")


def expand(sql: str, variables: Mapping[str, Variable], context: QueryContext) -> str:
    """The SQL ClickHouse receives for this panel query."""
    sql = apply_conditional_all(sql, variables)
    sql = interpolate_variables(sql, variables, context)
    sql = expand_macros(sql, context)
    leftover = LEFTOVER.search(_without_string_literals(sql))
    if leftover:
        raise ExpansionError(f"unresolved {leftover.group(0)!r} in: {sql}")
    return sql


def _without_string_literals(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.|'')*'", "''", sql)


# --- portability ------------------------------------------------------------------------------------

_SIMPLE_ARGUMENT = re.compile(r"^\s*[A-Za-z_][\w.]*\s*$")


def portability_problems(sql: str) -> list[str]:
    """Macro uses that not every engine of the plugin expands alike. The plugin's backend has matched
    macros with a non-greedy regex (`$__name(` up to the first `)`), by scanning to the matching
    parenthesis (where a macro without arguments takes the next parenthesised group as its arguments
    unless a `)` comes first), and with a newer parser. Safe in all: macro arguments that are plain
    column names, and argument-less macros that are followed by `)` before any `(`. The frontend's
    $__conditionalAll needs a condition free of JavaScript replacement patterns."""
    problems = []
    index = sql.find(CONDITIONAL_ALL)
    while index != -1:
        args = macro_args(sql, index + len(CONDITIONAL_ALL) - 1) or [""]
        # The plugin swaps the macro for its condition with JavaScript's String.replace, which reads
        # $$, $&, $` and $' in the replacement as patterns.
        if re.search(r"\$[$&`']", args[0]):
            problems.append(f"$__conditionalAll({args[0]}, ...): $$, $&, $` or $' would be mangled")
        index = sql.find(CONDITIONAL_ALL, index + 1)
    for match in MACRO.finditer(sql):
        name, end = match.group(1), match.end()
        if name == "conditionalAll" or name not in ARITY:
            continue
        if ARITY[name] == 0:
            following = re.search(r"[()]", sql[end:])
            if following is not None and following.group(0) == "(":
                problems.append(f"$__{name} is followed by '(' before ')': wrap it in parentheses")
            continue
        if end >= len(sql) or sql[end] != "(":
            problems.append(f"$__{name} needs its argument list")
            continue
        args = macro_args(sql, end) or []
        if any(not _SIMPLE_ARGUMENT.match(arg) for arg in args):
            problems.append(f"$__{name}({', '.join(args)}): arguments must be plain column names")
    return problems
