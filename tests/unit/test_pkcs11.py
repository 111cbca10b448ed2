"""The master key in a PKCS#11 token (SoftHSM2): data keys wrapped and unwrapped inside it,
audit sub-keys derived inside it, the key itself never readable or exportable, versions added
and destroyed there; the file ring's derivation unchanged."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.softhsm import Token, make_token

from facegate.errors import ConfigError, ProtectionError, UnavailableError
from facegate.protection import pkcs11_ring
from facegate.protection.audit_keys import chain_key, check_checkpoint, sign_checkpoint
from facegate.protection.crypto import load_keyring
from facegate.protection.pkcs11_ring import (
    Pkcs11KeyRing,
    init_token,
    open_pkcs11_ring,
    read_pin,
)


@pytest.fixture()
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Token:
    return make_token(tmp_path / "hsm", monkeypatch)


def ring_of(token: Token) -> Pkcs11KeyRing:
    return open_pkcs11_ring(token.module, token.label, token.pin_file)


def test_an_empty_token_is_refused_until_initialised(token: Token) -> None:
    ring = ring_of(token)
    with pytest.raises(ConfigError) as err:
        ring.current  # noqa: B018
    assert err.value.code == "key_token_empty"
    assert init_token(ring)["created"] is True
    assert ring.current == 1
    assert init_token(ring)["created"] is False  # a second run changes nothing
    assert ring.versions() == [1]


def test_wrap_and_unwrap_happen_in_the_token(token: Token) -> None:
    ring = ring_of(token)
    init_token(ring)
    dek = os.urandom(32)
    version, wrapped = ring.wrap(dek, "t_alpha")
    assert version == 1 and dek not in wrapped and len(wrapped) == 12 + 32 + 16
    other = ring_of(token)  # another process with the same token
    assert other.unwrap(version, wrapped, "t_alpha") == dek
    with pytest.raises(ProtectionError):
        other.unwrap(version, wrapped, "t_beta")  # bound to its tenant
    with pytest.raises(ProtectionError):
        other.unwrap(version, wrapped[:-1] + bytes([wrapped[-1] ^ 1]), "t_alpha")
    with pytest.raises(UnavailableError) as err:
        other.unwrap(7, wrapped, "t_alpha")
    assert err.value.code == "master_key_unknown"


def test_the_master_key_cannot_be_read_or_exported(token: Token) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

    ring = ring_of(token)
    init_token(ring)
    lib = pkcs11.lib(str(token.module))
    # this process is logged in already (the ring did it): a new session shares that login
    with lib.get_token(token_label=token.label).open(rw=True) as session:
        keys = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))
        assert sorted(k.label for k in keys) == ["facegate-derive-v1", "facegate-master-v1"]
        wrapper = session.generate_key(
            KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.EXTRACTABLE: True}
        )
        for key in keys:
            assert key[Attribute.SENSITIVE] is True and key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.ALWAYS_SENSITIVE] and key[Attribute.NEVER_EXTRACTABLE]
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                key[Attribute.VALUE]  # C_GetAttributeValue(CKA_VALUE) refused
            with pytest.raises(pkcs11.exceptions.KeyUnextractable):
                wrapper.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)  # no export either
            with pytest.raises(pkcs11.exceptions.PKCS11Error):
                key[Attribute.EXTRACTABLE] = True  # and it cannot be made extractable
    # another process without the PIN does not even find them (CKA_PRIVATE)
    script = (
        "import pkcs11, sys; t = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2]);"
        " s = t.open(); print(len(list(s.get_objects({pkcs11.Attribute.CLASS:"
        " pkcs11.ObjectClass.SECRET_KEY}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(token.module), token.label],
        capture_output=True, text=True, check=True, env={**os.environ, **token.env()},
    )  # fmt: skip
    assert out.stdout.strip() == "0"


def test_audit_keys_are_derived_in_the_token(token: Token) -> None:
    ring = ring_of(token)
    init_token(ring)
    first = ring.derive(1, b"facegate-audit-chain-v1")
    assert len(first) == 32
    assert ring_of(token).derive(1, b"facegate-audit-chain-v1") == first  # stable
    assert ring.derive(1, b"facegate-audit-checkpoint-v1") != first
    assert chain_key(ring).version == 1
    signed = sign_checkpoint(ring, {"seq": 3, "hash": "ab" * 32, "at": 1.0})
    assert check_checkpoint(signed)["seq"] == 3
    ring.add_version()
    assert ring.derive(2, b"facegate-audit-chain-v1") != first


def test_versions_are_added_and_destroyed_in_the_token(token: Token) -> None:
    ring = ring_of(token)
    init_token(ring)
    dek = os.urandom(32)
    v1, wrapped = ring.wrap(dek, "t1")
    assert ring.add_version() == 2 and ring.current == 2
    other = ring_of(token)
    assert other.current == 2 and other.unwrap(v1, wrapped, "t1") == dek
    v2, rewrapped = other.wrap(dek, "t1")
    assert v2 == 2
    other.retire([1])
    assert ring_of(token).versions() == [2]
    with pytest.raises(UnavailableError):
        ring.unwrap(1, wrapped, "t1")  # refreshes: version 1 is gone from the token
    assert ring.unwrap(2, rewrapped, "t1") == dek


def test_the_pin_comes_from_a_private_file(token: Token, tmp_path: Path) -> None:
    pin = token.pin_file.read_text().strip()
    ring = ring_of(token)
    assert pin not in repr(ring) and pin not in str(ring.describe())
    loose = tmp_path / "loose.pin"
    loose.write_text(pin)
    loose.chmod(0o644)
    with pytest.raises(ConfigError):
        read_pin(loose)
    with pytest.raises(ConfigError):
        open_pkcs11_ring(token.module, token.label, None)
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("not-the-pin")
    wrong.chmod(0o600)
    with pytest.raises(UnavailableError) as err:
        open_pkcs11_ring(token.module, token.label, wrong).versions()
    assert err.value.code == "key_token_unavailable"
    with pytest.raises(UnavailableError):
        open_pkcs11_ring(token.module, "no-such-token", token.pin_file).versions()


# another process (its own PKCS#11 login) adds a version and wraps a data key under it
ROTATE = """
import json, sys
from pathlib import Path
from facegate.protection.pkcs11_ring import open_pkcs11_ring
ring = open_pkcs11_ring(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
version = ring.add_version()
got, wrapped = ring.wrap(bytes.fromhex(sys.argv[4]), "t1")
print(json.dumps({"version": version, "wrapped_version": got, "wrapped": wrapped.hex()}))
"""


def rotate_elsewhere(token: Token, dek: bytes) -> tuple[int, bytes]:
    args = [str(token.module), token.label, str(token.pin_file), dek.hex()]
    out = subprocess.run(
        [sys.executable, "-c", ROTATE, *args],
        capture_output=True, text=True, check=True, env={**os.environ, **token.env()},
    )  # fmt: skip
    got = json.loads(out.stdout)
    assert got["version"] == got["wrapped_version"]
    return got["version"], bytes.fromhex(got["wrapped"])


def test_a_rotation_in_another_process_reaches_a_running_ring(token: Token) -> None:
    ring = ring_of(token)
    init_token(ring)
    assert ring.wrap(os.urandom(32), "t1")[0] == 1
    dek = os.urandom(32)
    version, wrapped = rotate_elsewhere(token, dek)
    assert version == 2
    # a version not in the listing: the ring re-lists the token once, then knows it
    assert ring.unwrap(2, wrapped, "t1") == dek
    assert ring.current == 2 and ring.wrap(dek, "t1")[0] == 2

    # a ring that never asks for the new version by number: refresh(), as the file ring
    other = ring_of(token)
    assert other.current == 2
    dek3 = os.urandom(32)
    assert rotate_elsewhere(token, dek3)[0] == 3
    assert other.current == 2  # the listing is recent: no token round trip per call
    other.refresh()
    assert other.versions() == [1, 2, 3] and other.wrap(dek, "t1")[0] == 3
    assert other.derive(3, b"x") == ring.derive(3, b"x")  # ring: unknown, re-listed

    # still unknown after re-listing: 503 master_key_unknown, never an error about the data
    for call in (lambda: ring.unwrap(9, wrapped, "t1"), lambda: ring.derive(9, b"x")):
        with pytest.raises(UnavailableError) as err:
            call()
        assert err.value.code == "master_key_unknown" and err.value.status == 503


def test_an_old_listing_is_renewed_before_wrapping(
    token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that only wraps (new tenants, data-key rotations) and never meets the new
    version by number still moves to it once its listing is LISTING_MAX_AGE_S old."""
    ring = ring_of(token)
    init_token(ring)
    assert rotate_elsewhere(token, os.urandom(32))[0] == 2
    assert ring.wrap(os.urandom(32), "t1")[0] == 1  # listed just now, before the rotation
    monkeypatch.setattr(pkcs11_ring, "LISTING_MAX_AGE_S", 0.0)
    version, wrapped = ring.wrap(b"k" * 32, "t1")
    assert version == 2 == ring.current and ring.unwrap(2, wrapped, "t1") == b"k" * 32


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_pin_file_is_opened_once_and_checked_on_its_descriptor(tmp_path: Path) -> None:
    pin = "pin-" + os.urandom(6).hex()
    good = private_file(tmp_path / "good.pin", pin + "\n")
    assert read_pin(good) == pin
    link = tmp_path / "link.pin"
    link.symlink_to(good)  # even to a good file: a link is where a swap would happen
    loose = private_file(tmp_path / "loose.pin", pin, 0o644)
    group = private_file(tmp_path / "group.pin", pin, 0o640)
    folder = tmp_path / "folder.pin"
    folder.mkdir(mode=0o700)
    fifo = tmp_path / "fifo.pin"
    os.mkfifo(fifo, 0o600)  # must be refused, not waited on for a writer
    empty = private_file(tmp_path / "empty.pin", "\n")
    big = private_file(tmp_path / "big.pin", "x" * 5000)
    cases = {
        link: "symbolic link",
        loose: "owner only",
        group: "owner only",
        folder: "regular file",
        fifo: "regular file",
        empty: "empty",
        big: "not a large file",
        tmp_path / "missing.pin": "cannot be read",
    }
    if os.geteuid() == 0:  # only root can give a file away
        other = private_file(tmp_path / "other.pin", pin)
        os.chown(other, 65534, 65534)
        cases[other] = "owned by the user"
    for path, rule in cases.items():
        with pytest.raises(ConfigError) as err:
            read_pin(path)
        assert err.value.code == "bad_setting", path
        assert rule in str(err.value), (path, str(err.value))
        assert pin not in str(err.value) and pin not in repr(err.value.__cause__)
    assert read_pin(good) == pin  # nothing above changed the good file


def test_the_file_ring_derives_as_before(tmp_path: Path) -> None:
    """Existing audit chains and rate-limit buckets depend on these exact bytes."""
    ring = load_keyring(tmp_path / "master.keys")
    raw = ring.keys[1]
    for info in (b"facegate-audit-chain-v1", b"facegate rate-limit buckets v1"):
        assert ring.derive(1, info) == hmac.new(raw, info, hashlib.sha256).digest()
    assert (
        chain_key(ring, 1).key == hmac.new(raw, b"facegate-audit-chain-v1", hashlib.sha256).digest()
    )
