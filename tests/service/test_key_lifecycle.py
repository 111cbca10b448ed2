"""Key lifecycle (issue 17): a renewal gives the tenant a fresh data key as well as a new
transform; a data key stolen before opens nothing written since, older audit details stay in the
tenant's export, other workers keep verifying without a restart; master-key versions that nothing
uses any more are removed from the key file, and those still in use are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.service.conftest import start_server, stop_server
from tests.service.test_recovery import ALEX_1, ALEX_2, BIDEN_1, BIDEN_2, enrol, photo, two_workers

from facegate.errors import ProtectionError
from facegate.protection.crypto import open_sealed
from facegate.protection.tenant import seed_aad, template_aad


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
