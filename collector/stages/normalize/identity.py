"""Who and what a span is for: user, session, feature and tenant, each decided by one function.

`metadata` is the span's metadata object as the winning mapper read it: OpenInference `metadata`
JSON, OpenLLMetry `traceloop.association.properties.*` or Vercel `ai.telemetry.metadata.*`. The
`tracehouse.*` names are the app side's (tracehouse.instrumentation.attributes, which imports nothing).

The tenant here is the one the app claims; with API keys configured the pipeline stores the key's
tenant instead (processing.with_key_tenant).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracehouse.collector.columns import (
    METADATA_FEATURE_KEYS,
    METADATA_SESSION_KEYS,
    METADATA_TENANT_KEYS,
    METADATA_USER_KEYS,
    SESSION_ATTRIBUTES,
    USER_ATTRIBUTES,
    USER_FALLBACK_ATTRIBUTES,
)
from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.values import cut, short
from tracehouse.instrumentation import attributes

TENANT_ATTRIBUTE = attributes.TENANT
FEATURE_ATTRIBUTE = attributes.FEATURE

# Span attributes any of the resolvers reads; a span with none of them and no metadata skips the lookups.
SPAN_KEYS = frozenset(
    (TENANT_ATTRIBUTE, FEATURE_ATTRIBUTE, *USER_ATTRIBUTES, *USER_FALLBACK_ATTRIBUTES, *SESSION_ATTRIBUTES)
)


def _from_attrs(attrs: Mapping[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = attrs.get(key)
        if value:
            return value
    return ""


def _from_metadata(metadata: Mapping[str, Any] | None, keys: tuple[str, ...]) -> str:
    if not metadata:
        return ""
    for key in keys:
        value = metadata.get(key)
        if value is not None and value != "":
            return value if isinstance(value, str) else str(value)
    return ""


def resolve_tenant(
    span_attrs: Mapping[str, str], resource_attrs: Mapping[str, str], metadata: Mapping[str, Any] | None = None
) -> str:
    """The tenant the app claims for a span: `tracehouse.tenant` on the span, a `tenant_id` in its
    metadata, then `tracehouse.tenant` on the resource."""
    return short(
        span_attrs.get(TENANT_ATTRIBUTE)
        or _from_metadata(metadata, METADATA_TENANT_KEYS)
        or resource_attrs.get(TENANT_ATTRIBUTE)
    )


def resolve_feature(
    span_attrs: Mapping[str, str], resource_attrs: Mapping[str, str], metadata: Mapping[str, Any] | None = None
) -> str:
    """`tracehouse.feature` on the span, a `feature` key in its metadata, then `tracehouse.feature` on the resource."""
    return short(
        span_attrs.get(FEATURE_ATTRIBUTE)
        or _from_metadata(metadata, METADATA_FEATURE_KEYS)
        or resource_attrs.get(FEATURE_ATTRIBUTE)
    )


def resolve_user(span_attrs: Mapping[str, str], metadata: Mapping[str, Any] | None = None) -> str:
    """`tracehouse.user` or `user.id`, a `user_id` in the metadata, then `llm.user` / `enduser.id`."""
    return short(
        _from_attrs(span_attrs, USER_ATTRIBUTES)
        or _from_metadata(metadata, METADATA_USER_KEYS)
        or _from_attrs(span_attrs, USER_FALLBACK_ATTRIBUTES)
    )


def resolve_session(span_attrs: Mapping[str, str], metadata: Mapping[str, Any] | None = None) -> str:
    """`tracehouse.session`, `session.id` or `gen_ai.conversation.id`, then a `session_id` in the metadata."""
    return short(_from_attrs(span_attrs, SESSION_ATTRIBUTES) or _from_metadata(metadata, METADATA_SESSION_KEYS))


def _bounded(
    user: str | None, session: str | None, tenant: str | None, feature: str | None
) -> tuple[str, str, str, str]:
    """`short` for four attribute strings (or None), in one call rather than four."""
    limit = limits.MAX_SHORT_CHARS
    return (
        (user if len(user) <= limit else cut(user, limit)) if user else "",
        (session if len(session) <= limit else cut(session, limit)) if session else "",
        (tenant if len(tenant) <= limit else cut(tenant, limit)) if tenant else "",
        (feature if len(feature) <= limit else cut(feature, limit)) if feature else "",
    )


# Without metadata, the user is the first of these (metadata would come between the two tuples).
_USER_WITHOUT_METADATA = USER_ATTRIBUTES + USER_FALLBACK_ATTRIBUTES


def resolve_identity(
    span_attrs: Mapping[str, str], resource_attrs: Mapping[str, str], metadata: Mapping[str, Any] | None
) -> tuple[str, str, str, str]:
    """(user, session, tenant, feature) of a span, exactly as the four resolvers above decide them, in one
    call: the stage asks for every span. Attribute values are strings here, as decode renders them."""
    if metadata:
        return (
            resolve_user(span_attrs, metadata),
            resolve_session(span_attrs, metadata),
            resolve_tenant(span_attrs, resource_attrs, metadata),
            resolve_feature(span_attrs, resource_attrs, metadata),
        )
    # No metadata, the common case: the resolvers without their metadata steps.
    tenant = resource_attrs.get(TENANT_ATTRIBUTE)
    feature = resource_attrs.get(FEATURE_ATTRIBUTE)
    if SPAN_KEYS.isdisjoint(span_attrs):
        return _bounded(None, None, tenant, feature)
    get = span_attrs.get
    return _bounded(
        _from_attrs(span_attrs, _USER_WITHOUT_METADATA),
        _from_attrs(span_attrs, SESSION_ATTRIBUTES),
        get(TENANT_ATTRIBUTE) or tenant,
        get(FEATURE_ATTRIBUTE) or feature,
    )
