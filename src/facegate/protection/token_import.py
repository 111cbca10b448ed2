"""Moving an existing deployment from the key file to a PKCS#11 token
(``facegate keys import-to-token``).

Every master-key version of the key file (or of ``FACEGATE_MASTER_KEYS``, given on standard
input) becomes the same two token objects that ``keys init-token`` and ``keys rotate`` generate
(``facegate-master-v<N>``, ``facegate-derive-v<N>``: see ``pkcs11_ring``), holding *the same 32
bytes* as the file's version ``N``. That is what keeps the deployment's data readable:

- a data key the file wrapped (AES-256-GCM, tenant id as associated data) is opened by the
  token's ``CKM_AES_GCM`` under the same key, so no tenant's row has to change;
- an audit record keyed under version ``N`` was chained with HMAC-SHA256(file key, label), which
  is what ``CKM_SHA256_HMAC`` under the derive object gives, byte for byte, so ``audit verify``,
  the audit anchor and earlier signed checkpoints keep verifying.

The objects are created ``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE`` true and
``CKA_EXTRACTABLE`` false: from then on nothing reads them out. What an import cannot undo: the
key was outside the token before (the token says so, ``CKA_LOCAL`` false), and every copy of the
key file still holds it. Hence the procedure in docs/keys.md: import, check, then ``keys rotate``
(a version generated in the token) and ``keys rotate-data-key``, then delete the key file.

A version the token already holds is compared, never overwritten: the same key (the token's
derivation and a GCM round trip agree with the file's) is skipped, so running the import twice
is harmless; a different key refuses the whole import before anything is created. A version
found half there (an import interrupted between its two objects) is completed when the half
present is the file's key. Key bytes are never printed, logged or put in an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from facegate.errors import ConflictError, ProtectionError
from facegate.protection.crypto import NONCE_BYTES, KeyRing, open_sealed, seal
from facegate.protection.pkcs11_ring import (
    DERIVE_LABEL,
    WRAP_LABEL,
    Pkcs11KeyRing,
    _pkcs11,
    key_attributes,
    token_objects,
)

if TYPE_CHECKING:
    from facegate.storage.base import Store

KINDS = ("master", "derive")
SKIPPED = (
    "already in the token under the same key (its derivation and AES-GCM agree with the key"
    " file's): left as it is"
)


@dataclass(frozen=True)
class VersionState:
    """What the token holds of one of the file's versions, by comparison with the file."""

    version: int
    present: tuple[str, ...]  # the kinds of object the token holds for it
    same: bool  # every object present holds the file's key


def _same_derive(obj: Any, key: bytes) -> bool:
    """The token's HMAC under ``obj`` equals the file's HMAC-SHA256 under ``key`` (a random
    message, so the answer proves the key, not one cached value)."""
    p11 = _pkcs11()
    message = b"facegate-import-check|" + secrets.token_bytes(16)
    try:
        got = bytes(obj.sign(message, mechanism=p11.Mechanism.SHA256_HMAC))
    except p11.exceptions.PKCS11Error:
        return False
    return hmac.compare_digest(got, hmac.new(key, message, hashlib.sha256).digest())


def _same_aes(obj: Any, key: bytes) -> bool:
    """A value sealed by the file's key opens in the token, and one sealed in the token opens
    with the file's key: AES-GCM's tag makes either fail under any other key."""
    p11 = _pkcs11()
    value, aad = secrets.token_bytes(32), b"facegate-import-check"
    sealed = seal(key, value, aad)
    try:
        params = p11.mechanisms.GCMParams(sealed[:NONCE_BYTES], aad, 128)
        opened = obj.decrypt(
            sealed[NONCE_BYTES:], mechanism=p11.Mechanism.AES_GCM, mechanism_param=params
        )
        nonce = secrets.token_bytes(NONCE_BYTES)
        params = p11.mechanisms.GCMParams(nonce, aad, 128)
        back = nonce + bytes(
            obj.encrypt(value, mechanism=p11.Mechanism.AES_GCM, mechanism_param=params)
        )
    except p11.exceptions.PKCS11Error:
        return False
    try:
        return bytes(opened) == value and open_sealed(key, back, aad) == value
    except ProtectionError:
        return False


def _same(kind: str, obj: Any, key: bytes) -> bool:
    return _same_aes(obj, key) if kind == "master" else _same_derive(obj, key)


def compare(session: Any, source: KeyRing) -> list[VersionState]:
    """How the token stands against every version of ``source``."""
    held = token_objects(session)
    states = []
    for version in source.versions():
        objs = held.get(version, {})
        key = source.keys[version]
        same = all(_same(kind, obj, key) for kind, obj in objs.items())
        states.append(VersionState(version, tuple(sorted(objs)), same))
    return states


def _create(session: Any, kind: str, version: int, key: bytes) -> Any:
    """One object holding ``key``, with the attributes ``create_version`` generates with."""
    p11 = _pkcs11()
    attr = p11.Attribute
    label = (WRAP_LABEL if kind == "master" else DERIVE_LABEL).format(version)
    key_type = p11.KeyType.AES if kind == "master" else p11.KeyType.GENERIC_SECRET
    template = {
        attr.CLASS: p11.ObjectClass.SECRET_KEY,
        attr.KEY_TYPE: key_type,
        attr.LABEL: label,
        attr.ID: version.to_bytes(4, "big"),
        attr.VALUE: key,
        **key_attributes(kind),
    }
    return session.create_object(template)


def import_keys(ring: Pkcs11KeyRing, source: KeyRing) -> dict[str, Any]:
    """Import every version of ``source`` into the token of ``ring`` (see the module doc).
    Refuses, creating nothing, when the token holds any of them under a different key."""
    with ring._open() as session:
        states = compare(session, source)
        conflicts = [s.version for s in states if s.present and not s.same]
        if conflicts:
            raise ConflictError(
                "the token already holds master-key versions with these numbers under other keys:"
                " nothing was imported. If they were made by 'keys init-token' and nothing uses"
                " them, start from an empty token; otherwise the token belongs to another"
                " deployment",
                code="token_version_conflict",
                versions=conflicts,
            )
        created: list[int] = []
        completed: list[int] = []
        made: list[Any] = []
        try:
            for state in states:
                missing = [k for k in KINDS if k not in state.present]
                for kind in missing:
                    made.append(_create(session, kind, state.version, source.keys[state.version]))
                if missing:
                    (completed if state.present else created).append(state.version)
            # prove what was made: the token now opens and derives exactly as the file does
            after = compare(session, source)
            if not all(s.same and len(s.present) == len(KINDS) for s in after):
                raise ProtectionError("the token's imported keys do not match the key file's")
        except BaseException:
            for obj in made:  # leave the token as it was, as far as it still answers
                with contextlib.suppress(Exception):
                    obj.destroy()
            raise
        ring.refresh()
    skipped = [s.version for s in states if len(s.present) == len(KINDS)]
    return {
        "imported": created,
        "completed": completed,  # half-imported versions whose missing object was created
        "already_in_token": skipped,
        **({"why_skipped": SKIPPED} if skipped else {}),
        "token_versions": ring.versions(),
        "current": ring.current,
        "from": source.describe(),
        **ring.describe(),
    }


def check_deployment(ring: Pkcs11KeyRing, store: Store) -> dict[str, Any]:
    """Whether the deployment runs on the token alone: every tenant's data keys (current and
    retired) unwrap through it, and every version that keyed audit records is in it."""
    versions = set(ring.versions())
    problems: list[dict[str, Any]] = []
    opened = 0
    wrapped = [(t.id, t.kek_version, t.wrapped_dek) for t in store.list_tenants()]
    wrapped += [(k.tenant_id, k.kek_version, k.wrapped_dek) for k in store.retired_tenant_keys()]
    for tenant_id, version, blob in wrapped:
        if version not in versions:
            problems.append(
                {
                    "tenant_id": tenant_id,
                    "problem": f"wrapped by version {version}, which is not in the token",
                }
            )
            continue
        try:
            ring.unwrap(version, blob, tenant_id)
            opened += 1
        except ProtectionError:
            problems.append({"tenant_id": tenant_id, "problem": "its data key does not open"})
    audit_missing = sorted(set(store.audit_key_versions()) - versions)
    if audit_missing:
        problems.append({"audit_key_versions_missing": audit_missing})
    return {"ok": not problems, "data_keys_opened": opened, "problems": problems}
