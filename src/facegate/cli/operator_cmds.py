"""Service and operator commands: serve, tenants, keys, retention, audit.

They all work on the service's data folder (``FACEGATE_DATA_DIR``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegate.cli.common import EXIT_REFUSED, _print
from facegate.errors import ConfigError, NotFoundError
from facegate.settings import Settings

if TYPE_CHECKING:
    from facegate.service import FaceService


def _service() -> FaceService:
    """The service without the liveness models (operator tasks never judge videos)."""
    from facegate.service.compose import open_service

    return open_service(Settings.from_env().with_(liveness=False))


def first_admin_key_path(settings: Settings) -> Path:
    """Next to the master keys, not in the data folder and never in a log (stderr lands in
    journald): the file, 0600, is the only copy of the first admin key."""
    return settings.key_file.parent / "first-admin-key"


def write_first_admin_key(settings: Settings, key: str) -> Path:
    path = first_admin_key_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(path, 0o600)
    return path


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from facegate.web.logs import LOG_CONFIG
    from facegate.web.serving import PROTOCOL

    settings = Settings.from_env()
    _refuse_milvus_lite_with_workers(settings, args.workers)
    folder = settings.ensure_data_dir()
    svc = _service()
    if not svc.store.list_tenants():
        tenant, key = svc.create_tenant("default")
        path = write_first_admin_key(settings, key)
        sys.stderr.write(
            f"facegate: created tenant 'default' ({tenant.id}) in {folder}\n"
            f"facegate: its first admin key is in {path} (mode 0600): store it, then delete it\n"
        )
        sys.stderr.flush()
    svc.store.close()
    del svc
    sys.stderr.write(f"facegate: serving on http://{args.host}:{args.port}\n")
    uvicorn.run(
        "facegate.web.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=PROTOCOL,  # h11 with TCP_NODELAY under any number of workers (see its module)
        log_config=LOG_CONFIG,  # JSON lines on stderr in every worker (web/logs.py)
        access_log=False,  # our own request line carries the route template, not the path
    )
    return 0


MILVUS_SERVER_SCHEMES = ("http", "https", "tcp", "grpc", "unix")  # anything else: Milvus Lite


def _refuse_milvus_lite_with_workers(settings: Settings, workers: int) -> None:
    """Milvus Lite is a local file that one process at a time can open: with several workers
    every worker but one would fail to start (or, worse, the supervisor would keep restarting
    them). Refuse before anything is opened, and say what works instead."""
    if settings.index != "milvus" or workers <= 1:
        return
    from urllib.parse import urlparse

    uri = settings.milvus_uri or str(settings.data_dir / "milvus.db")
    if urlparse(uri).scheme.lower() in MILVUS_SERVER_SCHEMES:
        return
    raise ConfigError(
        f"FACEGATE_INDEX=milvus with the Milvus Lite file {uri} can serve one worker only"
        f" (--workers {workers} asked): one process at a time can open a Milvus Lite file."
        " Set FACEGATE_MILVUS_URI to a Milvus server (http://HOST:19530) or run --workers 1",
        code="bad_setting",
    )


def cmd_tenants_create(args: argparse.Namespace) -> int:
    tenant, key = _service().create_tenant(args.name)
    _print({"tenant_id": tenant.id, "name": tenant.name, "admin_key": key})
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    _print(_service().rotate_master_key())
    return 0


def cmd_keys_renew_transform(args: argparse.Namespace) -> int:
    svc = _service()
    tenant = svc.store.tenant_by_name(args.tenant) or svc.store.get_tenant(args.tenant)
    if tenant is None:
        raise NotFoundError("no such tenant", tenant=args.tenant)
    _print(svc.renew_transform(tenant.id))
    return 0


def cmd_keys_retire(args: argparse.Namespace) -> int:
    _print(_service().retire_master_keys())
    return 0


def cmd_keys_rotate_data_key(args: argparse.Namespace) -> int:
    """A fresh data key for one tenant (or each in turn), re-sealed in batches while the
    service runs; after a crash, the same command continues where it stopped."""
    svc = _service()
    if args.tenant:
        tenant = svc.store.tenant_by_name(args.tenant) or svc.store.get_tenant(args.tenant)
        if tenant is None:
            raise NotFoundError("no such tenant", tenant=args.tenant)
        tenants = [tenant]
    else:
        tenants = svc.store.list_tenants()
    out = [svc.operations.rotate_data_key(t.id, args.batch) for t in tenants]
    _print({"rotated": out})
    return 0


def cmd_keys_init_token(args: argparse.Namespace) -> int:
    """The first master key, generated inside the PKCS#11 token (FACEGATE_PKCS11_*): nothing
    else is opened, so it runs before the first ``serve``. A token that already holds facegate
    keys is left as it is."""
    from facegate.protection.pkcs11_ring import init_token, open_pkcs11_ring

    settings = Settings.from_env()
    if settings.pkcs11_module is None:
        raise ConfigError(
            "keys init-token needs FACEGATE_PKCS11_MODULE, FACEGATE_PKCS11_TOKEN and"
            " FACEGATE_PKCS11_PIN_FILE (docs/keys.md)",
            code="bad_setting",
        )
    ring = open_pkcs11_ring(settings.pkcs11_module, settings.pkcs11_token, settings.pkcs11_pin_file)
    _print(init_token(ring, args.first_version))
    return 0


def cmd_keys_import_to_token(args: argparse.Namespace) -> int:
    """Every master-key version of the key file (or of FACEGATE_MASTER_KEYS, read from standard
    input: the setting itself may not be set next to the token's) into the PKCS#11 token, then a
    check that the database's data keys open and its audit versions are there through the token
    alone. The key file is only read, never written or created."""
    from facegate.protection.crypto import load_keyring
    from facegate.protection.pkcs11_ring import open_pkcs11_ring
    from facegate.protection.token_import import check_deployment, import_keys
    from facegate.service.compose import open_store

    settings = Settings.from_env()  # refuses FACEGATE_MASTER_KEYS next to FACEGATE_PKCS11_MODULE
    if settings.pkcs11_module is None:
        raise ConfigError(
            "keys import-to-token needs FACEGATE_PKCS11_MODULE, FACEGATE_PKCS11_TOKEN and"
            " FACEGATE_PKCS11_PIN_FILE next to the key file's setting (docs/keys.md)",
            code="bad_setting",
        )
    if args.master_keys_stdin:
        value = sys.stdin.readline().strip()
        if not value:
            raise ConfigError("no master keys on standard input", code="bad_key")
        source = load_keyring(settings.key_file, value)
    elif settings.key_file.is_file():
        source = load_keyring(settings.key_file)
    else:  # load_keyring would create a fresh key file: the opposite of what is wanted
        raise ConfigError(
            "FACEGATE_KEY_FILE names no file: nothing to import (a deployment on"
            " FACEGATE_MASTER_KEYS gives its value on standard input with --master-keys-stdin)",
            code="key_file_missing",
        )
    ring = open_pkcs11_ring(settings.pkcs11_module, settings.pkcs11_token, settings.pkcs11_pin_file)
    out = import_keys(ring, source)
    if settings.uses_postgres or (settings.data_dir / "facegate.sqlite3").exists():
        store, _ = open_store(settings)
        try:
            out["check"] = check_deployment(ring, store)
        finally:
            store.close()
    else:  # no database yet: nothing to check, and none is created here
        out["check"] = {"ok": True, "data_keys_opened": 0, "problems": []}
    _print(out)
    return 0 if out["check"]["ok"] else EXIT_REFUSED


def cmd_retention_run(args: argparse.Namespace) -> int:
    _print({"retention": _service().run_retention()})
    return 0


def _audit_state(checkpoint: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The audit chain checked three ways: keyed hashes (master key ring), the head anchored
    outside the database (``FACEGATE_AUDIT_ANCHOR``), and optionally a signed checkpoint.
    Opens only the database and the key ring (no models)."""
    from facegate.errors import ProtectionError
    from facegate.protection.audit_keys import check_checkpoint, checkpoint_public_keys
    from facegate.service.compose import open_master_keys, open_store
    from facegate.storage.audit import AuditHead, head_problems, verify_audit_chain
    from facegate.storage.audit_anchor import AuditAnchor, key_lookup, read_anchor

    settings = Settings.from_env()
    store, _ = open_store(settings)
    ring = open_master_keys(settings)
    records = store.audit_records()
    path = settings.audit_anchor_path
    problems: list[dict[str, Any]] = []
    try:
        anchored = read_anchor(path, ring)
    except ProtectionError as exc:
        anchored = None
        problems.append({"seq": None, "problem": f"anchor: {exc}"})
    else:
        if anchored is None and records:
            problems.append({"seq": None, "problem": "no audit anchor where one is expected"})
    heads = [anchored] if anchored else []
    if checkpoint:
        try:
            stored = json.loads(Path(checkpoint).read_text())
            vouched = check_checkpoint(stored)
            if stored["public_key"] not in checkpoint_public_keys(ring):
                raise ProtectionError("signed by a key that is not this deployment's")
            heads.append(AuditHead(int(vouched["seq"]), str(vouched["hash"])))
        except (OSError, ValueError, KeyError, ProtectionError) as exc:
            problems.append({"seq": None, "problem": f"checkpoint: {exc}"})
    ok, chain_problems = verify_audit_chain(records, key_lookup(ring))
    problems += chain_problems
    for head in heads:
        problems += head_problems(records, head)
    out = {
        "ok": ok and not problems,
        "records": len(records),
        "problems": problems,
        "anchor": {"seq": anchored.seq if anchored else None, "path": str(path)},
        # templates taken out of use because their sealed bytes did not open (by row, never a
        # verdict on the chain): erase or re-enrol those subjects
        "quarantined_templates": [
            {"tenant_id": q.tenant_id, "template_id": q.template_id, "at": q.quarantined_at}
            for q in store.quarantined_templates()
        ],
    }
    return (AuditAnchor(path, store, ring), ring), out


def cmd_audit_verify(args: argparse.Namespace) -> int:
    _, out = _audit_state(getattr(args, "checkpoint", None))
    _print(out)
    return 0 if out["ok"] else EXIT_REFUSED


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    """Verify, advance the anchor, and print a signed checkpoint of the head to store elsewhere
    (another machine, a ticket, paper): ``audit verify --checkpoint FILE`` checks against it."""
    from facegate.protection.audit_keys import sign_checkpoint

    (anchor, ring), out = _audit_state()
    if not out["ok"]:
        _print(out)
        return EXIT_REFUSED
    head = anchor.flush()
    if head is None:
        _print({"ok": True, "records": 0, "checkpoint": None})
        return 0
    checkpoint = sign_checkpoint(ring, {"seq": head.seq, "hash": head.hash, "at": time.time()})
    _print({"ok": True, "records": out["records"], "checkpoint": checkpoint})
    return 0
