"""Prompts kept as Markdown files in the app: load one, render it, and the next LLM call is linked to it.

```python
from tracehouse.instrumentation import prompts

p = prompts.load("answer")                 # ./prompts/answer.md (or TRACEHOUSE_PROMPTS_DIR, or configure())
messages = p.render(question="Where is my order?")
client.chat.completions.create(model=p.model, messages=messages, **p.parameters)  # tagged with p's version
```

A prompt file is optional YAML front matter between two `---` lines (`name`, `description`, `model`,
`labels`, `parameters`, anything else) and a Mustache body. A body split by lines that hold only a role
marker (`<!-- system -->`, `<!-- developer -->`, `<!-- user -->`, `<!-- assistant -->`: HTML comments,
invisible in rendered Markdown and never mistaken for text) is a chat: `render()` returns the list of
`{"role", "content"}` messages; a body without markers renders to one text. The name is the front
matter's `name`, else the file's stem; the version is the first 12 hex digits of the SHA-256 of the
whole file (front matter included) with its line endings normalized, so the same file has the same
version on every machine without asking anyone.

Variables are the names the template uses, found by chevron's own tokenizer (sections count); a name used
outside any section that `render()` is not given raises `PromptVariableMissing`; extra names are allowed.
Values are inserted as they are: prompts are not HTML, `{{x}}` does not escape `<>&"`.

`render()` tags the next LLM span started in the same context (thread or asyncio task), inside a span of
the app's or not, with the OpenInference `llm.prompt_template.template` / `.version` / `.variables` and
tracehouse's `llm.prompt_template.name`: one render, one call. A render made inside a span that ended
before any LLM call tags nothing. `PromptSpanProcessor` does the tagging; `render()` adds it to the
global SDK tracer provider the first time (or call `install(provider)`).

`load(name, label="production")` asks the collector (`GET /v1/prompts/NAME?label=...`, 2 s, the OTLP
headers) for the labelled version, and falls back to the local file, with one warning, when the collector
is unreachable or says no: the app never fails to start because of the registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import chevron
import yaml
from chevron.tokenizer import ChevronError
from openinference.semconv.trace import SpanAttributes
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from tracehouse.instrumentation import attributes
from tracehouse.instrumentation._context import _TRACELOOP_PROMPT
from tracehouse.instrumentation._scores import _env, _ssl_context, scores_headers

log = logging.getLogger("tracehouse.instrumentation")

PROMPTS_DIR_ENV = "TRACEHOUSE_PROMPTS_DIR"
PROMPTS_ENDPOINT_ENV = "TRACEHOUSE_PROMPTS_ENDPOINT"
DEFAULT_DIRECTORY = "prompts"
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
PROMPTS_PATH = "/v1/prompts/"
SUFFIX = ".md"
ROLES = ("system", "developer", "user", "assistant")
REGISTRY_TIMEOUT = 2.0
_GRPC_PORT, _HTTP_PORT = 4317, 4318

TEMPLATE_ATTRIBUTE = SpanAttributes.LLM_PROMPT_TEMPLATE
VERSION_ATTRIBUTE = SpanAttributes.LLM_PROMPT_TEMPLATE_VERSION
VARIABLES_ATTRIBUTE = SpanAttributes.LLM_PROMPT_TEMPLATE_VARIABLES
NAME_ATTRIBUTE = attributes.PROMPT_TEMPLATE_NAME

_MARKER = re.compile(r"[ \t]*<!--[ \t]*(" + "|".join(ROLES) + r")[ \t]*-->[ \t]*", re.IGNORECASE)
_CHEVRON_LINE = re.compile(r"line (\d+)")
_FRONT_MATTER_END = ("---", "...")
# chevron's tokenizer counts lines in module globals: one tokenization at a time.
_tokenize_lock = threading.Lock()


class PromptError(ValueError):
    """A prompt file (or registry answer) that cannot be used; the message names the file and line."""


class PromptNotFound(PromptError, LookupError):
    """No prompt of that name: neither a file in the directory nor (when asked) the registry."""


class PromptVariableMissing(PromptError, KeyError):
    """`render()` was not given a variable the template uses outside any section."""

    def __init__(self, message: str, variables: tuple[str, ...], source: str) -> None:
        super().__init__(message)
        self.variables = variables
        self.source = source

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class PromptMessage:
    """One part of a prompt body: its role (None for a body without role markers) and its template."""

    role: str | None
    template: str
    line: int  # where the part's text starts in the file (1-based)


@dataclass(frozen=True)
class _Part:
    role: str | None
    tokens: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Prompt:
    """A loaded prompt. `render(**variables)` gives the text or the chat messages and tags the next LLM call."""

    name: str
    version: str  # content hash: first 12 hex digits of sha256 of the normalized file
    template: str  # the body, without the front matter
    metadata: dict[str, Any]  # the front matter
    messages: tuple[PromptMessage, ...]
    variables: frozenset[str]  # every top-level name the template uses
    required: frozenset[str]  # those used outside any section: render() must be given them
    source: str  # the file's path, or "registry <url>"
    path: Path | None = None
    version_number: int | None = None  # the registry's sequential number; None for a file
    labels: tuple[str, ...] = ()
    _parts: tuple[_Part, ...] = field(default=(), repr=False, compare=False)

    @property
    def is_chat(self) -> bool:
        """True when the body is split into role-marked messages."""
        return bool(self.messages) and self.messages[0].role is not None

    @property
    def model(self) -> str | None:
        model = self.metadata.get("model")
        return model if isinstance(model, str) else None

    @property
    def parameters(self) -> dict[str, Any]:
        """The front matter's default call parameters (temperature, max_tokens, ...), a copy."""
        return dict(self.metadata.get("parameters") or {})

    def render(self, **variables: Any) -> str | list[dict[str, str]]:
        """The text (a body without role markers) or the list of {"role", "content"} messages.

        Tags the next LLM span started in this context with the template, version, name and variables."""
        missing = tuple(sorted(name for name in self.required if name not in variables))
        if missing:
            names = ", ".join(repr(name) for name in missing)
            raise PromptVariableMissing(
                f"prompt {self.name!r} ({self.source}) uses {names}: not given to render()", missing, self.source
            )
        contents = [
            chevron.render(part.tokens, variables, partials_path=None, partials_dict={}).strip() for part in self._parts
        ]
        _tag_next_call(self, {name: variables[name] for name in sorted(self.variables) if name in variables})
        if not self.is_chat:
            return contents[0]
        return [{"role": str(part.role), "content": text} for part, text in zip(self._parts, contents, strict=True)]


# ----------------------------------------------------------------------------------------------- parsing


def normalize(text: str) -> str:
    """The text a version is computed from: no byte-order mark, `\\n` line endings."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def content_version(text: str) -> str:
    """A prompt file's version: the first 12 hex digits of the SHA-256 of its normalized UTF-8 text."""
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()[:12]


def _split_front_matter(text: str, source: str) -> tuple[dict[str, Any], str, int]:
    """(front matter, body, line of the body's first line) of normalized text."""
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return {}, text, 1
    for index in range(1, len(lines)):
        if lines[index].rstrip() in _FRONT_MATTER_END:
            break
    else:
        raise PromptError(f"{source}: line 1: front matter opened with '---' is never closed")
    raw = "\n".join(lines[1:index])
    try:
        loaded = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 2}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PromptError(f"{source}: {where}front matter is not YAML: {problem}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise PromptError(
            f"{source}: line 2: front matter must be a YAML mapping (key: value), not {type(loaded).__name__}"
        )
    _check_front_matter(loaded, source)
    return loaded, "\n".join(lines[index + 1 :]), index + 2


def _check_front_matter(meta: dict[str, Any], source: str) -> None:
    name = meta.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or "\n" in name):
        raise PromptError(f"{source}: front matter 'name' must be a non-empty one-line string, not {name!r}")
    labels = meta.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(item, str) for item in labels)):
        raise PromptError(f"{source}: front matter 'labels' must be a list of strings, not {labels!r}")
    parameters = meta.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise PromptError(f"{source}: front matter 'parameters' must be a mapping, not {parameters!r}")


def _split_parts(body: str, first_line: int) -> list[tuple[str | None, str, int]]:
    """(role, text, line of the text) per part; one part with role None when the body has no marker."""
    lines = body.split("\n")
    markers = [
        (index, match.group(1).lower()) for index, line in enumerate(lines) if (match := _MARKER.fullmatch(line))
    ]
    if not markers:
        return [(None, body, first_line)]
    parts = []
    if "\n".join(lines[: markers[0][0]]).strip():
        parts.append(("", "\n".join(lines[: markers[0][0]]), first_line))  # text before the first marker
    bounds = [index for index, _ in markers] + [len(lines)]
    for (start, role), end in zip(markers, bounds[1:], strict=True):
        parts.append((role, "\n".join(lines[start + 1 : end]), first_line + start + 1))
    return parts


def _trim(text: str, line: int) -> tuple[str, int]:
    """The text without leading blank lines and trailing whitespace, and the line it now starts on."""
    stripped = text.lstrip("\n")
    return stripped.rstrip(), line + len(text) - len(stripped)


def _tokens(template: str, line: int, source: str) -> tuple[tuple[str, str], ...]:
    """chevron's tokens with every `{{x}}` made `{{{x}}}` (no HTML escaping); errors name the file line."""
    try:
        with _tokenize_lock:
            tokens = list(chevron.tokenizer.tokenize(template))
    except ChevronError as exc:
        message = "; ".join(str(exc).split("\n"))
        message = _CHEVRON_LINE.sub(lambda m: f"line {int(m.group(1)) + line - 1}", message)
        found = _CHEVRON_LINE.search(message)
        where = f"line {found.group(1)}: " if found else ""
        raise PromptError(f"{source}: {where}template does not parse: {message}") from None
    for kind, key in tokens:
        if kind == "partial":
            raise PromptError(f"{source}: partials ({{{{> {key}}}}}) are not supported in prompt templates")
    return tuple(("no escape" if kind == "variable" else kind, key) for kind, key in tokens)


def _names(parts: tuple[_Part, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """(every top-level name the tokens use, those used outside any section)."""
    used: set[str] = set()
    required: set[str] = set()
    for part in parts:
        depth = 0
        for kind, key in part.tokens:
            if kind in ("no escape", "section", "inverted section") and key != ".":
                root = key.split(".", 1)[0]
                used.add(root)
                if depth == 0:
                    required.add(root)
            if kind in ("section", "inverted section"):
                depth += 1
            elif kind == "end":
                depth -= 1
    return frozenset(used), frozenset(required)


def parse(text: str, source: str, default_name: str) -> Prompt:
    """A prompt from a file's text; `source` (the path) is named in every error."""
    text = normalize(text)
    meta, body, body_line = _split_front_matter(text, source)
    messages: list[PromptMessage] = []
    parts: list[_Part] = []
    for role, part_text, line in _split_parts(body, body_line):
        if role == "":
            raise PromptError(
                f"{source}: line {line}: text before the first role marker; put it under <!-- system --> or "
                f"remove it (markers: {', '.join(f'<!-- {r} -->' for r in ROLES)})"
            )
        template, start = _trim(part_text, line)
        parts.append(_Part(role, _tokens(template, start, source)))
        messages.append(PromptMessage(role, template, start))
    used, required = _names(tuple(parts))
    labels = meta.get("labels") or []
    return Prompt(
        name=meta.get("name") or default_name,
        version=content_version(text),
        template=body,
        metadata=meta,
        messages=tuple(messages),
        variables=used,
        required=required,
        source=source,
        labels=tuple(labels),
        _parts=tuple(parts),
    )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PromptError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PromptError(f"{path}: line {line}: not UTF-8 (byte {exc.start})") from None


def parse_file(path: str | os.PathLike[str]) -> Prompt:
    """A prompt from one file (its name defaults to the file's stem)."""
    path = Path(path)
    prompt = parse(_read_text(path), str(path), path.stem)
    return _replace(prompt, path=path)


def _replace(prompt: Prompt, **changes: Any) -> Prompt:
    return dataclasses.replace(prompt, **changes)


def _file_name(path: Path) -> str:
    """The name a file claims: its front matter's `name`, else its stem (the body is not parsed)."""
    meta, _, _ = _split_front_matter(normalize(_read_text(path)), str(path))
    return meta.get("name") or path.stem


def _files_by_name(directory: Path) -> dict[str, Path]:
    """name -> file for the directory's *.md files; two files claiming one name is an error naming both."""
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*" + SUFFIX)):
        if not path.is_file():
            continue
        name = _file_name(path)
        if name in found:
            raise PromptError(f"prompt {name!r} is claimed by two files: {found[name]} and {path}")
        found[name] = path
    return found


def load_directory(directory: str | os.PathLike[str] | None = None) -> dict[str, Prompt]:
    """Every prompt of a directory, each file fully checked (what `tracehouse prompts sync` registers)."""
    folder = resolve_directory(directory)
    return {name: parse_file(path) for name, path in _files_by_name(folder).items()}


# ----------------------------------------------------------------------------------------- configuration


@dataclass
class _Settings:
    directory: str | None = None
    endpoint: str | None = None
    headers: dict[str, str] | None = None


_settings = _Settings()
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def configure(
    *,
    directory: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Where `load()` looks: the prompts directory and the collector's base URL (and its headers).

    Each call replaces the previous one; None means the default (TRACEHOUSE_PROMPTS_DIR / ./prompts, and
    TRACEHOUSE_PROMPTS_ENDPOINT / the OTLP settings)."""
    _settings.directory = os.fspath(directory) if directory is not None else None
    _settings.endpoint = endpoint
    _settings.headers = dict(headers) if headers is not None else None


def resolve_directory(directory: str | os.PathLike[str] | None = None) -> Path:
    """`directory`, else configure(directory=), else TRACEHOUSE_PROMPTS_DIR, else ./prompts."""
    chosen = directory if directory is not None else _settings.directory or _env(PROMPTS_DIR_ENV) or DEFAULT_DIRECTORY
    return Path(chosen)


def registry_base(endpoint: str | None = None) -> str:
    """The collector's base URL: `endpoint`, configure(endpoint=), TRACEHOUSE_PROMPTS_ENDPOINT, else the OTLP
    endpoint (its /v1/traces dropped, the gRPC port 4317 turned into the HTTP port 4318, as score() does)."""
    explicit = endpoint or _settings.endpoint or _env(PROMPTS_ENDPOINT_ENV)
    base = explicit or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    if "://" not in base:
        base = "http://" + base
    parts = urlsplit(base)
    path = parts.path.rstrip("/").removesuffix("/v1/traces")
    netloc = parts.netloc
    if not explicit and parts.port == _GRPC_PORT:
        netloc = netloc.rsplit(":", 1)[0] + f":{_HTTP_PORT}"
    return urlunsplit(parts._replace(netloc=netloc, path=path, query="", fragment=""))


def prompt_url(name: str, label: str, endpoint: str | None = None) -> str:
    return f"{registry_base(endpoint)}{PROMPTS_PATH}{quote(name, safe='')}?label={quote(label, safe='')}"


# ------------------------------------------------------------------------------------------------ loading


def _load_local(name: str, directory: str | os.PathLike[str] | None) -> Prompt:
    folder = resolve_directory(directory)
    if not folder.is_dir():
        raise PromptNotFound(f"prompt {name!r}: no prompts directory {folder} (set {PROMPTS_DIR_ENV} or configure())")
    path = _files_by_name(folder).get(name)
    if path is None:
        raise PromptNotFound(
            f"prompt {name!r}: no file in {folder} has this name ({name}{SUFFIX} or front matter name:)"
        )
    return parse_file(path)


def _fetch(name: str, label: str, endpoint: str | None, headers: Mapping[str, str] | None) -> Prompt | str:
    """The registry's prompt, or why not (a sentence); never raises."""
    url = "?"
    try:
        url = prompt_url(name, label, endpoint)
        sent = scores_headers(headers if headers is not None else _settings.headers)
        request = urllib.request.Request(url, headers={**sent, "Accept": "application/json"}, method="GET")
        with urllib.request.urlopen(request, timeout=REGISTRY_TIMEOUT, context=_ssl_context(url)) as response:
            body = json.loads(response.read())
        if not isinstance(body, dict) or not isinstance(body.get("template"), str):
            return f"{url} answered without a template"
        prompt = parse(body["template"], f"registry {url}", str(body.get("name") or name))
        number = body.get("version_number")
        version = body.get("version")
        if isinstance(version, str) and version and version != prompt.version:
            log.warning(
                "tracehouse: registry version %s of prompt %r differs from its content hash %s",
                version,
                name,
                prompt.version,
            )
        labels = body.get("labels")
        return _replace(
            prompt,
            version=version if isinstance(version, str) and version else prompt.version,
            version_number=number if isinstance(number, int) and not isinstance(number, bool) else None,
            labels=tuple(str(item) for item in labels) if isinstance(labels, list) else prompt.labels,
        )
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200].strip()
        return f"{url} answered {exc.code}" + (f": {detail}" if detail else "")
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} unreachable: {getattr(exc, 'reason', exc)}"
    except Exception as exc:  # noqa: BLE001 - the registry must never break the app
        return f"{url} gave an unusable answer: {exc}"


def _warn_once(name: str, label: str, message: str) -> None:
    with _warned_lock:
        if (name, label) in _warned:
            return
        _warned.add((name, label))
    log.warning("%s", message)


def load(
    name: str,
    directory: str | os.PathLike[str] | None = None,
    *,
    label: str | None = None,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Prompt:
    """The prompt `name`: from the directory's files, or with `label` the registry's labelled version.

    With `label`, the collector is asked first (2 s); when it cannot answer, the local file is used and a
    warning logged once. Errors (PromptError) name the file and line; PromptNotFound when neither has it."""
    if label is None:
        return _load_local(name, directory)
    fetched = _fetch(name, label, endpoint, headers)
    if isinstance(fetched, Prompt):
        return fetched
    try:
        prompt = _load_local(name, directory)
    except PromptNotFound as exc:
        raise PromptNotFound(f"{exc}; and the registry: {fetched}") from None
    _warn_once(
        name,
        label,
        f"tracehouse: prompt {name!r} label {label!r} not fetched ({fetched}); "
        f"using {prompt.source} version {prompt.version}",
    )
    return prompt


# ------------------------------------------------------------------------------------------------ tagging


@dataclass(frozen=True)
class _Pending:
    attributes: dict[str, str]
    span: trace.Span  # current when render() ran: a render in a span that ended tags nothing


_pending: ContextVar[_Pending | None] = ContextVar("tracehouse_pending_prompt", default=None)
_installed: weakref.WeakSet[Any] = weakref.WeakSet()
_install_lock = threading.Lock()
_LLM_OPERATIONS = frozenset({"chat", "text_completion", "completion", "generate_content"})


def _tag_next_call(prompt: Prompt, variables: dict[str, Any]) -> None:
    values = {
        TEMPLATE_ATTRIBUTE: prompt.template,
        VERSION_ATTRIBUTE: prompt.version,
        NAME_ATTRIBUTE: prompt.name,
        VARIABLES_ATTRIBUTE: json.dumps(variables, ensure_ascii=False, default=str),
    }
    _pending.set(_Pending(values, trace.get_current_span()))
    install()


def _is_llm_span(present: Mapping[str, Any]) -> bool:
    """An LLM call's span as OpenInference, the GenAI conventions or OpenLLMetry start it."""
    if present.get(SpanAttributes.OPENINFERENCE_SPAN_KIND) == "LLM":
        return True
    return present.get("gen_ai.operation.name") in _LLM_OPERATIONS or present.get("llm.request.type") in _LLM_OPERATIONS


class PromptSpanProcessor(SpanProcessor):
    """Puts the last rendered prompt on the next LLM span started in the same context, then forgets it."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        pending = _pending.get()
        if pending is None:
            return
        present = span.attributes or {}
        if not _is_llm_span(present):
            return
        _pending.set(None)
        rendered_in = pending.span
        if rendered_in.get_span_context().is_valid and not rendered_in.is_recording():
            return  # rendered inside a span that has ended since
        values = dict(pending.attributes)
        if any(key.startswith("gen_ai.") for key in present):
            values.update({_TRACELOOP_PROMPT[key]: value for key, value in pending.attributes.items()})
        span.set_attributes(values)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def install(provider: Any = None) -> bool:
    """Add a PromptSpanProcessor to `provider` (default: the global one) once; False when it is not an SDK
    provider (nothing to tag then)."""
    target = provider if provider is not None else trace.get_tracer_provider()
    if target in _installed:
        return True
    if not hasattr(target, "add_span_processor"):
        return False
    with _install_lock:
        if target in _installed:
            return True
        target.add_span_processor(PromptSpanProcessor())
        _installed.add(target)
    return True
