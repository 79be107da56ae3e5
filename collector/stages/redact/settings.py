"""The [redaction] table of the config file, checked once at start-up.

Every problem raises RedactionConfigError naming the setting (never a redacted value), so a
collector with a bad rule does not start rather than running without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

from tracehouse.collector.settings import ConfigError, Section, did_you_mean
from tracehouse.collector.stages.redact.columns import MAP_COLUMNS, TEXT_COLUMNS, UNSCANNED
from tracehouse.collector.stages.redact.detectors import TYPES
from tracehouse.collector.stages.redact.scanner import re2_options

ENV_SWITCH = "TRACEHOUSE_REDACTION"
ENV_SECRET = "TRACEHOUSE_REDACTION_HASH_SECRET"

POLICIES = ("keep", "scan", "redact", "hash", "drop")
_POLICY_ALIASES = {"mask": "redact"}
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ANCHORS = re.compile(r"\^|\$|\\A|\\z")
_OFF = {"off", "false", "0", "no", "disabled"}
_ON = {"on", "true", "1", "yes", "enabled"}

_TOP_KEYS = {
    "enabled",
    "mode",
    "hash_secret",
    "detectors",
    "allow",
    "allow_patterns",
    "default_policies",
    "attributes",
    "columns",
    "rules",
    "content_free",
}
_RULE_KEYS = {"name", "pattern", "replacement", "mode"}
_CONTENT_FREE_KEYS = {"services", "features", "keys"}


class RedactionConfigError(ConfigError):
    """A [redaction] setting that cannot be used."""


@dataclass(frozen=True)
class RuleSettings:
    name: str
    regex: Any  # a compiled re2 pattern over bytes
    replacement: str  # "" in hash mode
    per_value: bool


@dataclass(frozen=True)
class RedactionSettings:
    enabled: bool = True
    hash_builtins: bool = False
    hash_secret: bytes | None = None
    detectors: tuple[str, ...] = TYPES
    allow: tuple[str, ...] = ()
    allow_patterns: tuple[Any, ...] = ()
    default_policies: bool = True
    attributes: tuple[tuple[str, str], ...] = ()  # (key or glob, policy) in config order
    columns: Mapping[str, str] = field(default_factory=dict)
    rules: tuple[RuleSettings, ...] = ()
    content_free_services: frozenset[str] = frozenset()
    content_free_features: frozenset[str] = frozenset()
    content_keys: tuple[str, ...] = ()

    @property
    def uses_hash(self) -> bool:
        return (
            self.hash_builtins
            or any(policy == "hash" for _, policy in self.attributes)
            or any(policy == "hash" for policy in self.columns.values())
            or any(not rule.replacement for rule in self.rules)
        )


def parse_settings(table: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> RedactionSettings:
    """The [redaction] section, with the TRACEHOUSE_REDACTION* variables over it."""
    env = os.environ if environ is None else environ
    table = dict(table or {})
    _check_keys(table, _TOP_KEYS, "[redaction]")
    enabled = _bool(table.get("enabled", True), "redaction.enabled")
    switch = env.get(ENV_SWITCH, "").strip().lower()
    if switch in _OFF:
        enabled = False
    elif switch in _ON:
        enabled = True
    elif switch:
        raise RedactionConfigError(f"{ENV_SWITCH} must be on or off, got {switch!r}")
    if not enabled:
        return RedactionSettings(enabled=False)

    mode = table.get("mode", "label")
    if mode not in ("label", "hash"):
        raise RedactionConfigError(f"redaction.mode must be 'label' or 'hash', got {mode!r}")
    detectors = tuple(_str_list(table.get("detectors", list(TYPES)), "redaction.detectors"))
    for name in detectors:
        if name not in TYPES:
            raise RedactionConfigError(f"redaction.detectors: unknown detector {name!r}{did_you_mean(name, TYPES)}")
    allow_patterns = tuple(
        _compile(pattern, f"redaction.allow_patterns[{i}]")
        for i, pattern in enumerate(_str_list(table.get("allow_patterns", []), "redaction.allow_patterns"))
    )
    attributes = tuple(
        (key, _policy(value, f"redaction.attributes.{key!r}")) for key, value in _table(table, "attributes").items()
    )
    columns = {}
    for column, value in _table(table, "columns").items():
        _check_column(column)
        columns[column] = _policy(value, f"redaction.columns.{column}")
    rules = _rules(table.get("rules", []), mode)
    content_free = _table(table, "content_free")
    _check_keys(content_free, _CONTENT_FREE_KEYS, "[redaction.content_free]")
    secret = env.get(ENV_SECRET) or table.get("hash_secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise RedactionConfigError("redaction.hash_secret must be a non-empty string")
    settings = RedactionSettings(
        enabled=True,
        hash_builtins=mode == "hash",
        hash_secret=secret.encode() if secret else None,
        detectors=detectors,
        allow=tuple(_str_list(table.get("allow", []), "redaction.allow")),
        allow_patterns=allow_patterns,
        default_policies=_bool(table.get("default_policies", True), "redaction.default_policies"),
        attributes=attributes,
        columns=columns,
        rules=rules,
        content_free_services=frozenset(_str_list(content_free.get("services", []), "redaction.content_free.services")),
        content_free_features=frozenset(_str_list(content_free.get("features", []), "redaction.content_free.features")),
        content_keys=tuple(_str_list(content_free.get("keys", []), "redaction.content_free.keys")),
    )
    if settings.uses_hash and settings.hash_secret is None:
        raise RedactionConfigError(
            f"redaction: hashing is configured but no secret is set; set redaction.hash_secret or {ENV_SECRET}"
        )
    return settings


def _rules(raw: Any, mode: str) -> tuple[RuleSettings, ...]:
    if not isinstance(raw, list):
        raise RedactionConfigError("redaction.rules must be an array of tables ([[redaction.rules]])")
    rules = []
    seen = set()
    for i, entry in enumerate(raw):
        where = f"redaction.rules[{i}]"
        if not isinstance(entry, dict):
            raise RedactionConfigError(f"{where} must be a table with name and pattern")
        _check_keys(entry, _RULE_KEYS, where)
        name = entry.get("name")
        if not isinstance(name, str) or not _RULE_NAME.match(name):
            raise RedactionConfigError(f"{where}: name must match [a-z][a-z0-9_]* (it becomes a count key)")
        where = f"redaction rule {name!r}"
        if name in TYPES or name in seen:
            raise RedactionConfigError(f"{where}: the name is already used by a built-in detector or another rule")
        seen.add(name)
        pattern = entry.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise RedactionConfigError(f"{where}: pattern must be a non-empty string")
        regex = _compile(pattern, where)
        if regex.fullmatch(b"") is not None:
            raise RedactionConfigError(f"{where}: pattern matches the empty string")
        rule_mode = entry.get("mode", mode)
        if rule_mode not in ("label", "hash"):
            raise RedactionConfigError(f"{where}: mode must be 'label' or 'hash', got {rule_mode!r}")
        replacement = entry.get("replacement", f"[{name.upper()}]")
        if not isinstance(replacement, str) or '"' in replacement or "\\" in replacement:
            raise RedactionConfigError(f"{where}: replacement must be a string without quotes or backslashes")
        if rule_mode == "hash":
            replacement = ""
        rules.append(RuleSettings(name, regex, replacement, bool(_ANCHORS.search(pattern))))
    return tuple(rules)


def _check_keys(table: Mapping[str, Any], known: set[str], where: str) -> None:
    """A key nobody reads is a typo that would silently keep the default: refuse it, naming the nearest."""
    unknown = sorted(key for key in table if key not in known)
    if unknown:
        raise RedactionConfigError(
            "; ".join(f"{where}: unknown setting {key!r}{did_you_mean(key, known)}" for key in unknown)
        )


def _check_column(column: str) -> None:
    if column in TEXT_COLUMNS:
        return
    if column in MAP_COLUMNS:
        raise RedactionConfigError(
            f"redaction.columns: {column!r} is an attribute map; set policies per key in [redaction.attributes]"
        )
    if column in UNSCANNED:
        raise RedactionConfigError(f"redaction.columns: {column!r} is never scanned ({UNSCANNED[column]})")
    raise RedactionConfigError(f"redaction.columns: unknown text column {column!r}{did_you_mean(column, TEXT_COLUMNS)}")


def _compile(pattern: str, where: str) -> Any:
    """User patterns run on RE2: linear time whatever the pattern and the input."""
    try:
        return re2.compile(pattern.encode(), re2_options())
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RedactionConfigError(
            f"{where}: pattern is not valid RE2 syntax ({reason}); RE2 has no backreferences or lookaround"
        ) from None


def _policy(value: Any, where: str) -> str:
    policy = _POLICY_ALIASES.get(value, value)
    if policy not in POLICIES:
        raise RedactionConfigError(f"{where} must be one of {', '.join(POLICIES)} (or mask), got {value!r}")
    return policy


def _table(table: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = table.get(name, {})
    if not isinstance(value, dict):
        raise RedactionConfigError(f"redaction.{name} must be a table ([redaction.{name}])")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RedactionConfigError(f"{where} must be a list of strings")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RedactionConfigError(f"{where} must be true or false, got {value!r}")
    return value


REDACTION = Section(
    "redaction", (ENV_SWITCH, ENV_SECRET), parse_settings, "redaction: detectors, rules, policies, content-free mode"
)
