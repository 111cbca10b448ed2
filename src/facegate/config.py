"""The offline CLI's challenge key (``facegate challenge`` / ``facegate liveness``): from the
setting ``FACEGATE_CHALLENGE_KEY`` (hex), else a key file in the data folder created on first
use (0600). The service signs challenges with per-tenant derived keys instead."""

from __future__ import annotations

import os
import secrets

from facegate.errors import ConfigError
from facegate.settings import Settings


def challenge_key(settings: Settings) -> bytes:
    if settings.challenge_key:
        try:
            key = bytes.fromhex(settings.challenge_key.strip())
        except ValueError as exc:
            raise ConfigError("FACEGATE_CHALLENGE_KEY must be hex", code="bad_key") from exc
        if len(key) < 32:
            raise ConfigError("FACEGATE_CHALLENGE_KEY must hold at least 32 bytes", code="bad_key")
        return key
    path = settings.ensure_data_dir() / "challenge.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise ConfigError(f"key file {path} is too short", code="bad_key") from None
        return key
    with os.fdopen(fd, "wb") as fh:
        key = secrets.token_bytes(32)
        fh.write(key)
    return key
