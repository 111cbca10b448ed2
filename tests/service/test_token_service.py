"""The service on a master key held in a PKCS#11 token (SoftHSM2): it enrols and verifies, the
operator commands (keys init-token, rotate, retire, audit verify and checkpoint) use the token,
no key file is created, and nothing in the data folder opens anything without the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.softhsm import Token, make_token
from tests.service.conftest import consenting_subject, start_server, stop_server
from tests.service.test_recovery import BIDEN_1, BIDEN_2, photo

from facegate.protection.audit_keys import checkpoint_public_keys
from facegate.service import Caller, FaceService
from facegate.service.compose import open_master_keys
from facegate.settings import Settings
from facegate.storage.audit_anchor import AuditAnchor
from facegate.storage.sqlite import SQLiteStore

CLI = [sys.executable, "-m", "facegate.cli.main"]


def run(env: dict[str, str], *args: str) -> tuple[int, dict]:
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout)


@pytest.fixture()
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Token, dict[str, str]]:
    token = make_token(tmp_path / "hsm", monkeypatch)
    env = {
        **os.environ,
        **token.env(),
        "FACEGATE_DATA_DIR": str(tmp_path / "data"),
        "FACEGATE_KEY_FILE": str(tmp_path / "keys" / "master.keys"),
    }
    return token, env


def open_facade(env: dict[str, str], engine) -> tuple[FaceService, Settings]:
    settings = Settings.from_env(env)
    store = SQLiteStore(settings.ensure_data_dir() / "facegate.sqlite3")
    svc = FaceService(store, open_master_keys(settings), engine)  # type: ignore[arg-type]
    return svc, settings


def test_the_service_runs_on_a_token(deployment, engine, shared_data: Path) -> None:
    token, env = deployment
    code, out = run(env, "keys", "init-token")
    assert code == 0 and out["created"] is True and out["versions"] == [1], out
    assert token.pin_file.read_text().strip() not in json.dumps(out)

    svc, settings = open_facade(env, engine)
    tenant, _ = svc.create_tenant("t", {"require_liveness": False})
    caller = Caller(tenant.id, "test", frozenset({"enroll", "verify", "admin"}))
    svc.create_subject(caller, "biden", None)
    svc.grant_consent(caller, "biden", "face_verification", "1", "test")
    svc.enroll(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_1)), "photo")
    before = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
    assert before["match"] is True
    AuditAnchor(settings.audit_anchor_path, svc.store, svc.ctx.ring).flush()

    # no key file, and the data folder holds no data key in clear
    assert not settings.key_file.exists()
    dek = svc.secrets_of(svc.tenant(tenant.id)).dek
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            assert dek not in path.read_bytes(), path

    # the operator commands use the token
    code, out = run(env, "audit", "verify")
    assert code == 0 and out["ok"] is True, out
    code, out = run(env, "keys", "rotate")
    assert code == 0 and out["master_key_version"] == 2 and out["tenants_rewrapped"] == 1
    assert open_master_keys(settings).versions() == [1, 2]
    code, out = run(env, "keys", "retire")
    assert code == 0 and out["removed_versions"] == []  # version 1 keyed audit records
    code, out = run(env, "audit", "checkpoint")
    assert code == 0 and out["ok"] is True, out
    svc.ctx.ring.refresh()  # another process added version 2
    assert out["checkpoint"]["public_key"] in checkpoint_public_keys(svc.ctx.ring)
    code, out = run(env, "audit", "verify")
    assert code == 0 and out["ok"] is True, out
    assert not settings.key_file.exists()

    # a fresh data key for the tenant, wrapped in the token; the old one opens nothing now
    code, out = run(env, "keys", "rotate-data-key", "--tenant", "t")
    assert code == 0 and out["rotated"][0]["templates_resealed"] == 1, out
    assert svc.secrets_of(svc.tenant(tenant.id)).dek != dek

    # this process follows the rotation made by another one, without a restart
    after = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
    assert after["match"] is True and abs(after["score"] - before["score"]) < 1e-6
    row = svc.store.get_tenant(tenant.id)
    assert row is not None and row.kek_version == 2


def test_a_token_without_keys_or_pin_is_refused(deployment, tmp_path: Path) -> None:
    _, env = deployment
    code, out = run(env, "audit", "verify")  # before keys init-token
    assert code != 0 and out["error"] == "key_token_empty", out
    code, out = run({**env, "FACEGATE_PKCS11_PIN_FILE": str(tmp_path / "none")}, "audit", "verify")
    assert code != 0 and out["error"] == "bad_setting", out
    both = {**env, "FACEGATE_MASTER_KEYS": "1:" + "ab" * 32}
    code, out = run(both, "audit", "verify")
    assert code != 0 and out["error"] == "bad_setting", out


def test_the_http_service_runs_on_a_token(deployment, engine, shared_data: Path, tmp_path) -> None:
    """Over HTTP: the rate limits' bucket secret and the audit chain are derived inside the
    token, so an authenticated, rate-limited enrolment and verification work without a key."""
    _, env = deployment
    assert run(env, "keys", "init-token")[0] == 0
    settings = Settings.from_env(env)
    server = start_server(engine, tmp_path / "srv", liveness=False, ring=open_master_keys(settings))
    try:
        c = server.client()
        consenting_subject(c, "biden")
        upload = {"image": ("a.jpg", photo(shared_data, BIDEN_1), "image/jpeg")}
        r = c.post("/v1/subjects/biden/enroll", files=upload)
        assert r.status_code == 201, r.text
        probe = {"image": ("b.jpg", photo(shared_data, BIDEN_2), "image/jpeg")}
        r = c.post("/v1/subjects/biden/verify", files=probe)
        assert r.status_code == 200 and r.json()["match"] is True, r.text
        assert not (tmp_path / "srv" / "keys" / "master.keys").exists()
    finally:
        stop_server(server)


def test_a_running_worker_follows_a_rotation_made_by_the_cli(deployment, engine) -> None:
    """`keys rotate` in another process (its own PKCS#11 login): a worker that is not restarted
    unwraps the data keys it re-wrapped under the new version (re-listing the token once) and
    wraps new data keys under that version from then on; a ring that has not met the version
    yet moves to it on refresh()."""
    _, env = deployment
    assert run(env, "keys", "init-token")[0] == 0
    svc, settings = open_facade(env, engine)
    ring = svc.ctx.ring
    tenant, _ = svc.create_tenant("t", {"require_liveness": False})
    dek = svc.secrets_of(svc.tenant(tenant.id)).dek
    idle = open_master_keys(settings)
    assert ring.current == 1 == idle.current

    code, out = run(env, "keys", "rotate")
    assert code == 0 and out["master_key_version"] == 2 and out["tenants_rewrapped"] == 1, out
    row = svc.store.get_tenant(tenant.id)
    assert row is not None and row.kek_version == 2
    assert ring.unwrap(2, row.wrapped_dek, tenant.id)[:32] == dek  # no restart
    assert ring.current == 2
    later, _ = svc.create_tenant("later", {"require_liveness": False})
    row = svc.store.get_tenant(later.id)
    assert row is not None and row.kek_version == 2  # wrapped under the new version

    assert idle.current == 1  # its listing is recent: not re-read on every call
    idle.refresh()
    assert idle.current == 2 and idle.wrap(dek, tenant.id)[0] == 2
