"""Keyed hash tokens: the same value gives the same token under the same secret, across restarts,
so hashed user ids still group and join, while the value cannot be recovered without the secret."""

from __future__ import annotations

import hashlib
import hmac


class Hasher:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def digest(self, value: bytes) -> str:
        return hmac.new(self._secret, value, hashlib.sha256).hexdigest()

    def token(self, value: bytes) -> str:
        """The replacement for a hashed attribute or column value (128 bits of the HMAC)."""
        return f"[HASH:{self.digest(value)[:32]}]"

    def short(self, value: bytes) -> str:
        """The suffix of a hashed in-text replacement such as [EMAIL:<16 hex>], a prefix of token()'s."""
        return self.digest(value)[:16]
