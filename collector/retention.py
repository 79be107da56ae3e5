"""Retention: content expires before metadata, by ClickHouse TTLs that the engine applies in merges.

    [retention]
    content_days = 30        # prompts, responses, messages, tool calls, raw content attributes (0: as long as the row)
    metadata_days = 400      # the whole span: tokens, cost, latency, ids (0: forever)
    rollup_days = 0          # the daily rollups llm_daily and llm_user_daily (0: forever)

    [[retention.override]]   # per service and/or feature; the first matching override wins
    service = "support-bot"
    content_days = 7

The defaults keep everything (0), like the OTel Collector's ClickHouse exporter: expiry is the
operator's decision. The TTLs are the document schema/retention.sql, rendered from these settings and
applied at every migrate (collector start, `tracehouse migrate`) whose rendering differs from the one
recorded, so changing the settings and restarting is all it takes; each change is logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracehouse.collector.settings import ConfigError, Section, check_keys

ENV_CONTENT_DAYS = "TRACEHOUSE_CONTENT_DAYS"
ENV_METADATA_DAYS = "TRACEHOUSE_METADATA_DAYS"
_KEYS = {"content_days", "metadata_days", "rollup_days", "override"}
_OVERRIDE_KEYS = {"service", "feature", "content_days", "metadata_days"}
# The TTL document in schema/; store.apply_retention records the digest of its rendering under this name.
DOCUMENT = "retention.sql"
MAX_DAYS = 36_500
# DateTime's last second: "never" where one override keeps forever and another does not (an expiry
# expression must give a time for every row, and Timestamp + 100 years would wrap past 2106).
_NEVER = "toDateTime(4294967295)"


@dataclass(frozen=True)
class Override:
    """Different periods for the spans of one service and/or feature."""

    service: str = ""
    feature: str = ""
    content_days: int | None = None
    metadata_days: int | None = None

    def condition(self) -> str:
        parts = [f"ServiceName = {_quote(self.service)}"] if self.service else []
        if self.feature:
            parts.append(f"Feature = {_quote(self.feature)}")
        return " AND ".join(parts)

    def describe(self) -> str:
        return " and ".join(
            f"{what} {value!r}" for what, value in (("service", self.service), ("feature", self.feature)) if value
        )


@dataclass(frozen=True)
class RetentionSettings:
    """The `[retention]` section: days per kind of data, 0 = kept forever."""

    content_days: int = 0
    metadata_days: int = 0
    rollup_days: int = 0
    overrides: tuple[Override, ...] = field(default_factory=tuple)

    def days(self, kind: str) -> list[int]:
        """Every period of `kind` ('content' or 'metadata') a span may get: each override's, then the default."""
        default = getattr(self, f"{kind}_days")
        found = [getattr(o, f"{kind}_days") for o in self.overrides]
        return [default if value is None else value for value in found] + [default]

    @property
    def content_expires(self) -> bool:
        """Whether any span's content may expire (the retain stage writes the content-free copy then)."""
        return any(self.days("content"))

    def summary(self) -> str:
        def period(days: int) -> str:
            return f"{days} days" if days else "forever"

        text = (
            f"content {period(self.content_days)}, metadata {period(self.metadata_days)},"
            f" rollup {period(self.rollup_days)}"
        )
        for override in self.overrides:
            content = override.content_days if override.content_days is not None else self.content_days
            metadata = override.metadata_days if override.metadata_days is not None else self.metadata_days
            text += f"; {override.describe()}: content {period(content)}, metadata {period(metadata)}"
        return text


def _quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _days(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{name} must be a whole number of days (0 keeps forever), got {value!r}")
    try:
        days = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of days (0 keeps forever), got {value!r}") from None
    if not 0 <= days <= MAX_DAYS:
        raise ConfigError(f"{name} must be between 0 (keep forever) and {MAX_DAYS} days, got {days}")
    return days


def _override(entry: Any, index: int) -> Override:
    where = f"retention.override[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a table: [[retention.override]]")
    check_keys(entry, _OVERRIDE_KEYS, f"[{where}]")
    names = {}
    for key in ("service", "feature"):
        value = entry.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a string, got {value!r}")
        names[key] = value
    if not names["service"] and not names["feature"]:
        raise ConfigError(f"{where} needs a service or a feature to apply to")
    periods = {key: _days(entry[key], f"{where}.{key}") for key in ("content_days", "metadata_days") if key in entry}
    if not periods:
        raise ConfigError(f"{where} sets neither content_days nor metadata_days")
    return Override(**names, **periods)


def parse_retention(table: Mapping[str, Any], environ: Mapping[str, str]) -> RetentionSettings:
    check_keys(table, _KEYS, "[retention]")
    content = environ.get(ENV_CONTENT_DAYS) or table.get("content_days", 0)
    metadata = environ.get(ENV_METADATA_DAYS) or table.get("metadata_days", 0)
    name_content = ENV_CONTENT_DAYS if environ.get(ENV_CONTENT_DAYS) else "retention.content_days"
    name_metadata = ENV_METADATA_DAYS if environ.get(ENV_METADATA_DAYS) else "retention.metadata_days"
    overrides = table.get("override", [])
    if not isinstance(overrides, list):
        raise ConfigError("retention.override must be an array of tables: [[retention.override]]")
    return RetentionSettings(
        _days(content, name_content),
        _days(metadata, name_metadata),
        _days(table.get("rollup_days", 0), "retention.rollup_days"),
        tuple(_override(entry, i) for i, entry in enumerate(overrides)),
    )


RETENTION = Section(
    "retention",
    (ENV_CONTENT_DAYS, ENV_METADATA_DAYS),
    parse_retention,
    "retention: days before content, then whole spans, expire (TTLs)",
)


# -- The TTL document -------------------------------------------------------------------------------------


def _days_expression(settings: RetentionSettings, kind: str) -> str:
    default = getattr(settings, f"{kind}_days")
    arms = [
        f"{o.condition()}, {getattr(o, f'{kind}_days')}"
        for o in settings.overrides
        if getattr(o, f"{kind}_days") is not None
    ]
    return f"multiIf({', '.join(arms)}, {default})" if arms else str(default)


def _expiry(days: list[int], expression: str, start: str) -> str | None:
    """The TTL expression for these periods, or None when all keep forever."""
    if not any(days):
        return None
    expiry = f"{start} + toIntervalDay({expression})"
    return expiry if all(days) else f"if({expression} = 0, {_NEVER}, {expiry})"


def _column(expiry: str | None) -> str:
    return f"TTL {expiry}" if expiry else "REMOVE TTL"


def _table(expiry: str | None) -> str:
    return f"MODIFY TTL {expiry}" if expiry else "REMOVE TTL"


def placeholders(settings: RetentionSettings) -> dict[str, str]:
    """Each placeholder of schema/retention.sql, rendered."""
    span_start = "toDateTime(Timestamp)"
    content_days, metadata_days = settings.days("content"), settings.days("metadata")
    # Tables without service or feature keep the longest period any rule gives (0, forever, is the longest).
    longest_content = [0] if 0 in content_days else [max(content_days)]
    longest_metadata = [0] if 0 in metadata_days else [max(metadata_days)]
    return {
        "content": _column(_expiry(content_days, _days_expression(settings, "content"), span_start)),
        "rows": _table(_expiry(metadata_days, _days_expression(settings, "metadata"), span_start)),
        "trace_index_rows": _table(_expiry(longest_metadata, str(longest_metadata[0]), "End")),
        "score_content": _column(_expiry(longest_content, str(longest_content[0]), span_start)),
        "score_rows": _table(_expiry(longest_metadata, str(longest_metadata[0]), span_start)),
        "rollup_rows": _table(_expiry([settings.rollup_days], str(settings.rollup_days), "day")),
    }


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render(templates: tuple[str, ...], settings: RetentionSettings) -> tuple[str, ...]:
    """The statements of schema/retention.sql (split, comments gone) with their placeholders filled in."""
    values = placeholders(settings)

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise RuntimeError(f"schema/{DOCUMENT}: unknown placeholder {match.group(0)}")
        return values[match.group(1)]

    return tuple(_PLACEHOLDER.sub(fill, statement) for statement in templates)


def keeps_everything(settings: RetentionSettings) -> bool:
    return not settings.content_expires and not any(settings.days("metadata")) and not settings.rollup_days
