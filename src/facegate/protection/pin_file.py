"""The PKCS#11 token's user PIN, read from a private file (``FACEGATE_PKCS11_PIN_FILE``)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from facegate.errors import ConfigError

_PIN_RULE = "FACEGATE_PKCS11_PIN_FILE must be "
_PIN_MAX_BYTES = 4096


def read_pin(path: Path) -> str:
    """The user PIN from a file only its owner can read (never an environment variable, which
    ends up in process listings, crash reports and ``env`` dumps).

    The file is opened once (``O_NOFOLLOW``: a symbolic link in its place is refused, not
    followed; ``O_NONBLOCK``: a FIFO cannot stall the start) and every check is made on that
    descriptor, which is then read: nothing can swap the file between the check and the read.
    It must be a regular file, owned by the user the process runs as (or root), with no group
    or other permission bits. A refusal names the rule, never the PIN."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                _PIN_RULE + "a file, not a symbolic link", code="bad_setting"
            ) from exc
        raise ConfigError("FACEGATE_PKCS11_PIN_FILE cannot be read", code="bad_setting") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(_PIN_RULE + "a regular file", code="bad_setting")
        if st.st_uid not in (os.geteuid(), 0):
            raise ConfigError(
                _PIN_RULE + "owned by the user facegate runs as (or root)", code="bad_setting"
            )
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                _PIN_RULE + "readable by its owner only (chmod 600)", code="bad_setting"
            )
        raw = b""
        while len(raw) <= _PIN_MAX_BYTES and (chunk := os.read(fd, _PIN_MAX_BYTES + 1)):
            raw += chunk
    except OSError as exc:
        raise ConfigError("FACEGATE_PKCS11_PIN_FILE cannot be read", code="bad_setting") from exc
    finally:
        os.close(fd)
    if len(raw) > _PIN_MAX_BYTES:
        raise ConfigError(_PIN_RULE + "a PIN, not a large file", code="bad_setting")
    try:
        pin = raw.decode().strip()
    except UnicodeDecodeError:
        raise ConfigError(_PIN_RULE + "UTF-8 text", code="bad_setting") from None  # no bytes
    if not pin:
        raise ConfigError("FACEGATE_PKCS11_PIN_FILE is empty", code="bad_setting")
    return pin
