"""Moving a deployment from the key file to a PKCS#11 token (SoftHSM2) with
``facegate keys import-to-token``: after the import and the key file's deletion, the service on
the token alone opens the tenant, verifies with the same score, and ``audit verify`` passes over
the records keyed before; the imported objects cannot be read out; ``keys rotate`` then adds a
version in the token, after which a copy of the old key file opens no wrapped data key. A second
import skips what is there; a token holding other keys under the same numbers is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.softhsm import Token, make_token
from tests.service.test_recovery import BIDEN_1, BIDEN_2, photo

from facegate.errors import ConflictError, ProtectionError, UnavailableError
from facegate.protection.crypto import KeyRing, dek_aad, load_keyring, open_sealed
from facegate.protection.pkcs11_ring import Pkcs11KeyRing, open_pkcs11_ring, token_objects
from facegate.protection.token_import import _create, import_keys
from facegate.service import Caller, FaceService
from facegate.service.compose import open_master_keys
from facegate.settings import Settings
from facegate.storage.audit_anchor import AuditAnchor
from facegate.storage.sqlite import SQLiteStore

CLI = [sys.executable, "-m", "facegate.cli.main"]
DEPLOYMENT_VARS = {
    "FACEGATE_DATA_DIR",
    "FACEGATE_KEY_FILE",
    "FACEGATE_MASTER_KEYS",
    "FACEGATE_DATABASE_URL",
    "FACEGATE_AUDIT_ANCHOR",
    "FACEGATE_PKCS11_MODULE",
    "FACEGATE_PKCS11_TOKEN",
    "FACEGATE_PKCS11_PIN_FILE",
}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, dict, str]:
    p = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=300, input=stdin
    )
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout), p.stdout + p.stderr


@pytest.fixture()
def envs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Token, dict, dict]:
    """(token, the key-file deployment's environment, the same plus the token's settings)."""
    token = make_token(tmp_path / "hsm", monkeypatch)
    base = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT_VARS}
    on_file = {
        **base,
        "SOFTHSM2_CONF": str(token.conf),
        "FACEGATE_DATA_DIR": str(tmp_path / "data"),
        "FACEGATE_KEY_FILE": str(tmp_path / "keys" / "master.keys"),
    }
    return token, on_file, {**on_file, **token.env()}


def open_facade(env: dict[str, str], engine) -> tuple[FaceService, Settings]:
    settings = Settings.from_env(env)
    store = SQLiteStore(settings.ensure_data_dir() / "facegate.sqlite3")
    svc = FaceService(store, open_master_keys(settings), engine)  # type: ignore[arg-type]
    return svc, settings


def test_a_key_file_deployment_moves_to_a_token(envs, engine, shared_data: Path) -> None:
    token, on_file, on_token = envs
    # a deployment on the key file, with records keyed under two file versions
    svc, settings = open_facade(on_file, engine)
    tenant, _ = svc.create_tenant("t", {"require_liveness": False})
    caller = Caller(tenant.id, "test", frozenset({"enroll", "verify", "admin"}))
    svc.create_subject(caller, "biden", None)
    svc.grant_consent(caller, "biden", "face_verification", "1", "test")
    svc.enroll(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_1)), "photo")
    assert svc.rotate_master_key()["master_key_version"] == 2
    before = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
    assert before["match"] is True
    AuditAnchor(settings.audit_anchor_path, svc.store, svc.ctx.ring).flush()
    svc.store.close()
    old_key_file = settings.key_file.read_bytes()  # a copy left somewhere (a backup)
    file_keys = [k.hex() for k in load_keyring(settings.key_file).keys.values()]

    code, out, text = run(on_token, "keys", "import-to-token")
    assert code == 0 and out["imported"] == [1, 2] and out["already_in_token"] == [], out
    assert out["token_versions"] == [1, 2] and out["current"] == 2
    assert out["check"] == {"ok": True, "data_keys_opened": 1, "problems": []}
    for secret in [*file_keys, token.pin_file.read_text().strip()]:
        assert secret not in text  # no key byte, no PIN on stdout or stderr

    code, out, _ = run(on_token, "keys", "import-to-token")  # idempotent
    assert code == 0 and out["imported"] == [] and out["already_in_token"] == [1, 2], out
    assert "same key" in out["why_skipped"] and out["check"]["ok"] is True

    settings.key_file.unlink()  # the procedure's last step (docs/keys.md), moved up to prove it
    svc, settings = open_facade(on_token, engine)
    assert isinstance(svc.ctx.ring, Pkcs11KeyRing)
    after = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
    assert after["match"] is True and abs(after["score"] - before["score"]) < 1e-6
    AuditAnchor(settings.audit_anchor_path, svc.store, svc.ctx.ring).flush()
    code, out, _ = run(on_token, "audit", "verify")
    assert code == 0 and out["ok"] is True and out["records"] > 3, out

    # the imported objects are in the token for good: sensitive, not extractable, private
    import pkcs11
    from pkcs11 import Attribute

    ring = svc.ctx.ring
    with ring._open() as session:
        objects = token_objects(session)
        assert sorted(objects) == [1, 2]
        for kinds in objects.values():
            assert sorted(kinds) == ["derive", "master"]
            for obj in kinds.values():
                assert obj[Attribute.SENSITIVE] is True and obj[Attribute.EXTRACTABLE] is False
                assert obj[Attribute.TOKEN] is True and obj[Attribute.PRIVATE] is True
                with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                    obj[Attribute.VALUE]

    # a version made inside the token, then fresh data keys: the old key file opens nothing
    code, out, _ = run(on_token, "keys", "rotate")
    assert code == 0 and out["master_key_version"] == 3, out
    ring.refresh()
    assert ring.versions() == [1, 2, 3]
    code, out, _ = run(on_token, "keys", "rotate-data-key")
    assert code == 0 and out["rotated"][0]["templates_resealed"] == 1, out
    code, out, _ = run(on_token, "audit", "verify")
    assert code == 0 and out["ok"] is True, out
    assert not settings.key_file.exists()

    stolen = settings.key_file.parent / "stolen.keys"
    stolen.write_bytes(old_key_file)
    thief = load_keyring(stolen)
    row = svc.store.get_tenant(tenant.id)
    assert row is not None and row.kek_version == 3
    with pytest.raises(UnavailableError):  # version 3 was never in the file
        thief.unwrap(row.kek_version, row.wrapped_dek, tenant.id)
    retired = svc.store.retired_tenant_keys()  # the data key used before, kept wrapped
    assert retired and all(k.kek_version == 3 for k in retired)
    wrapped = [(row.id, row.wrapped_dek)] + [(k.tenant_id, k.wrapped_dek) for k in retired]
    for tenant_id, blob in wrapped:  # nor does any of the file's keys open what is wrapped now
        for version in thief.versions():
            with pytest.raises(ProtectionError):
                open_sealed(thief.keys[version], blob, dek_aad(tenant_id))
    final = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
    assert final["match"] is True and abs(final["score"] - before["score"]) < 1e-6


def test_a_token_with_other_keys_under_the_same_numbers_is_refused(envs) -> None:
    _, on_file, on_token = envs
    assert run(on_token, "keys", "init-token")[0] == 0  # version 1, generated in the token
    load_keyring(Settings.from_env(on_file).key_file)  # a key file with its own version 1
    code, out, _ = run(on_token, "keys", "import-to-token")
    assert code != 0 and out["error"] == "token_version_conflict" and out["versions"] == [1]
    ring = open_master_keys(Settings.from_env(on_token))
    assert isinstance(ring, Pkcs11KeyRing)
    with ring._open() as session:
        assert sorted(token_objects(session)) == [1]  # nothing was created


def test_settings_the_import_refuses(envs) -> None:
    _, on_file, on_token = envs
    code, out, _ = run(on_token, "keys", "import-to-token")  # no key file: not created either
    assert code != 0 and out["error"] == "key_file_missing", out
    assert not Path(on_file["FACEGATE_KEY_FILE"]).exists()
    code, out, _ = run(on_file, "keys", "import-to-token")  # no token settings
    assert code != 0 and out["error"] == "bad_setting", out
    both = {**on_token, "FACEGATE_MASTER_KEYS": "1:" + "ab" * 32}
    code, out, _ = run(both, "keys", "import-to-token")  # the settings' mixing rule
    assert code != 0 and out["error"] == "bad_setting", out


def test_master_keys_from_stdin_and_a_half_done_import(envs) -> None:
    """FACEGATE_MASTER_KEYS's value on standard input; an import interrupted between a
    version's two objects is completed (the half present holds the same key)."""
    _, _, on_token = envs
    keys = {2: os.urandom(32), 1: os.urandom(32)}
    value = ",".join(f"{v}:{k.hex()}" for v, k in keys.items())
    settings = Settings.from_env(on_token)
    assert settings.pkcs11_module is not None
    ring = open_pkcs11_ring(settings.pkcs11_module, settings.pkcs11_token, settings.pkcs11_pin_file)

    with ring._open() as session:  # version 1's AES object only, as if cut short
        _create(session, "master", 1, keys[1])
    code, out, text = run(on_token, "keys", "import-to-token", "--master-keys-stdin", stdin=value)
    assert code == 0 and out["imported"] == [2] and out["completed"] == [1], out
    assert all(k.hex() not in text for k in keys.values())
    ring.refresh()
    file_ring = KeyRing(dict(keys), 2)
    for v in (1, 2):
        assert ring.derive(v, b"label") == file_ring.derive(v, b"label")
        # a data key wrapped in the process under the file's key opens in the token
        version, blob = KeyRing({v: keys[v]}, v).wrap(b"d" * 32, "tenant")
        assert ring.unwrap(version, blob, "tenant") == b"d" * 32
    with pytest.raises(ConflictError):  # same numbers, other keys
        import_keys(ring, KeyRing({1: os.urandom(32)}, 1))
