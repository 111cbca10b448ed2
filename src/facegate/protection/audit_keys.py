"""Keys that protect the audit log, all derived from the master key ring (never stored).

- The *chain key* of master-key version ``v`` keys each record's hash (HMAC-SHA256): a database
  writer without the master key can neither append a record that verifies nor delete one and
  re-chain the rest. Each record names the version that keyed it, so master-key rotation keeps
  old records verifiable.
- The *checkpoint key* is an Ed25519 key derived from the current master key: a signed checkpoint
  (sequence number and head hash) can be stored anywhere and checked with the public key alone.
- Details that reveal biometric relations (scores, which subjects share a face) are sealed under
  a key derived from the tenant's data key: only the tenant's export opens them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from facegate.errors import ProtectionError
from facegate.protection.crypto import MasterKeys, open_sealed, seal
from facegate.protection.tenant import TenantSecrets

# Audit details that say how alike two faces are or which subjects share a face: sealed under
# the tenant's key, never in clear in the database.
SEALED_DETAIL_KEYS = frozenset({"score", "scores", "duplicates"})


@dataclass(frozen=True)
class AuditKey:
    """The chain key of one master-key version."""

    version: int
    key: bytes = field(repr=False)  # key material: never in a repr, log or traceback

    def mac(self, message: bytes) -> str:
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()


def _derive(ring: MasterKeys, version: int, label: str) -> bytes:
    """HMAC-SHA256 under the master key of ``version``, computed by the ring (inside the token
    for a PKCS#11 ring): only this derived sub-key is ever in the process."""
    return ring.derive(version, f"facegate-audit-{label}-v1".encode())


def chain_key(ring: MasterKeys, version: int | None = None) -> AuditKey:
    """The chain key of ``version`` (default: the current master key)."""
    v = ring.current if version is None else version
    return AuditKey(v, _derive(ring, v, "chain"))


def _signing_key(ring: MasterKeys, version: int | None = None) -> Ed25519PrivateKey:
    v = ring.current if version is None else version
    return Ed25519PrivateKey.from_private_bytes(_derive(ring, v, "checkpoint"))


def sign_checkpoint(ring: MasterKeys, head: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of the chain's head, signed with Ed25519: anyone holding ``public_key`` can
    check it, and only the holder of the master key can make one."""
    body = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    key = _signing_key(ring)
    public = key.public_key().public_bytes_raw()
    return {
        **head,
        "public_key": public.hex(),
        "signature": key.sign(b"facegate-audit-checkpoint|" + body).hex(),
    }


def check_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The head a checkpoint vouches for; ``ProtectionError`` when its signature fails."""
    head = {k: v for k, v in checkpoint.items() if k not in ("public_key", "signature")}
    body = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(checkpoint["public_key"])))
        public.verify(
            bytes.fromhex(str(checkpoint["signature"])), b"facegate-audit-checkpoint|" + body
        )
    except (KeyError, ValueError, InvalidSignature) as exc:
        raise ProtectionError("the checkpoint's signature does not verify") from exc
    return head


def checkpoint_public_keys(ring: MasterKeys) -> set[str]:
    """The public keys this ring signs checkpoints with (one per master-key version): a
    checkpoint signed by any other key vouches for nothing here."""
    return {_signing_key(ring, v).public_key().public_bytes_raw().hex() for v in ring.versions()}


def _details_aad(tenant_id: str, subject_id: str | None, action: str) -> bytes:
    return "|".join(("audit-details", tenant_id, subject_id or "", action)).encode()


def seal_details(
    secrets: TenantSecrets, subject_id: str | None, action: str, details: dict[str, Any]
) -> str:
    """Sensitive audit details as one sealed, base64 string bound to tenant, subject and action."""
    blob = seal(
        secrets.derived_key("audit-details"),
        json.dumps(details, sort_keys=True).encode(),
        _details_aad(secrets.tenant_id, subject_id, action),
    )
    return base64.b64encode(blob).decode()


def open_details(
    secrets: TenantSecrets, subject_id: str | None, action: str, sealed: str
) -> dict[str, Any]:
    try:
        blob = base64.b64decode(sealed.encode(), validate=True)
    except ValueError as exc:
        raise ProtectionError("a protected value could not be opened") from exc
    aad = _details_aad(secrets.tenant_id, subject_id, action)
    keys = secrets.derived_keys("audit-details")  # mid-rotation: the previous key's too
    for key in keys[:-1]:
        try:
            return dict(json.loads(open_sealed(key, blob, aad)))
        except ProtectionError:
            continue
    out: dict[str, Any] = json.loads(open_sealed(keys[-1], blob, aad))
    return out
