"""Master keys held in a PKCS#11 token (an HSM, a smart card, SoftHSM2): they never leave it.

Each master-key version is two token objects, both created inside the token as sensitive and
non-extractable (``CKA_SENSITIVE`` true, ``CKA_EXTRACTABLE`` false), so that neither their value
nor a wrapped copy can be read out (a deployment moving from the key file imports its versions
once, with the same attributes: ``token_import``):

- ``facegate-master-v<N>``: AES-256, encrypt/decrypt only. Data keys are wrapped with
  ``CKM_AES_GCM`` inside the token, the tenant id as associated data, a random 96-bit nonce:
  the same ``nonce | ciphertext | tag`` layout as the key file's ring. Not ``CKM_AES_KEY_WRAP_PAD``:
  it has no associated data, so a wrapped data key copied to another tenant's row would unwrap
  there, and its ``C_UnwrapKey`` yields a token object, while the data key must be used in the
  process (it seals every template; a token round trip per template would cap throughput).
- ``facegate-derive-v<N>``: a 256-bit generic secret, sign only, for ``CKM_SHA256_HMAC``: the
  audit chain key, the checkpoint signing seed and the rate-limit secret are derived inside the
  token and only those sub-keys reach the process. A separate key, not CMAC under the AES key:
  one key for one algorithm, and HMAC gives the 32 bytes the derived keys need.

The highest version in the token is the current one; a ring re-lists the token when asked for a
version it has not seen and at least every ``LISTING_MAX_AGE_S``, so a rotation made by another
process reaches it without a restart. The PIN is read from a private file (``read_pin``), held
with ``repr=False`` and never logged. One logged-in session per process and token, one operation at
a time (a PKCS#11 session is not safe for concurrent operations), re-opened after a fork.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facegate.errors import (
    ConfigError,
    ConflictError,
    InputError,
    ProtectionError,
    UnavailableError,
)
from facegate.protection.crypto import NONCE_BYTES, dek_aad, unknown_version
from facegate.protection.pin_file import read_pin

WRAP_LABEL = "facegate-master-v{}"
DERIVE_LABEL = "facegate-derive-v{}"
_LABEL = re.compile(r"^facegate-(master|derive)-v(\d+)$")
# How long a ring trusts its listing of the token's versions before re-listing (one
# C_FindObjects): a version added by `keys rotate` in another process becomes current here
# within this time even if nothing asks for it by number.
LISTING_MAX_AGE_S = 60.0
UNWRAPPED_CACHE = 1024  # tenants' unwrapped data keys kept per process (oldest dropped first)


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError as exc:  # the optional extra
        raise ConfigError(
            "FACEGATE_PKCS11_MODULE is set but python-pkcs11 is not installed:"
            " pip install 'facegate[pkcs11]'",
            code="bad_setting",
        ) from exc
    return pkcs11


# PKCS#11 login state belongs to the process, not to a session: one logged-in session per
# (module, token) and process, shared by every ring in it, guarded by one lock.
_SESSIONS: dict[tuple[str, str], tuple[int, Any, str]] = {}
_SESSIONS_LOCK = threading.RLock()


def _shared_session(module: str, token_label: str, pin: str) -> Any:
    p11 = _pkcs11()
    with _SESSIONS_LOCK:
        got = _SESSIONS.get((module, token_label))
        if got is not None and got[0] == os.getpid():
            if not hmac.compare_digest(got[2].encode(), pin.encode()):
                raise p11.exceptions.PinIncorrect()
            return got[1]
        lib = p11.lib(module)
        if got is not None:  # a forked child must not reuse its parent's module state
            lib.reinitialize()
        token = lib.get_token(token_label=token_label)
        try:
            session = token.open(user_pin=pin, rw=True)
        except p11.exceptions.UserAlreadyLoggedIn:  # logged in by a session opened before
            session = token.open(rw=True)
        _SESSIONS[(module, token_label)] = (os.getpid(), session, pin)
        return session


def _drop_session(module: str, token_label: str) -> None:
    with _SESSIONS_LOCK:
        _SESSIONS.pop((module, token_label), None)


@dataclass
class Pkcs11KeyRing:
    """``MasterKeys`` in a PKCS#11 token (see the module doc)."""

    module: str
    token_label: str
    pin: str = field(repr=False)
    _keys: dict[int, tuple[Any, Any]] = field(default_factory=dict, repr=False)
    _derived: dict[tuple[int, bytes], bytes] = field(default_factory=dict, repr=False)
    # data keys unwrapped by the token: every request opens its tenant's keys, and a token
    # round trip (milliseconds on a network HSM) for a key the process already holds is waste
    _unwrapped: dict[tuple[int, bytes, str], bytes] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)
    _listed_at: float = field(default=0.0, repr=False)

    # --- the token session -------------------------------------------------------------------

    @contextmanager
    def _open(self) -> Iterator[Any]:
        """The process's session on the token, logged in, one operation at a time. A token that
        is gone or refuses the PIN is ``UnavailableError`` (503), never an error that blames
        the data."""
        p11 = _pkcs11()
        with _SESSIONS_LOCK:
            try:
                session = _shared_session(self.module, self.token_label, self.pin)
                if session is not self._session:
                    self._session = session
                    self._keys.clear()  # object handles belong to the session that found them
                yield session
            except p11.exceptions.NoSuchToken as exc:
                raise UnavailableError(
                    "the PKCS#11 token named by FACEGATE_PKCS11_TOKEN is not present",
                    code="key_token_unavailable",
                ) from exc
            except (p11.exceptions.PinIncorrect, p11.exceptions.PinLocked) as exc:
                raise UnavailableError(
                    "the PKCS#11 token refused the PIN", code="key_token_unavailable"
                ) from exc
            except (
                p11.exceptions.DeviceRemoved,
                p11.exceptions.DeviceError,
                p11.exceptions.TokenNotPresent,
                p11.exceptions.SessionClosed,
                p11.exceptions.SessionHandleInvalid,
                p11.exceptions.KeyHandleInvalid,
                p11.exceptions.ObjectHandleInvalid,
                p11.exceptions.TokenNotRecognised,
            ) as exc:
                _drop_session(self.module, self.token_label)  # the next call opens a fresh one
                raise UnavailableError(
                    "the PKCS#11 token is not answering", code="key_token_unavailable"
                ) from exc

    def _load(self, session: Any) -> None:
        found = token_objects(session)
        self._keys = {v: (o["master"], o["derive"]) for v, o in found.items() if len(o) == 2}
        self._listed_at = time.monotonic()
        self._forget(lambda version: version not in self._keys)  # retired elsewhere

    def _pair(self, version: int) -> tuple[Any, Any]:
        if version not in self._keys:
            self.refresh()
        if version not in self._keys:
            raise unknown_version(version)
        return self._keys[version]

    # --- MasterKeys --------------------------------------------------------------------------

    @property
    def current(self) -> int:
        versions = self.versions()
        if not versions:
            raise ConfigError(
                f"the PKCS#11 token {self.token_label!r} holds no facegate master key:"
                " run 'facegate keys init-token' once",
                code="key_token_empty",
            )
        return versions[-1]

    @property
    def writable(self) -> bool:
        return True

    def versions(self) -> list[int]:
        """The versions in the token, highest (``current``) last: listed once, then again when
        the listing is older than ``LISTING_MAX_AGE_S`` (another process may have rotated)."""
        with self._open() as session:
            if not self._keys or time.monotonic() - self._listed_at > LISTING_MAX_AGE_S:
                self._load(session)
            return sorted(self._keys)

    def refresh(self) -> None:
        """Re-list the token's keys now: a version another process added is usable and, being
        the highest, ``current``; one it destroyed (``keys retire``) is gone at once, unlike the
        key file's ring, which keeps a retired key in memory until restart: a destroyed token
        object cannot be used any more, so its handle would only fail later. Also run by
        ``unwrap``/``derive`` once for a version not in the listing, before answering 503
        ``master_key_unknown``."""
        with self._open() as session:
            self._load(session)

    def wrap(self, dek: bytes, tenant_id: str) -> tuple[int, bytes]:
        p11 = _pkcs11()
        version = self.current
        with self._open():
            aes, _ = self._pair(version)
            nonce = secrets.token_bytes(NONCE_BYTES)
            params = p11.mechanisms.GCMParams(nonce, dek_aad(tenant_id), 128)
            out = aes.encrypt(dek, mechanism=p11.Mechanism.AES_GCM, mechanism_param=params)
        return version, nonce + bytes(out)

    def _forget(self, gone: Any) -> None:
        """Drop what was derived or unwrapped under versions for which ``gone(version)``."""
        for d in [k for k in self._derived if gone(k[0])]:
            del self._derived[d]
        for u in [k for k in self._unwrapped if gone(k[0])]:
            del self._unwrapped[u]

    def unwrap(self, version: int, wrapped: bytes, tenant_id: str) -> bytes:
        cached = self._unwrapped.get((version, wrapped, tenant_id))
        if cached is not None:
            return cached
        out = self._unwrap_in_token(version, wrapped, tenant_id)
        if len(self._unwrapped) >= UNWRAPPED_CACHE:
            del self._unwrapped[next(iter(self._unwrapped))]  # the oldest
        self._unwrapped[(version, wrapped, tenant_id)] = out
        return out

    def _unwrap_in_token(self, version: int, wrapped: bytes, tenant_id: str) -> bytes:
        p11 = _pkcs11()
        with self._open():
            aes, _ = self._pair(version)
            if len(wrapped) <= NONCE_BYTES + 16:
                raise ProtectionError("a protected value could not be opened")
            params = p11.mechanisms.GCMParams(wrapped[:NONCE_BYTES], dek_aad(tenant_id), 128)
            try:
                out = aes.decrypt(
                    wrapped[NONCE_BYTES:], mechanism=p11.Mechanism.AES_GCM, mechanism_param=params
                )
            except (
                p11.exceptions.EncryptedDataInvalid,
                p11.exceptions.EncryptedDataLenRange,
                p11.exceptions.GeneralError,  # SoftHSM2's answer to a failed tag
                p11.exceptions.FunctionFailed,
            ) as exc:
                raise ProtectionError("a protected value could not be opened") from exc
        return bytes(out)

    def derive(self, version: int, info: bytes) -> bytes:
        """HMAC-SHA256(derive key of ``version``, info), computed inside the token; cached, as
        the sub-key is in the process from then on anyway."""
        got = self._derived.get((version, info))
        if got is not None:
            return got
        p11 = _pkcs11()
        with self._open():
            _, mac_key = self._pair(version)
            got = bytes(mac_key.sign(info, mechanism=p11.Mechanism.SHA256_HMAC))
        self._derived[(version, info)] = got
        return got

    def add_version(self) -> int:
        """A new version, generated inside the token, becomes current."""
        with self._open() as session:
            self._load(session)
            version = max(self._keys, default=0) + 1
            create_version(session, version)
            self._load(session)
        return version

    def retire(self, versions: list[int]) -> None:
        """Destroy old versions in the token (never the current one): irreversible, which is why
        ``facegate keys retire`` first checks that nothing uses them."""
        current = self.current
        if current in versions:  # a check that survives python -O: destroy is irreversible
            raise ConflictError(
                "the current master key cannot be retired", code="master_key_current"
            )
        with self._open() as session:
            self._load(session)
            for v in versions:
                for obj in self._keys.get(v, ()):
                    obj.destroy()
            self._load(session)
        self._forget(lambda version: version in versions)

    def describe(self) -> dict[str, str]:
        return {"source": "pkcs11", "module": self.module, "token": self.token_label}


def token_objects(session: Any) -> dict[int, dict[str, Any]]:
    """Every facegate key object in the token, by version and kind (``master``, ``derive``);
    a version with one object only (an interrupted import) is listed too."""
    p11 = _pkcs11()
    found: dict[int, dict[str, Any]] = {}
    for obj in session.get_objects({p11.Attribute.CLASS: p11.ObjectClass.SECRET_KEY}):
        m = _LABEL.match(str(obj.label or ""))
        if m:
            found.setdefault(int(m.group(2)), {})[m.group(1)] = obj
    return found


def key_attributes(kind: str) -> dict[Any, bool]:
    """The attributes of a ``master`` (AES, encrypt/decrypt) or ``derive`` (generic secret, sign)
    object: persistent, private (only a logged-in session can use it), sensitive, never
    extractable, unmodifiable, and good for its one use only. Generated (``create_version``) and
    imported (``token_import``) objects get the same."""
    attr = _pkcs11().Attribute
    common = {
        attr.TOKEN: True,
        attr.PRIVATE: True,
        attr.SENSITIVE: True,
        attr.EXTRACTABLE: False,
        attr.MODIFIABLE: False,
        attr.WRAP: False,
        attr.UNWRAP: False,
        attr.DERIVE: False,
    }
    if kind == "master":
        return {**common, attr.ENCRYPT: True, attr.DECRYPT: True, attr.SIGN: False}
    return {**common, attr.SIGN: True, attr.VERIFY: False, attr.ENCRYPT: False, attr.DECRYPT: False}


def create_version(session: Any, version: int) -> None:
    """The two objects of one version, generated inside the token (``key_attributes``)."""
    p11 = _pkcs11()
    session.generate_key(
        p11.KeyType.AES,
        256,
        label=WRAP_LABEL.format(version),
        id=version.to_bytes(4, "big"),
        store=True,
        template=key_attributes("master"),
    )
    session.generate_key(
        p11.KeyType.GENERIC_SECRET,
        256,
        label=DERIVE_LABEL.format(version),
        id=version.to_bytes(4, "big"),
        store=True,
        template=key_attributes("derive"),
    )


def open_pkcs11_ring(module: Path, token_label: str, pin_file: Path | None) -> Pkcs11KeyRing:
    if pin_file is None:
        raise ConfigError(
            "FACEGATE_PKCS11_MODULE needs FACEGATE_PKCS11_PIN_FILE (the token's user PIN)",
            code="bad_setting",
        )
    if not module.is_file():
        raise ConfigError("FACEGATE_PKCS11_MODULE names no file", code="bad_setting")
    return Pkcs11KeyRing(str(module), token_label, read_pin(pin_file))


def init_token(ring: Pkcs11KeyRing, first_version: int = 1) -> dict[str, Any]:
    """The first master key in an empty token (``facegate keys init-token``); a token that
    already holds one is left alone. ``first_version`` above 1 keeps a migrated deployment's
    token versions apart from its key file's (docs/keys.md)."""
    if first_version < 1:
        raise InputError("--first-version must be at least 1", code="bad_request")
    existing = ring.versions()
    if existing:
        return {"created": False, "versions": existing, **ring.describe()}
    with ring._open() as session:
        create_version(session, first_version)
    ring.refresh()
    return {"created": True, "versions": ring.versions(), **ring.describe()}
