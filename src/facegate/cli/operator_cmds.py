"""Service and operator commands: serve, tenants, keys, retention, audit.

They all work on the service's data folder (``FACEGATE_DATA_DIR``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from facegate.cli.common import EXIT_REFUSED, _print
from facegate.errors import NotFoundError
from facegate.settings import Settings

if TYPE_CHECKING:
    from facegate.service import FaceService


def _service() -> FaceService:
    """The service without the liveness models (operator tasks never judge videos)."""
    from facegate.service.compose import open_service

    return open_service(Settings.from_env().with_(liveness=False))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    folder = Settings.from_env().ensure_data_dir()
    svc = _service()
    if not svc.store.list_tenants():
        tenant, key = svc.create_tenant("default")
        sys.stderr.write(
            f"facegate: created tenant 'default' ({tenant.id}) in {folder}\n"
            f"facegate: its first admin key (shown once, store it now):\n{key}\n"
        )
        sys.stderr.flush()
    svc.store.close()
    del svc
    sys.stderr.write(f"facegate: serving on http://{args.host}:{args.port} (docs at /docs)\n")
    uvicorn.run(
        "facegate.web.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    return 0


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


def cmd_retention_run(args: argparse.Namespace) -> int:
    _print({"retention": _service().run_retention()})
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from facegate.storage.audit import verify_audit_chain

    records = _service().store.audit_records()
    ok, problems = verify_audit_chain(records)
    _print({"ok": ok, "records": len(records), "problems": problems})
    return 0 if ok else EXIT_REFUSED
