"""Every `tracehouse ...` command line and every flag the README shows exist in the real command line
(collector/cli.py's build_parser), so the README cannot drift from it.

- A command line (in a shell block, or an inline code span that starts with `tracehouse`, and the
  ARGS of `make run`) parses with no unknown argument, and its values pass the checks the command
  makes before it runs (Config's, `--format`'s, `--at`'s and `--since`'s).
- A flag shown on its own (`--batch-max-rows`, `--format csv|tsv`) is accepted by the command the same
  paragraph names before it, or, in a table or a paragraph that names none, by some command; its
  value, if one is shown, passes that command's checks.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracehouse.collector.cli import build_parser
from tracehouse.collector.config import ConfigError, load_args
from tracehouse.collector.prices_cli import parse_when
from tracehouse.collector.query import resolve_format

README = Path(__file__).parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL_FENCES = {"", "sh", "bash", "shell", "console"}
# `tracehouse` as the first word of a shell command: at the start, or after &&, ; or |, with a path or not.
COMMAND_START = re.compile(r"(?:^|&&|;|\|)\s*(?:\$\s+)?(?:[\w./-]*/)?tracehouse(?=\s|$)")
MAKE_RUN = re.compile(r"\bmake run ARGS=(\"[^\"]*\"|'[^']*'|\S+)")
INLINE_CODE = re.compile(r"`([^`]+)`")
PLACEHOLDER = re.compile(r"^<\w+>$|^[A-Z][A-Z_]*$|\.\.\.")  # <command>, DATE, N, "...", http(s)://...
# Checks a command makes on a value before it runs, beyond Config's (load_args).
VALUE_CHECKS: dict[str, Callable[[str], object]] = {
    "--format": resolve_format,
    "--at": parse_when,
    "--since": parse_when,
}


@dataclass(frozen=True)
class Shown:
    """A command line or a lone flag from the README, and where it is."""

    line: int
    words: tuple[str, ...]  # after `tracehouse`; for a lone flag: the flag and its value, if shown
    command: tuple[str, ...] | None = None  # for a lone flag: the command its paragraph names before it
    every_command: bool = False  # the paragraph says `tracehouse <command>`
    lone: bool = False  # a flag shown on its own, not a command line


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    children = _children(parser)
    if not children:
        yield path, parser
    for name, child in children.items():
        yield from _leaves(child, (*path, name))


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


PARSER = build_parser()
LEAVES = dict(_leaves(PARSER))


def _command_path(words: tuple[str, ...]) -> tuple[str, ...]:
    """The longest run of leading words that names a command or command group."""
    parser, path = PARSER, ()
    for word in words:
        children = _children(parser)
        if word not in children:
            break
        parser, path = children[word], (*path, word)
    return path


def _split(text: str) -> list[str]:
    return shlex.split(text, comments=True)


def _shell_commands(code: str, first_line: int) -> Iterator[Shown]:
    lines = code.split("\n")
    i = 0
    while i < len(lines):
        match = COMMAND_START.search(lines[i])
        if match:
            text, end = lines[i][match.end() :], i
            while True:  # a quoted argument may span lines
                try:
                    words = _split(text)
                    break
                except ValueError:
                    end += 1
                    assert end < len(lines), f"README line {first_line + i}: unbalanced quotes"
                    text += "\n" + lines[end]
            yield Shown(first_line + i, tuple(words))
            i = end
        for make in MAKE_RUN.finditer(lines[i]):
            yield Shown(first_line + i, ("serve", *_split(make.group(1))[0].split()))
        i += 1


def readme_items(text: str | None = None) -> list[Shown]:
    """Every command line and lone flag the README shows."""
    text = README.read_text() if text is None else text
    items: list[Shown] = []
    prose = text
    for fence in FENCE.finditer(text):
        start_line = text.count("\n", 0, fence.start(2)) + 1
        if fence.group(1) in SHELL_FENCES:
            items.extend(_shell_commands(fence.group(2), start_line))
        # Keep the line numbers of the prose: blank the block out line for line.
        prose = prose[: fence.start()] + re.sub(r"[^\n]", " ", fence.group(0)) + prose[fence.end() :]
    offset = 0
    for paragraph in re.split(r"\n\s*\n", prose):
        start = prose.index(paragraph, offset)
        offset = start + len(paragraph)
        rows = paragraph.split("\n") if paragraph.lstrip().startswith("|") else [paragraph]
        row_start = start
        for row in rows:
            items.extend(_inline(row, text.count("\n", 0, row_start) + 1, table=row is not paragraph))
            row_start += len(row) + 1
    return items


def _inline(paragraph: str, first_line: int, table: bool) -> Iterator[Shown]:
    named: tuple[str, ...] | None = None
    every = False
    for span in INLINE_CODE.finditer(paragraph):
        code = " ".join(span.group(1).split())
        line = first_line + paragraph.count("\n", 0, span.start())
        for make in MAKE_RUN.finditer(code):
            yield Shown(line, ("serve", *_split(make.group(1))[0].split()))
        if COMMAND_START.match(code):
            words = tuple(_split(COMMAND_START.sub("", code, count=1)))
            if words[:1] == ("<command>",):
                every = True
                for path in _children(PARSER):
                    yield Shown(line, (path, *words[1:]))
            else:
                yield Shown(line, words)
                named = None if table else _command_path(words) or None
        elif code.startswith("--"):
            yield Shown(line, tuple(code.split()[:2]), named, every and not table, lone=True)


def _accepts(parser: argparse.ArgumentParser, flag: str) -> bool:
    return any(flag in action.option_strings for action in parser._actions)


def _check_values(path: tuple[str, ...], words: list[str]) -> None:
    """Parse `words` as `tracehouse` does and run the checks made on values before the command runs."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            args, unknown = PARSER.parse_known_args(words)
        except SystemExit as exc:
            raise AssertionError(f"`tracehouse {' '.join(words)}` does not parse: {err.getvalue().strip()}") from exc
    assert not unknown, f"`tracehouse {' '.join(words)}`: unrecognized arguments {unknown}"
    try:
        load_args(args, environ={})
    except ConfigError as exc:
        raise AssertionError(f"`tracehouse {' '.join(words)}`: {exc}") from exc
    for flag, check in VALUE_CHECKS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"), None)
        actions = [a for a in LEAVES[path]._actions if flag in a.option_strings]
        if actions and actions[0].choices is not None:  # export's --format: argparse checked it against its choices
            continue
        if value is not None and _accepts(LEAVES[path], flag):
            for alternative in value.split("|"):
                check(alternative)


def _with_positionals(path: tuple[str, ...], extra: list[str]) -> list[str]:
    """A command line for `path` with placeholder values for its positional arguments."""
    positionals = [a for a in LEAVES[path]._actions if not a.option_strings and a.nargs != 0]
    return [*path, *extra, *(["SELECT 1"] * len(positionals))]


def check_command_line(item: Shown) -> None:
    words = list(item.words)
    path = _command_path(item.words)
    where = f"README line {item.line}: `tracehouse {' '.join(words)}`"
    if not path:  # `tracehouse` alone lists the commands; `tracehouse --version`
        assert all(_accepts(PARSER, word) for word in words), f"{where} names no tracehouse command"
        return
    if len(words) == len(path) or "--help" in words or "-h" in words or path not in LEAVES:
        # A command named in prose (`tracehouse sql`, `tracehouse prices`), or its --help.
        assert words[len(path) :] in ([], ["--help"], ["-h"]), f"{where}: not a command"
        return
    for word in words[len(path) :]:  # exact names: argparse would take an abbreviation too
        if word.startswith("--"):
            assert _accepts(LEAVES[path], word.split("=")[0]), f"{where}: {' '.join(path)} takes no {word}"
    if any(PLACEHOLDER.search(word) for word in words):  # DATE, "...": check the shape, not the values
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                args, unknown = PARSER.parse_known_args(["x" if PLACEHOLDER.search(w) else w for w in words])
            except SystemExit as exc:
                raise AssertionError(f"{where} does not parse") from exc
        assert not unknown, f"{where}: unrecognized arguments {unknown}"
        return
    _check_values(path, words)


def check_lone_flag(item: Shown) -> None:
    flag, *value = item.words
    flag = flag.split("=")[0]
    if item.every_command:
        owners = list(LEAVES)
        missing = [" ".join(p) for p in owners if not _accepts(LEAVES[p], flag)]
        assert not missing, f"README line {item.line}: {flag} shown for every command; not taken by {missing}"
    elif item.command:
        owners = [p for p in LEAVES if p[: len(item.command)] == item.command and _accepts(LEAVES[p], flag)]
        assert owners, f"README line {item.line}: {flag} is shown for `tracehouse {' '.join(item.command)}`"
    else:
        owners = [p for p in LEAVES if _accepts(LEAVES[p], flag)]
        assert owners, f"README line {item.line}: no tracehouse command takes {flag}"
    if value and not PLACEHOLDER.search(value[0]):
        for path in owners:
            _check_values(path, _with_positionals(path, [flag, value[0]]))


ITEMS = readme_items()


def test_the_readme_shows_commands_and_flags() -> None:
    """The walk finds what the README shows (a walk that found nothing would pass everything)."""
    lines = {item.words[:2] for item in ITEMS if not item.lone}
    # The quickstart's query, whose quoted SQL spans two lines; a fenced line; `make run ARGS=...`.
    assert any(i.words[:1] == ("sql",) and "FROM otel_traces GROUP BY" in "".join(i.words[1:2]) for i in ITEMS)
    assert ("prices", "show") in lines and ("serve", "--host") in lines
    flags = {item.words[0] for item in ITEMS if item.lone}
    assert {(), ("--version",)} <= lines  # `tracehouse` alone, `tracehouse --version`
    assert {"--batch-max-rows", "--data-dir", "--format", "--no-spool", "--config"} <= flags
    format_owners = {i.command for i in ITEMS if i.words[:1] == ("--format",)}
    assert ("sql",) in format_owners and ("export",) in format_owners  # each paragraph's own command


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: f"line{item.line}:{' '.join(item.words)[:40]}")
def test_every_command_and_flag_the_readme_shows_exists(item: Shown) -> None:
    if item.lone:
        check_lone_flag(item)
    else:
        check_command_line(item)


@pytest.mark.parametrize(
    "text",
    [
        '```sh\ntracehouse sql --formt csv "SELECT 1"\n```\n',  # a misspelt flag
        "```sh\ntracehouse prices list\n```\n",  # no such subcommand
        "Run `tracehouse migrate --batch-max-rows 5`.\n",  # a flag another command takes
        'Use `tracehouse sql "..."` with `--provider`.\n',  # a lone flag its command does not take
        "Any command (`tracehouse <command> --help`) takes `--price-file`.\n",
        "Batches of up to `--batch-max-rows 1e5` rows.\n",  # a value Config refuses
        '`tracehouse sql --format tsvv "SELECT 1"`\n',  # a format that does not exist
        "`tracehouse prices show gpt-4o --at yesterday`\n",
        'Pass flags with `make run ARGS="--hots 0.0.0.0"`.\n',
        '`tracehouse sql --form csv "SELECT 1"`\n',  # argparse would take the abbreviation; the README must not
        "`tracehouse --verbose` prints more.\n",  # no such top-level flag
    ],
)
def test_the_walk_catches_drift(text: str) -> None:
    items = readme_items(text)
    assert items, text
    with pytest.raises((AssertionError, ValueError)):
        for item in items:
            test_every_command_and_flag_the_readme_shows_exists(item)
