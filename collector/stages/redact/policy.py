"""Which policy applies to an attribute key: configured keys and globs, built-in defaults for
credential-looking keys, and the prompt/response keys that content-free mode drops."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from tracehouse.collector.columns import COPIED_FROM, ContentKeys, remember_for_key

KEEP, SCAN, REDACT, HASH, DROP = "keep", "scan", "redact", "hash", "drop"

# Keys whose whole value is a credential, whatever it looks like (matched on the lower-cased key).
DEFAULT_KEY_POLICIES: tuple[tuple[str, str], ...] = tuple(
    (glob, REDACT)
    for glob in (
        "*password*",
        "*passwd*",
        "*secret*",
        "*api_key*",
        "*apikey*",
        "*api-key*",
        "*authorization*",
        "*access_token*",
        "*refresh_token*",
        "*auth_token*",
        "*cookie*",
        "*private_key*",
    )
)


def _is_glob(key: str) -> bool:
    return any(ch in key for ch in "*?[")


class KeyPolicies:
    """Resolves a key to a policy; answers are cached, keys repeat across spans."""

    def __init__(
        self,
        configured: Iterable[tuple[str, str]],
        defaults: bool = True,
        content_keys: Iterable[str] = (),
    ) -> None:
        configured = list(configured)
        self._exact = {key: policy for key, policy in configured if not _is_glob(key)}
        self._globs = [(key, policy) for key, policy in configured if _is_glob(key)]
        self._defaults = DEFAULT_KEY_POLICIES if defaults else ()
        self.is_content = ContentKeys(content_keys)
        self._cache: dict[str, str] = {}

    def policy(self, key: str) -> str:
        found = self._cache.get(key)
        if found is None:
            found = self._resolve(key)
            remember_for_key(self._cache, key, found)
        return found

    def _resolve(self, key: str) -> str:
        if key in self._exact:
            return self._exact[key]
        for glob, policy in self._globs:
            if fnmatchcase(key, glob):
                return policy
        lowered = key.lower()
        for glob, policy in self._defaults:
            if fnmatchcase(lowered, glob):
                return policy
        return SCAN

    def column_policy(self, column: str, explicit: dict[str, str]) -> str:
        """A column's own policy, else the first non-scanning policy of an attribute it is read from."""
        if column in explicit:
            return explicit[column]
        # A policy on an attribute a column is copied from also applies to the column: hashing `user.id`
        # must not leave the raw id in UserId, nor masking `service.name` the raw name in ServiceName.
        for key in COPIED_FROM.get(column, ()):
            policy = self.policy(key)
            if policy not in (SCAN, KEEP):
                return policy
        return SCAN
