"""The master key in a PKCS#11 token (SoftHSM2): data keys wrapped and unwrapped inside it,
audit sub-keys derived inside it, the key itself never readable or exportable, versions added
and destroyed there; the file ring's derivation unchanged."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.softhsm import Token, make_token

from facegate.errors import ConfigError, ProtectionError, UnavailableError
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


def test_the_file_ring_derives_as_before(tmp_path: Path) -> None:
    """Existing audit chains and rate-limit buckets depend on these exact bytes."""
    ring = load_keyring(tmp_path / "master.keys")
    raw = ring.keys[1]
    for info in (b"facegate-audit-chain-v1", b"facegate rate-limit buckets v1"):
        assert ring.derive(1, info) == hmac.new(raw, info, hashlib.sha256).digest()
    assert (
        chain_key(ring, 1).key == hmac.new(raw, b"facegate-audit-chain-v1", hashlib.sha256).digest()
    )
