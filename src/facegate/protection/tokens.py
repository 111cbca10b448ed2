"""Signed tokens: ``base64url(payload) + "." + base64url(HMAC-SHA256(key, purpose | payload))``.

``purpose`` separates token kinds (a challenge can never pass as a capture link). Every way a
token can be wrong raises ``ValueError`` from ``open_token``; callers turn that into their one
public error, so a forger learns nothing from the failure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, body: bytes) -> bytes:
    return hmac.new(key, purpose.encode() + b"\x00" + body, hashlib.sha256).digest()


def sign_token(key: bytes, purpose: str, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return _b64(body) + "." + _b64(_mac(key, purpose, body))


def peek_token(token: str) -> dict[str, Any]:
    """The payload without checking the MAC: only to find which key to check it with."""
    try:
        payload = json.loads(_unb64(token.strip().split(".")[0]))
    except (ValueError, IndexError) as exc:
        raise ValueError("malformed token") from exc
    if not isinstance(payload, dict):
        raise ValueError("malformed token")
    return payload


def open_token(key: bytes, purpose: str, token: str) -> dict[str, Any]:
    try:
        body_b64, mac_b64 = token.strip().split(".")
        body = _unb64(body_b64)
        good = hmac.compare_digest(_mac(key, purpose, body), _unb64(mac_b64))
    except (ValueError, TypeError) as exc:
        raise ValueError("malformed token") from exc
    if not good:
        raise ValueError("bad signature")
    payload = json.loads(body)
    if not isinstance(payload, dict):
        raise ValueError("malformed token")
    return payload
