"""Envelope encryption with AES-256-GCM (the ``cryptography`` package).

    master key (KEK, versioned, from a key file or FACEGATE_MASTER_KEYS)
      └─ wraps each tenant's data key (DEK, 32 bytes), with the tenant id as associated data
           └─ seals each template, with tenant, subject, template id and space as associated data

Associated data binds a ciphertext to its row: a sealed template copied to another subject or
tenant fails to open. Every failure to open raises the same ``ProtectionError`` (no oracle).
Rotation re-wraps data keys under the newest master key; templates are not touched.

The master keys come from one of two sources, both behind ``MasterKeys``: the key file (or
FACEGATE_MASTER_KEYS), ``KeyRing`` here, the simple default; or a PKCS#11 token
(``facegate.protection.pkcs11_ring``), where the master key never leaves the token
(docs/keys.md says what each stops).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from facegate.errors import ConfigError, ProtectionError, UnavailableError

NONCE_BYTES = 12


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise ProtectionError("a protected value could not be opened") from exc


class MasterKeys(Protocol):
    """A source of versioned master keys that wraps data keys and derives sub-keys without
    handing out the master key itself (the PKCS#11 ring cannot). ``current`` wraps new data
    keys; ``derive`` is HMAC-SHA256 under the master key of ``version`` (the audit chain and
    checkpoint keys, the rate-limit bucket secret)."""

    @property
    def current(self) -> int: ...

    @property
    def writable(self) -> bool:
        """Whether this process can add and retire versions (not so for FACEGATE_MASTER_KEYS)."""
        ...

    def versions(self) -> list[int]: ...

    def wrap(self, dek: bytes, tenant_id: str) -> tuple[int, bytes]: ...

    def unwrap(self, version: int, wrapped: bytes, tenant_id: str) -> bytes: ...

    def derive(self, version: int, info: bytes) -> bytes: ...

    def add_version(self) -> int: ...

    def retire(self, versions: list[int]) -> None: ...

    def refresh(self) -> None: ...

    def describe(self) -> dict[str, str]:
        """Where the keys live, for operator output (never key material)."""
        ...


def dek_aad(tenant_id: str) -> bytes:
    """A wrapped data key is bound to its tenant (both key sources use it)."""
    return b"dek|" + tenant_id.encode()


def unknown_version(version: int) -> UnavailableError:
    return UnavailableError(
        "a master key version this server does not hold is in use: give it the current"
        " key file, FACEGATE_MASTER_KEYS or token, and restart",
        code="master_key_unknown",
        key_version=version,
    )


@dataclass
class KeyRing:
    """Master keys by version from the key file or FACEGATE_MASTER_KEYS; ``current`` wraps new
    data keys. Implements ``MasterKeys``."""

    keys: dict[int, bytes] = field(repr=False)  # master keys: never in a repr, log or traceback
    current: int
    path: Path | None = None  # where it lives, when file-backed (rotation writes it)

    def key(self, version: int) -> bytes:
        """The master key of ``version``. A version this process has not seen was made by a
        rotation in another process or machine: a file-backed ring re-reads its file once; an
        unknown version is then ``UnavailableError`` (503: restart with the new keys), never an
        error that blames the data."""
        if version not in self.keys:
            self.refresh()
        if version not in self.keys:
            raise unknown_version(version)
        return self.keys[version]

    @property
    def writable(self) -> bool:
        return self.path is not None

    def versions(self) -> list[int]:
        return sorted(self.keys)

    def derive(self, version: int, info: bytes) -> bytes:
        """HMAC-SHA256(master key, info): byte-identical to what the audit chain and the rate
        limits derived before ``MasterKeys`` existed, so existing chains keep verifying."""
        return hmac.new(self.key(version), info, hashlib.sha256).digest()

    def describe(self) -> dict[str, str]:
        if self.path is None:
            return {"source": "FACEGATE_MASTER_KEYS"}
        return {"source": "key file", "path": str(self.path)}

    def refresh(self) -> None:
        """Re-read a file-backed ring (keys are only ever added there, never changed)."""
        if self.path is None or not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        for v, k in data["keys"].items():
            self.keys.setdefault(int(v), bytes.fromhex(k))
        self.current = max(self.current, int(data["current"]))

    def wrap(self, dek: bytes, tenant_id: str) -> tuple[int, bytes]:
        return self.current, seal(self.keys[self.current], dek, dek_aad(tenant_id))

    def unwrap(self, version: int, wrapped: bytes, tenant_id: str) -> bytes:
        return open_sealed(self.key(version), wrapped, dek_aad(tenant_id))

    def add_version(self) -> int:
        """A new master key becomes current (file-backed key rings only)."""
        if self.path is None:
            raise ConfigError(
                "master keys come from FACEGATE_MASTER_KEYS: put the new key first there",
                code="keys_from_environment",
            )
        version = max(self.keys) + 1
        self.keys[version] = secrets.token_bytes(32)
        self.current = version
        self.save()
        return version

    def retire(self, versions: list[int]) -> None:
        """Remove old versions from the key file (never the current one). Another process that
        still holds them in memory keeps them until restarted; ``refresh`` only ever adds."""
        assert self.path is not None and self.current not in versions
        for v in versions:
            self.keys.pop(v, None)
        self.save()

    def save(self) -> None:
        assert self.path is not None
        data = {"current": self.current, "keys": {str(v): k.hex() for v, k in self.keys.items()}}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        tmp.replace(self.path)


def load_keyring(key_file: Path, master_keys: str | None = None) -> KeyRing:
    """The master keys: ``master_keys`` ("3:hex,2:hex": current first, from the setting
    ``FACEGATE_MASTER_KEYS``) when given, else the key file (0600), created with one fresh key on
    first start. The key file is deliberately not in the data folder (``Settings.key_file``), so
    that a copy of the data folder alone opens nothing."""
    env = master_keys
    if env:
        keys: dict[int, bytes] = {}
        order: list[int] = []
        try:
            for item in env.split(","):
                version, hexkey = item.strip().split(":")
                keys[int(version)] = bytes.fromhex(hexkey)
                order.append(int(version))
        except ValueError as exc:
            raise ConfigError("FACEGATE_MASTER_KEYS is malformed", code="bad_key") from exc
        if not order or any(len(k) != 32 for k in keys.values()):
            raise ConfigError("master keys must be 32 bytes (64 hex digits)", code="bad_key")
        return KeyRing(keys, order[0])
    path = key_file
    if path.exists():
        data = json.loads(path.read_text())
        return KeyRing(
            {int(v): bytes.fromhex(k) for v, k in data["keys"].items()}, int(data["current"]), path
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    ring = KeyRing({1: secrets.token_bytes(32)}, 1, path)
    ring.save()
    return ring
