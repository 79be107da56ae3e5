"""Encryption at rest ([encryption]): content never reaches disk in the clear, under keys the operator holds.

The operator gives one or more 256-bit keys (64 hex digits each), in a file outside the data dir
(`key_file`, one key per line, `#` comments) or in TRACEHOUSE_ENCRYPTION_KEY (comma separated); the last one
is current, the earlier ones stay readable (rotation: append a new key, restart). Nothing of a key is
written to the data dir: only a fingerprint per key (a one-way digest) in `encryption.json`, so a store is
refused, naming why, when opened without its keys.

From each key, HKDF derives a key per use:
- the embedded store's: a ClickHouse encrypted disk (AES-256-CTR) under every MergeTree table, set up by
  the chDB config this module writes (its keys come from the process environment, never from the file); a
  store created before encryption was turned on keeps reading its old parts, and `store.migrate` moves
  them onto the encrypted disk. Queries never spill to disk (the external group-by/sort/join/distinct
  thresholds are 0; readonly=1 keeps them so);
- the spool's and the dead letters': AES-256-GCM per record (`RecordSealer`), bound to where the record
  sits (associated data), the key's fingerprint in front so an older key still opens its records;
- the request digests' (retry detection): a keyed BLAKE2b, so the spool does not confirm a guessed body.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracehouse.collector.settings import ConfigError, Section, check_keys

ENV_KEY = "TRACEHOUSE_ENCRYPTION_KEY"
ENV_KEY_FILE = "TRACEHOUSE_ENCRYPTION_KEY_FILE"
_KEYS = ("key_file",)
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
FINGERPRINT_BYTES = 4
NONCE_BYTES = 12
MARKER = "encryption.json"  # in the data dir: fingerprints only
SHARED_MEMORY = "/dev/shm"  # the driver's insert files go there: they hold rows in the clear
CHDB_CONFIG = "clickhouse-encryption.xml"  # in the data dir: names the keys' variables, holds no key
DISK_KEY_ENV = "TRACEHOUSE_DISK_KEY_{}"
ENCRYPTED_DISK = "encrypted"
STORAGE_POLICY = "tracehouse_encrypted"
# Queries must not write intermediate data to the store's tmp dir in the clear.
NO_SPILL = {
    f"max_bytes{ratio}_before_external_{what}": "0"
    for what in ("group_by", "sort", "distinct", "join")
    for ratio in ("", "_ratio")
}


@dataclass(frozen=True)
class EncryptionSettings:
    keys: tuple[bytes, ...] = ()
    source: str = ""  # where the keys came from, for messages

    @property
    def enabled(self) -> bool:
        return bool(self.keys)


def _parse_keys(text: str, where: str) -> tuple[bytes, ...]:
    keys = []
    items = [item for line in text.splitlines() for item in line.split("#", 1)[0].split(",")]
    for raw in items:
        value = raw.strip()
        if not value:
            continue
        if not _HEX_KEY.fullmatch(value):
            raise ConfigError(
                f"{where}: key {len(keys) + 1} must be 64 hex digits (a 256-bit key, e.g. from"
                f" `openssl rand -hex 32`), got {len(value)} characters"
            )
        keys.append(bytes.fromhex(value))
    if not keys:
        raise ConfigError(f"{where}: no key in it (64 hex digits per line)")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{where}: the same key is listed twice")
    return tuple(keys)


def parse_encryption(table: Mapping[str, Any], environ: Mapping[str, str]) -> EncryptionSettings:
    check_keys(table, _KEYS, "[encryption]")
    if environ.get(ENV_KEY):
        return EncryptionSettings(_parse_keys(environ[ENV_KEY], ENV_KEY), ENV_KEY)
    key_file = environ.get(ENV_KEY_FILE) or table.get("key_file", "")
    if not key_file:
        return EncryptionSettings()
    if not isinstance(key_file, str):
        raise ConfigError(f"encryption.key_file must be a path, got {key_file!r}")
    path = Path(key_file).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"encryption.key_file {path}: {exc.strerror or exc}") from None
    return EncryptionSettings(_parse_keys(text, f"encryption.key_file {path}"), str(path.resolve()))


ENCRYPTION = Section(
    "encryption",
    (ENV_KEY, ENV_KEY_FILE),
    parse_encryption,
    "encryption at rest: the store, the spool and dead letters, under keys kept outside the data dir",
)


# --- keys ----------------------------------------------------------------------------------------------


def _derive(key: bytes, purpose: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tracehouse " + purpose.encode()).derive(key)


def fingerprint(key: bytes) -> bytes:
    return hashlib.sha256(b"tracehouse key fingerprint\0" + key).digest()[:FINGERPRINT_BYTES]


class SealFailed(Exception):
    """A sealed record cannot be opened: its key is not given, or it was altered or moved."""


@dataclass
class RecordSealer:
    """AES-256-GCM for spool records and dead letters: `fingerprint | nonce | ciphertext+tag`."""

    settings: EncryptionSettings
    purpose: str = "spool"
    _ciphers: dict[bytes, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        for key in self.settings.keys:
            self._ciphers[fingerprint(key)] = AESGCM(_derive(key, self.purpose))
        self._current = fingerprint(self.settings.keys[-1])
        # The request digests' key (from the current key: a rotation starts new digests).
        self.digest_key = _derive(self.settings.keys[-1], "request digest")

    @property
    def overhead(self) -> int:
        return FINGERPRINT_BYTES + NONCE_BYTES + 16

    def seal(self, data: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return self._current + nonce + self._ciphers[self._current].encrypt(nonce, data, associated)

    def open(self, blob: bytes, associated: bytes, where: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        key_id = bytes(blob[:FINGERPRINT_BYTES])
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealFailed(f"{where} is sealed with key {key_id.hex()}, which is not among the keys given")
        nonce = bytes(blob[FINGERPRINT_BYTES : FINGERPRINT_BYTES + NONCE_BYTES])
        try:
            return cipher.decrypt(nonce, memoryview(blob)[FINGERPRINT_BYTES + NONCE_BYTES :], associated)  # no copy
        except InvalidTag:
            raise SealFailed(f"{where} does not open with key {key_id.hex()}: altered or moved") from None


def sealer_for(settings: EncryptionSettings, purpose: str = "spool") -> RecordSealer | None:
    return RecordSealer(settings, purpose) if settings.enabled else None


# --- the embedded store --------------------------------------------------------------------------------


def _marker(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / MARKER).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None  # no marker (or no data dir yet: the command says what is wrong with it)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{data_dir / MARKER}: unreadable ({exc}); it records which keys the data needs") from None


def check_keys_for(data_dir: Path, settings: EncryptionSettings) -> None:
    """Refuse to open a data dir whose data needs keys that are not given (or when encryption was turned off)."""
    recorded = _marker(data_dir)
    if recorded is None:
        return
    needed = list(recorded.get("fingerprints", []))
    if not settings.enabled:
        raise ConfigError(
            f"the data in {data_dir} is encrypted: give its keys ([encryption] key_file, or {ENV_KEY}); turning"
            " encryption off for an existing data dir is not supported"
        )
    given = {fingerprint(key).hex() for key in settings.keys}
    missing = [fp for fp in needed if fp not in given]
    if missing:
        raise ConfigError(
            f"the data in {data_dir} needs the key(s) with fingerprint {', '.join(missing)}, not among the"
            f" {len(given)} key(s) from {settings.source}: keep every earlier key and append the new one last"
        )


def record_keys(data_dir: Path, settings: EncryptionSettings) -> None:
    """Write the fingerprints of every key the data may now be sealed with (never the keys)."""
    recorded = _marker(data_dir) or {}
    fingerprints = list(recorded.get("fingerprints", []))
    for key in settings.keys:
        if fingerprint(key).hex() not in fingerprints:
            fingerprints.append(fingerprint(key).hex())
    if fingerprints != recorded.get("fingerprints"):
        path = data_dir / MARKER
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"fingerprints": fingerprints}, indent=1) + "\n")
        os.replace(temporary, path)


def chdb_options(data_dir: Path, settings: EncryptionSettings) -> dict[str, str]:
    """The chDB options for an encrypted embedded store: its config file (written here, naming the
    environment variables that hold the disk keys, which are set in this process) and no spilling."""
    keys = []
    for n, key in enumerate(settings.keys):
        variable = DISK_KEY_ENV.format(n)
        os.environ[variable] = _derive(key, "chdb disk").hex()
        keys.append(f'<key_hex id="{n}" from_env="{variable}"/>')
    # New parts go to the encrypted disk; the plain `default` volume is there so a store created before
    # encryption was on still finds its old parts (store.migrate moves them).
    config = f"""<clickhouse>
  <storage_configuration>
    <disks>
      <default></default>
      <{ENCRYPTED_DISK}>
        <type>encrypted</type><algorithm>AES_256_CTR</algorithm><disk>default</disk><path>encrypted/</path>
        {"".join(keys)}<current_key_id>{len(keys) - 1}</current_key_id>
      </{ENCRYPTED_DISK}>
    </disks>
    <policies>
      <{STORAGE_POLICY}>
        <volumes>
          <main><disk>{ENCRYPTED_DISK}</disk></main>
          <default><disk>default</disk></default>
        </volumes>
        <move_factor>0</move_factor>
      </{STORAGE_POLICY}>
    </policies>
  </storage_configuration>
  <merge_tree><storage_policy>{STORAGE_POLICY}</storage_policy></merge_tree>
</clickhouse>
"""
    path = data_dir / CHDB_CONFIG
    if not path.exists() or path.read_text() != config:
        path.write_text(config)
    return {"config-file": str(path), **NO_SPILL}
