"""Tag what runs inside a block with user, session, feature, tenant, metadata, tags and prompt.

`tagged` builds on OpenInference's `using_attributes`, so OpenInference instrumentors (and every span an
OpenInference tracer starts) carry `user.id`, `session.id`, `metadata`, `tag.tags` and
`llm.prompt_template.*` as they always do. Feature and tenant have no OpenInference attribute: they go into
the metadata object as `feature` and `tenant_id`, the keys the collector's normalizer reads there.

`ContextSpanProcessor`, which `setup()` installs, copies the same values onto every other span started
inside the block (OpenLLMetry and other GenAI instrumentors, your own spans), as the attributes the
normalizer reads whatever the convention: `user.id`, `session.id`, `tracehouse.feature`,
`tracehouse.tenant`, and on GenAI spans the OpenLLMetry names for the prompt (`traceloop.prompt.*`) and
the metadata (`traceloop.association.properties.*`).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from openinference.instrumentation import using_attributes
from openinference.semconv.trace import SpanAttributes
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from tracehouse.instrumentation import attributes

F = TypeVar("F", bound=Callable[..., Any])

# Context keys, named after the span attribute each one becomes.
FEATURE_KEY = attributes.FEATURE
TENANT_KEY = attributes.TENANT
PROMPT_NAME_KEY = attributes.PROMPT_TEMPLATE_NAME
OPENINFERENCE_KEYS = (
    SpanAttributes.SESSION_ID,
    SpanAttributes.USER_ID,
    SpanAttributes.METADATA,
    SpanAttributes.TAG_TAGS,
    SpanAttributes.LLM_PROMPT_TEMPLATE,
    SpanAttributes.LLM_PROMPT_TEMPLATE_VERSION,
    SpanAttributes.LLM_PROMPT_TEMPLATE_VARIABLES,
)
# The normalizer's OpenLLMetry mapper reads the prompt under these names on GenAI spans.
_TRACELOOP_PROMPT = {
    PROMPT_NAME_KEY: "traceloop.prompt.key",
    SpanAttributes.LLM_PROMPT_TEMPLATE: "traceloop.prompt.template",
    SpanAttributes.LLM_PROMPT_TEMPLATE_VERSION: "traceloop.prompt.version",
    SpanAttributes.LLM_PROMPT_TEMPLATE_VARIABLES: "traceloop.prompt.template_variables",
}
_ASSOCIATION = "traceloop.association.properties."


def _json_object(raw: object) -> dict[str, Any]:
    """The metadata JSON OpenInference keeps in the context, as a dict ({} when it is not one)."""
    if not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _current_tags() -> list[str]:
    raw = otel_context.get_value(SpanAttributes.TAG_TAGS)
    return [str(tag) for tag in raw] if isinstance(raw, list | tuple) else []


class tagged:  # noqa: N801 - used like a function: `with tagged(user=...):`
    """Tag every span started inside the block (or the decorated function) for tracehouse.

    ```python
    with tagged(user="u-42", session="s-9", feature="support-bot", prompt_version="v3"):
        client.chat.completions.create(...)
    ```

    Nested blocks inherit the outer values; an inner value replaces an outer one, metadata objects are
    merged (inner keys win) and tags add up. `tenant` is what the app says: a collector that maps API keys
    to tenants overrides it. Usable as a decorator on plain and `async def` functions.
    """

    def __init__(
        self,
        *,
        user: str | None = None,
        session: str | None = None,
        feature: str | None = None,
        tenant: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        prompt_template: str | None = None,
        prompt_version: str | None = None,
        prompt_variables: Mapping[str, Any] | None = None,
        prompt_name: str | None = None,
    ) -> None:
        self._kwargs: dict[str, Any] = {
            "user": user,
            "session": session,
            "feature": feature,
            "tenant": tenant,
            "metadata": dict(metadata) if metadata else None,
            "tags": list(tags) if tags else None,
            "prompt_template": prompt_template,
            "prompt_version": prompt_version,
            "prompt_variables": dict(prompt_variables) if prompt_variables else None,
            "prompt_name": prompt_name,
        }
        self._entered: list[tuple[Any, object]] = []

    def _build(self) -> tuple[Any, dict[str, str]]:
        """OpenInference's context manager for the block, and the extra tracehouse context values."""
        k = self._kwargs
        metadata = _json_object(otel_context.get_value(SpanAttributes.METADATA))
        metadata.update(k["metadata"] or {})
        if k["feature"]:
            metadata[attributes.METADATA_FEATURE] = k["feature"]
        if k["tenant"]:
            metadata[attributes.METADATA_TENANT] = k["tenant"]
        tags = _current_tags()
        tags += [tag for tag in k["tags"] or () if tag not in tags]
        manager = using_attributes(
            session_id=k["session"] or "",
            user_id=k["user"] or "",
            metadata=metadata or None,
            tags=tags or None,
            prompt_template=k["prompt_template"] or "",
            prompt_template_version=k["prompt_version"] or "",
            prompt_template_variables=k["prompt_variables"],
        )
        extra = {FEATURE_KEY: k["feature"], TENANT_KEY: k["tenant"], PROMPT_NAME_KEY: k["prompt_name"]}
        return manager, {key: value for key, value in extra.items() if value}

    def __enter__(self) -> tagged:
        manager, extra = self._build()
        manager.__enter__()
        ctx = otel_context.get_current()
        for key, value in extra.items():
            ctx = otel_context.set_value(key, value, ctx)
        self._entered.append((manager, otel_context.attach(ctx)))
        return self

    def __exit__(self, *exc: object) -> None:
        manager, token = self._entered.pop()
        otel_context.detach(token)
        manager.__exit__(None, None, None)

    async def __aenter__(self) -> tagged:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def __call__(self, func: F) -> F:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError("tagged() cannot decorate a generator; use `with tagged(...)` inside it")
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with tagged(**self._kwargs):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with tagged(**self._kwargs):
                return func(*args, **kwargs)

        return cast(F, wrapper)


def _get(key: str, parent_context: otel_context.Context | None) -> Any:
    """A context value: from the context the span was started with, else the current one."""
    value = otel_context.get_value(key, parent_context) if parent_context is not None else None
    return value if value is not None else otel_context.get_value(key)


class ContextSpanProcessor(SpanProcessor):
    """Copies what `tagged` (or OpenInference's `using_*` helpers) put in the context onto every span at
    its start, whichever library started it. A value the span already has is left alone."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        present = span.attributes or {}
        found: dict[str, Any] = {}
        for key in (*OPENINFERENCE_KEYS, FEATURE_KEY, TENANT_KEY, PROMPT_NAME_KEY):
            value = _get(key, parent_context)
            if value is not None and value != "":
                found[key] = value
        if not found:
            return
        values = {key: value for key, value in found.items() if key not in present}
        if any(key.startswith("gen_ai.") for key in present):
            # An OpenInference tracer may already have copied its own keys: map what the span will carry.
            for source, target in _TRACELOOP_PROMPT.items():
                value = present.get(source, found.get(source))
                if value is not None and target not in present:
                    values[target] = value
            for name, value in _json_object(
                present.get(SpanAttributes.METADATA, found.get(SpanAttributes.METADATA))
            ).items():
                if isinstance(value, str | bool | int | float) and _ASSOCIATION + name not in present:
                    values[_ASSOCIATION + name] = value
        if values:
            span.set_attributes(values)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
