"""Key lifecycle (issue 17): a renewal gives the tenant a fresh data key as well as a new
transform; a data key stolen before opens nothing written since, older audit details stay in the
tenant's export, other workers keep verifying without a restart; master-key versions that nothing
uses any more are removed from the key file, and those still in use are refused. A data-key
rotation (no new transform) re-seals online and in batches, and a rerun after a crash
continues."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tests.service.conftest import new_database, start_server, stop_server
from tests.service.test_recovery import ALEX_1, ALEX_2, BIDEN_1, BIDEN_2, enrol, photo, two_workers

from facegate.errors import ConflictError, ProtectionError
from facegate.protection.crypto import load_keyring, open_sealed
from facegate.protection.tenant import seed_aad, template_aad
from facegate.service import Caller, FaceService, data_keys
from facegate.service import webhooks as webhooks_module
from facegate.service.data_keys import KINDS
from facegate.service.gallery import open_template
from facegate.service.probes import session_aad
from facegate.service.sealed_writes import add_liveness_session
from facegate.storage.postgres import PostgresStore


def test_renewal_uses_a_fresh_data_key(tmp_path: Path, shared_data, engine) -> None:
    a, b, caller = two_workers(tmp_path, engine)
    enrol(a, caller, "biden", photo(shared_data, BIDEN_1))
    enrol(a, caller, "alex", photo(shared_data, ALEX_1))
    before = a.verify(caller, "biden", a.probe_from_image(photo(shared_data, BIDEN_2)))
    assert before["match"] is True
    stolen = a.secrets_of(a.tenant(caller.tenant_id))  # the data key, taken before

    out = b.renew_transform(caller.tenant_id)  # another process: the CLI, another machine
    assert out["transform_version"] == 2 and out["data_key"] == "renewed"

    tenant = a.store.get_tenant(caller.tenant_id)
    assert tenant is not None and tenant.wrapped_dek != b"" and tenant.transform_version == 2
    fresh = a.secrets_of(tenant)
    assert fresh.dek != stolen.dek and fresh.seed != stolen.seed
    # the stolen key opens no template row and not the new seed
    rows = a.store.all_templates(caller.tenant_id)
    assert len(rows) == 2
    for t in rows:
        aad = template_aad(t.tenant_id, t.subject_id, t.id, t.space_id)
        with pytest.raises(ProtectionError):
            stolen.open_vector(t.sealed_vector, aad)
        assert fresh.open_vector(t.sealed_vector, aad).shape[0] > 0
    with pytest.raises(ProtectionError):
        open_sealed(stolen.dek, tenant.sealed_transform_seed, seed_aad(tenant.id, 2))

    # the worker that did not renew keeps verifying (no restart), and nothing got quarantined
    for svc in (a, b):
        again = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
        assert again["match"] is True
        assert abs(again["score"] - before["score"]) < 1e-4
        assert (
            svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, ALEX_2)))["match"]
            is False
        )
    assert a.quarantined(caller)["templates"] == []
    again = enrol(a, caller, "alex-again", photo(shared_data, ALEX_2))  # a's index followed
    assert [d["subject_id"] for d in again["duplicates"]] == ["alex"]

    # the export still opens audit details sealed under the old key, and the new ones
    export = a.export_subject(caller, "biden")
    verifies = [r for r in export["audit"] if r["action"] == "verify"]
    assert len(verifies) >= 3, [r["action"] for r in export["audit"]]
    assert all("score" in r["details"] for r in verifies), verifies
    assert "unreadable" not in json.dumps(export["audit"])


def test_retire_removes_only_unused_master_keys(tmp_path: Path, shared_data, engine) -> None:
    a, b, caller = two_workers(tmp_path, engine)
    enrol(a, caller, "biden", photo(shared_data, BIDEN_1))
    key_file = tmp_path / "keys" / "master.keys"
    # version 1 keyed audit records: it must stay, though no data key is wrapped under it
    assert a.rotate_master_key()["master_key_version"] == 2
    out = a.retire_master_keys()
    assert out["removed_versions"] == []
    assert "audit" in out["kept_versions"][1] and out["kept_versions"][2] == "current"
    # a version that only ever wrapped data keys (re-wrapped since, no audit record under it)
    # is removed from the key file
    a.ctx.ring.add_version()  # 3: current, nothing wrapped yet
    a.ctx.ring.add_version()  # 4
    a.ctx.ring.current = 3
    a.ctx.ring.save()
    assert a.rotate_master_key()["master_key_version"] == 5
    out = a.retire_master_keys()
    assert out["removed_versions"] == [3, 4]
    assert set(json.loads(key_file.read_text())["keys"]) == {"1", "2", "5"}
    # everything still opens, here and in the other worker, and the audit chain still verifies
    for svc in (a, b):
        svc.ctx.ring.refresh()
        ok = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
        assert ok["match"] is True
    b.renew_transform(caller.tenant_id)
    assert 3 not in {k.kek_version for k in a.store.retired_tenant_keys()}


def test_an_answer_kept_before_a_renewal_is_refused_not_a_500(engine, tmp_path: Path) -> None:
    server = start_server(engine, tmp_path, liveness=False)
    try:
        c = server.client()
        body = {"subject_id": "kept"}
        first = c.post("/v1/subjects", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 201
        tenant = server.service.store.tenant_by_name("alpha")
        assert tenant is not None
        server.service.renew_transform(tenant.id)
        again = c.post("/v1/subjects", json=body, headers={"Idempotency-Key": "k-1"})
        assert again.status_code == 409 and again.json()["code"] == "idempotency_key_reused"
        fresh = c.post(
            "/v1/subjects", json={"subject_id": "k2"}, headers={"Idempotency-Key": "k-2"}
        )
        assert fresh.status_code == 201
    finally:
        stop_server(server)


@pytest.fixture(params=["sqlite", "postgres"])
def workers(request, tmp_path: Path, engine):
    """Two workers (two stores, two key rings) on one database of either backend."""
    if request.param == "sqlite":
        return two_workers(tmp_path, engine)
    url = new_database(request.getfixturevalue("postgres_server"))
    keys = tmp_path / "keys" / "master.keys"
    a = FaceService(PostgresStore(url), load_keyring(keys), engine)
    tenant, _ = a.create_tenant("t", {"require_liveness": False})
    b = FaceService(PostgresStore(url), load_keyring(keys), engine)
    return a, b, Caller(tenant.id, "test", frozenset({"enroll", "verify", "search", "admin"}))


def test_data_key_rotation_is_online_and_resumable(workers, shared_data, monkeypatch) -> None:
    a, b, caller = workers
    tid = caller.tenant_id
    for sid, rel in (("biden", BIDEN_1), ("alex", ALEX_1), ("alex-2", ALEX_2)):
        enrol(a, caller, sid, photo(shared_data, rel))
    probe = a.probe_from_image(photo(shared_data, BIDEN_2))
    before = a.verify(caller, "biden", probe)
    assert before["match"] is True
    stolen = a.secrets_of(a.tenant(tid))  # the data key, taken before
    session_vector = a.secrets_of(a.tenant(tid)).seal_vector(
        probe.embedding, session_aad(tid, "s1")
    )
    a.store.add_liveness_session(tid, "s1", True, a.ctx.space_id, session_vector, {}, 1e12)

    # a verifier in another worker that must never fail while the rotation runs
    failures: list[str] = []
    runs = [0]
    stop = threading.Event()

    def verifier() -> None:
        while not stop.is_set():
            try:
                out = a.verify(caller, "biden", probe)
                if not out["match"] or abs(out["score"] - before["score"]) > 1e-4:
                    failures.append(repr(out))
            except Exception as exc:  # anything at all is a failure here
                failures.append(repr(exc))
            runs[0] += 1

    thread = threading.Thread(target=verifier, daemon=True)
    thread.start()
    try:
        # the first run crashes after its first batch (one template)
        real = b.store.reseal_row
        calls = [0]

        def crash_on_second(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 2:
                raise RuntimeError("injected crash")
            return real(*args, **kwargs)

        monkeypatch.setattr(b.store, "reseal_row", crash_on_second)
        with pytest.raises(RuntimeError):
            b.operations.rotate_data_key(tid, batch=1, settle_s=0.2)
        monkeypatch.setattr(b.store, "reseal_row", real)
        new_version = b.tenant(tid).dek_version
        left = b.store.rows_below_data_key(tid, new_version)
        # one template re-sealed, then the crash
        assert left == {"templates": 2, "sessions": 1, "webhook": 0}, left
        mid = a.verify(caller, "biden", probe)  # mid-rotation: both keys open
        assert mid["match"] is True
        with pytest.raises(ConflictError):
            a.renew_transform(tid)  # not while a rotation is half done

        # the rerun continues where the crash left it
        out = b.operations.rotate_data_key(tid, batch=1, settle_s=0)
        assert out["resumed"] is True and out["data_key_version"] == new_version
        assert out["templates_resealed"] == 2 and out["sessions_resealed"] == 1
    finally:
        stop.set()
        thread.join(timeout=60)
    assert failures == [] and runs[0] >= 1, failures

    tenant = a.tenant(tid)
    fresh = a.secrets_of(tenant)
    assert fresh.previous == () and fresh.dek != stolen.dek and fresh.seed == stolen.seed
    assert not any(a.store.rows_below_data_key(tid, new_version).values())
    # the stolen key opens no template, not the seed, not the session
    for t in a.store.all_templates(tid):
        aad = template_aad(t.tenant_id, t.subject_id, t.id, t.space_id)
        with pytest.raises(ProtectionError):
            stolen.open_vector(t.sealed_vector, aad)
        fresh.open_vector(t.sealed_vector, aad)
    with pytest.raises(ProtectionError):
        open_sealed(stolen.dek, tenant.sealed_transform_seed, seed_aad(tid, 1))
    row = a.store.take_liveness_session(tid, "s1", "biden", ("verify",), 0.0)
    if row is not None and row.sealed_vector is not None:
        with pytest.raises(ProtectionError):
            stolen.open_vector(row.sealed_vector, session_aad(tid, "s1"))
        fresh.open_vector(row.sealed_vector, session_aad(tid, "s1"))
    # both workers verify as before, nothing was quarantined, the transform did not change
    for svc in (a, b):
        again = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
        assert again["match"] is True and abs(again["score"] - before["score"]) < 1e-4
    assert a.quarantined(caller)["templates"] == []
    assert tenant.transform_version == 1
    # the export still opens audit details sealed under the old key
    export = a.export_subject(caller, "biden")
    assert "unreadable" not in json.dumps(export["audit"])
    assert any(r.action == "keys.rotate_data_key" for r in a.store.audit_records(tid))
    # a later renewal retires the rotated key under its own version
    a.renew_transform(tid)
    versions = sorted(k.version for k in a.store.retired_tenant_keys(tid))
    assert versions == [1, 2] and a.tenant(tid).dek_version == 3


# -- writes that straddle the switch (review: rows were stamped with the tenant's version at
# insert time, not with the key that sealed them) --------------------------------------------


def _everything_opens_under(svc: FaceService, tid: str, old_dek: bytes) -> dict[str, int]:
    """Every sealed row of the tenant opens under its current key alone and not under
    ``old_dek``, and is stored with the current version; returns the rows seen, by kind."""
    keys = svc.secrets_of(svc.tenant(tid))
    assert keys.previous == () and keys.dek != old_dek
    assert not any(svc.store.rows_below_data_key(tid, keys.dek_version or 0).values())
    seen = {}
    for kind in KINDS:
        rows = svc.store.rows_to_reseal(kind.name, tid, 10**9, "", 10_000)  # every row
        for r in rows:
            open_sealed(keys.dek, r.sealed, kind.aad(tid, r))
            with pytest.raises(ProtectionError):
                open_sealed(old_dek, r.sealed, kind.aad(tid, r))
        seen[kind.name] = len(rows)
    return seen


def test_a_webhook_set_across_the_switch_is_sealed_under_the_new_key(workers, monkeypatch) -> None:
    """(a) The first PUT /v1/tenant/webhook read the tenant before its (slow) DNS check; a
    rotation switched meanwhile. The endpoint must come out sealed under the new key, and keep
    opening after the rotation ends."""
    a, b, caller = workers
    tid = caller.tenant_id
    old_dek = a.secrets_of(a.tenant(tid)).dek
    switched: list[int] = []

    def slow_check(url, allow_private, resolver=None):  # the DNS check: the switch lands here
        switched.append(data_keys._switch(b.ctx, tid)[0])
        return SimpleNamespace(host="rp.example", url=url)

    monkeypatch.setattr(webhooks_module, "check_url", slow_check)
    first = a.webhooks.put(caller, "https://rp.example/hook", None)
    assert switched == [2] and first["secret"].startswith("whsec_")
    row = a.store.get_webhook(tid)
    assert row is not None and row.dek_version == 2  # the key that sealed it, not a guess
    out = b.operations.rotate_data_key(tid, settle_s=0)
    assert out["resumed"] is True and out["data_key_version"] == 2
    assert _everything_opens_under(a, tid, old_dek)["webhook"] == 1
    assert a.webhooks.view(caller)["url"] == "https://rp.example/hook"
    again = b.webhooks.put(caller, "https://rp.example/h2", None)
    assert again["url"] == "https://rp.example/h2"
    assert a.webhooks.rotate_secret(caller)["secret"] != first["secret"]


def test_a_session_sealed_with_keys_read_before_the_switch_is_resealed(
    workers, monkeypatch
) -> None:
    """(b) A session sealed with keys read before the switch and stored after it (a writer that
    does not re-read them, as stream.finish did) is stored with the version that sealed it, so
    the rotation re-seals it; one stored between the re-seal pass and the finish is re-sealed by
    the finish. A session written through the service after the switch is sealed under the new
    key. Afterwards the retired key opens none of them and the current key opens all."""
    a, b, caller = workers
    tid = caller.tenant_id
    vec = np.random.default_rng(0).standard_normal(512).astype("<f4")
    stale = a.secrets_of(a.tenant(tid))  # read before the switch (before the analysis)
    assert stale.dek_version == 1
    version, _ = data_keys._switch(b.ctx, tid)
    assert version == 2

    def stale_write(sid: str) -> None:
        sealed = stale.seal_vector(vec, session_aad(tid, sid))
        a.store.add_liveness_session(
            tid,
            sid,
            True,
            a.ctx.space_id,
            sealed,
            {},
            1e12,
            "s1",
            "verify",
            dek_version=stale.dek_version,
        )

    stale_write("ls_before_pass")
    # the service's own write after the switch: keys read under the tenant lock
    add_liveness_session(a.ctx, tid, "ls_service", True, vec, {}, 1e12, "s1", "verify")
    # a write with no version at all (unknown) is re-sealed too
    a.store.add_liveness_session(
        tid,
        "ls_unknown",
        True,
        a.ctx.space_id,
        stale.seal_vector(vec, session_aad(tid, "ls_unknown")),
        {},
        1e12,
        "s1",
        "verify",
    )
    # one more lands after the re-seal pass, just before the finish
    real_finish = data_keys._finish

    def late_then_finish(*args, **kwargs):
        stale_write("ls_late")
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(data_keys, "_finish", late_then_finish)
    out = b.operations.rotate_data_key(tid, settle_s=0)
    assert out["resumed"] is True and out["sessions_resealed"] == 3, out
    assert out["resealed_at_finish"] == 1, out
    assert _everything_opens_under(a, tid, stale.dek)["sessions"] == 4
    retired = a.store.retired_tenant_keys(tid)
    assert [k.version for k in retired] == [1]
    for sid in ("ls_before_pass", "ls_service", "ls_unknown", "ls_late"):
        probe = a.probes.from_session(caller, sid, "s1", ("verify",))
        assert np.allclose(probe.embedding, vec)


def test_the_finish_refuses_while_old_rows_remain(workers, monkeypatch) -> None:
    """The old key is not retired while anything is still sealed under it: more late rows than
    the finish re-seals in one go make it refuse, and a rerun completes."""
    a, b, caller = workers
    tid = caller.tenant_id
    vec = np.random.default_rng(1).standard_normal(512).astype("<f4")
    stale = a.secrets_of(a.tenant(tid))
    data_keys._switch(b.ctx, tid)
    real_finish = data_keys._finish

    def late_then_finish(ctx, tenant_id, version, batch, done):
        for i in range(3):
            sid = f"ls_late{i}"
            sealed = stale.seal_vector(vec, session_aad(tid, sid))
            a.store.add_liveness_session(tid, sid, True, None, sealed, {}, 1e12, dek_version=1)
        return real_finish(ctx, tenant_id, version, batch, done)

    monkeypatch.setattr(data_keys, "_finish", late_then_finish)
    with pytest.raises(ConflictError) as err:
        b.operations.rotate_data_key(tid, batch=2, settle_s=0)
    assert err.value.code == "rotation_incomplete"
    assert a.secrets_of(a.tenant(tid)).previous != ()  # the old key is still in the set
    monkeypatch.setattr(data_keys, "_finish", real_finish)
    out = b.operations.rotate_data_key(tid, batch=2, settle_s=0)
    assert out["sessions_resealed"] == 3
    assert _everything_opens_under(a, tid, stale.dek)["sessions"] == 3


def test_a_stale_reader_does_not_quarantine_a_resealed_template(workers, shared_data) -> None:
    """A verifier whose keys were read before the switch meets a template already re-sealed
    under the new key: it skips it (a stale view), never quarantines it."""
    a, b, caller = workers
    tid = caller.tenant_id
    enrol(a, caller, "biden", photo(shared_data, BIDEN_1))
    stale = a.secrets_of(a.tenant(tid))
    b.operations.rotate_data_key(tid, settle_s=0)
    (t,) = a.store.all_templates(tid)
    assert t.dek_version == 2
    assert open_template(a.store, stale, t) is None
    assert a.quarantined(caller)["templates"] == []


@pytest.mark.parametrize("other", ["renew_transform", "rotate_data_key"])
def test_a_master_key_rotation_never_puts_back_a_replaced_data_key(
    workers, shared_data, monkeypatch, other: str
) -> None:
    """Review: the master-key rotation listed the tenants, then wrote each one's re-wrapped data
    key back from that list. A renewal or a data-key switch committed in between was overwritten
    with the key it replaced, and everything sealed under the new key never opened again. The
    other process here commits right after the listing."""
    a, b, caller = workers
    tid = caller.tenant_id
    enrol(a, caller, "biden", photo(shared_data, BIDEN_1))
    listed = a.store.list_tenants

    def list_then_other_commits():
        rows = listed()
        if other == "renew_transform":
            b.renew_transform(tid)
        else:
            b.operations.rotate_data_key(tid, batch=10, settle_s=0)
        return rows

    monkeypatch.setattr(a.store, "list_tenants", list_then_other_commits)
    out = a.rotate_master_key()
    assert out["tenants_rewrapped"] == 1
    tenant = a.store.get_tenant(tid)
    assert tenant is not None and tenant.kek_version == out["master_key_version"]
    for svc in (a, b):
        r = svc.verify(caller, "biden", svc.probe_from_image(photo(shared_data, BIDEN_2)))
        assert r["match"] is True
    assert a.quarantined(caller)["templates"] == []
