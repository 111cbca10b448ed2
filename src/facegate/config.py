"""Where facegate keeps its state, and its secrets. Built by functions, never at import."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from facegate.errors import FacegateError


def data_dir() -> Path:
    """``FACEGATE_DATA_DIR``, else the per-user data folder (XDG); created on first use (0700)."""
    env = os.environ.get("FACEGATE_DATA_DIR")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "facegate"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def secret_key(name: str, directory: Path, env_var: str) -> bytes:
    """A 32-byte key from ``env_var`` (hex) or from ``directory/name`` (created 0600 if absent)."""
    env = os.environ.get(env_var)
    if env:
        try:
            key = bytes.fromhex(env.strip())
        except ValueError as exc:
            raise FacegateError(f"{env_var} must be hex", code="bad_key") from exc
        if len(key) < 32:
            raise FacegateError(f"{env_var} must hold at least 32 bytes", code="bad_key")
        return key
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise FacegateError(f"key file {path} is too short", code="bad_key") from None
        return key
    with os.fdopen(fd, "wb") as fh:
        key = secrets.token_bytes(32)
        fh.write(key)
    return key


def challenge_key(directory: Path | None = None) -> bytes:
    return secret_key("challenge.key", directory or data_dir(), "FACEGATE_CHALLENGE_KEY")
