"""Named steps: a decorator and a context manager that open an OpenInference CHAIN (or AGENT, TOOL, ...)
span, so the LLM calls made inside become its children and a trace reads as the app's own structure.

The span carries `openinference.span.kind`, `input.value` and `output.value` with their mime types
(text/plain for strings, application/json otherwise); an exception is recorded on it and sets its status
to Error before it propagates.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast, overload

from openinference.semconv.trace import OpenInferenceMimeTypeValues, SpanAttributes
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

F = TypeVar("F", bound=Callable[..., Any])
TRACER_NAME = "tracehouse.instrumentation"
KINDS = frozenset({"CHAIN", "AGENT", "TOOL", "RETRIEVER", "RERANKER", "EMBEDDING", "GUARDRAIL", "EVALUATOR"})
_UNSET: Any = object()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # pydantic models, the openai client's responses
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _checked_kind(kind: str) -> str:
    upper = kind.upper()
    if upper not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    return upper


def value_attributes(prefix: str, value: Any) -> dict[str, AttributeValue]:
    """`<prefix>.value` and `<prefix>.mime_type` for a step's input or output."""
    if isinstance(value, str):
        return {f"{prefix}.value": value, f"{prefix}.mime_type": OpenInferenceMimeTypeValues.TEXT.value}
    try:
        text = json.dumps(value, default=_jsonable, ensure_ascii=False)
    except (TypeError, ValueError):  # e.g. a dict with tuple keys: its repr beats losing the step
        return {f"{prefix}.value": repr(value), f"{prefix}.mime_type": OpenInferenceMimeTypeValues.TEXT.value}
    return {f"{prefix}.value": text, f"{prefix}.mime_type": OpenInferenceMimeTypeValues.JSON.value}


class Step:
    """An open step: set its output (or more attributes) while it runs."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def set_input(self, value: Any) -> None:
        self.span.set_attributes(value_attributes("input", value))

    def set_output(self, value: Any) -> None:
        self.span.set_attributes(value_attributes("output", value))

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.span.set_attribute(key, value)


@contextmanager
def step(
    name: str,
    *,
    kind: str = "CHAIN",
    input: Any = _UNSET,  # noqa: A002 - the OpenInference name
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Step]:
    """Open a step span named `name` as the current span:

    ```python
    with step("retrieve", input=question) as s:
        docs = search(question)
        s.set_output([d.id for d in docs])
    ```
    """
    kind = _checked_kind(kind)
    start_attributes: dict[str, AttributeValue] = {SpanAttributes.OPENINFERENCE_SPAN_KIND: kind}
    if kind == "TOOL":
        start_attributes[SpanAttributes.TOOL_NAME] = name
    start_attributes.update(attributes or {})
    if input is not _UNSET:
        start_attributes.update(value_attributes("input", input))
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(name, attributes=start_attributes) as span:
        yield Step(span)
        if span.is_recording() and getattr(span, "status", None) is not None and span.status.is_unset:
            span.set_status(Status(StatusCode.OK))


def _call_input(signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The call's arguments by name, without self/cls; a single argument as itself."""
    if signature is None:
        return {"args": list(args), "kwargs": kwargs}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    arguments = {name: value for name, value in bound.arguments.items() if name not in ("self", "cls")}
    return next(iter(arguments.values())) if len(arguments) == 1 else arguments


def _decorate(func: F, name: str | None, kind: str) -> F:
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError("a generator cannot be a step; use `with step(...)` inside it")
    kind = _checked_kind(kind)
    span_name = name or func.__qualname__
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with step(span_name, kind=kind, input=_call_input(signature, args, kwargs)) as current:
                result = await func(*args, **kwargs)
                current.set_output(result)
                return result

        return cast(F, async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with step(span_name, kind=kind, input=_call_input(signature, args, kwargs)) as current:
            result = func(*args, **kwargs)
            current.set_output(result)
            return result

    return cast(F, wrapper)


@overload
def chain(func: F, /) -> F: ...


@overload
def chain(name: str | None = None, /, *, kind: str = "CHAIN") -> Callable[[F], F]: ...


def chain(func_or_name: Any = None, /, *, kind: str = "CHAIN") -> Any:
    """Decorator: each call of the function is a step span with its arguments as input and its return
    value as output. `@chain`, `@chain("name")` or `@chain("name", kind="AGENT")`; plain or async."""
    if callable(func_or_name):
        return _decorate(func_or_name, None, kind)

    def decorator(func: F) -> F:
        return _decorate(func, func_or_name, kind)

    return decorator
