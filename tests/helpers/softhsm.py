"""A throwaway SoftHSM2 token for the PKCS#11 tests: its own config and token folder under the
test's temporary path (``SOFTHSM2_CONF``), so that no test touches the machine's tokens.

Locally a missing SoftHSM2 or python-pkcs11 skips; under ``CI=true`` it fails
(``scripts/setup.sh --test`` installs both)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.helpers.resources import missing_resource

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SO_PIN = "5up3r-s0"


@dataclass(frozen=True)
class Token:
    module: Path
    label: str
    pin_file: Path
    conf: Path

    def env(self) -> dict[str, str]:
        """The variables a facegate process needs to use this token."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "FACEGATE_PKCS11_MODULE": str(self.module),
            "FACEGATE_PKCS11_TOKEN": self.label,
            "FACEGATE_PKCS11_PIN_FILE": str(self.pin_file),
        }


def require_softhsm() -> None:
    if not SOFTHSM_MODULE.exists() or shutil.which("softhsm2-util") is None:
        missing_resource("SoftHSM2 is not installed: run ./scripts/setup.sh --test")
    if importlib.util.find_spec("pkcs11") is None:
        missing_resource("python-pkcs11 is not installed: pip install -e '.[dev]'")


def make_token(folder: Path, monkeypatch: pytest.MonkeyPatch, label: str = "facegate") -> Token:
    """A fresh, initialised token in its own token folder, its user PIN in a 0600 file, and
    ``SOFTHSM2_CONF`` pointing at it for this process and its children. SoftHSM2 reads its
    config when the module is initialised: a module this process already loaded is
    re-initialised (sessions opened before are gone; rings re-open theirs)."""
    require_softhsm()
    folder.mkdir(parents=True, exist_ok=True)
    tokens = folder / "tokens"
    tokens.mkdir(exist_ok=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    pin = "pin-" + os.urandom(6).hex()
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
            "--pin",
            pin,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    import pkcs11

    from facegate.protection import pkcs11_ring

    if str(SOFTHSM_MODULE) in pkcs11._loaded:  # re-read SOFTHSM2_CONF
        pkcs11.lib(str(SOFTHSM_MODULE)).reinitialize()
    pkcs11_ring._SESSIONS.clear()  # sessions of the previous token died with it
    pin_file = folder / f"{label}.pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(pin + "\n")
    return Token(SOFTHSM_MODULE, label, pin_file, conf)
