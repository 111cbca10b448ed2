"""Tenants, API keys and authentication."""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from facegate.errors import InputError, NotFoundError
from facegate.protection.tenant import new_tenant_material
from facegate.service.context import Caller, ServiceContext
from facegate.service.policy import (
    AUDITED_SETTINGS,
    DEFAULT_TENANT_SETTINGS,
    PUBLIC_SETTINGS,
    ROLES,
)
from facegate.storage.base import TenantRow
from facegate.storage.sql import hash_secret

MAX_EMBED_ORIGINS = 20
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def embed_origin(text: str) -> str:
    """``text`` as the browser writes an origin (``https://app.example[:port]``: lower case, no
    default port), or ``bad_embed_origin``. Exact origins only: no wildcard, path, query or user
    name, since each one goes into the capture page's ``frame-ancestors`` and is the only place
    its outcome is posted to. Plain http only on loopback (a camera needs a secure page)."""
    bad = InputError(
        f"{text[:200]!r} is not an origin: write scheme://host[:port], e.g. https://app.example",
        code="bad_embed_origin",
    )
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname or ""
    except ValueError:
        raise bad from None
    if (
        not text.isascii()
        or parts.scheme not in ("https", "http")
        or f"{parts.scheme}://{parts.netloc}".lower() != text.lower()
        or "@" in parts.netloc
        or "%" in parts.netloc
    ):
        raise bad
    if ":" in host:  # an IPv6 address, written in brackets
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise bad from None
    elif not HOST_NAME.match(host):
        raise bad
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise InputError(
            "an embedding page needs https (http only on localhost/127.0.0.1/[::1])",
            code="bad_embed_origin",
        )
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def embed_origins(values: list[str]) -> list[str]:
    """The tenant's ``embed_origins``, each checked by ``embed_origin``, without repeats."""
    if len(values) > MAX_EMBED_ORIGINS:
        raise InputError(f"at most {MAX_EMBED_ORIGINS} embedding origins", code="bad_embed_origin")
    return list(dict.fromkeys(embed_origin(v) for v in values))


class Tenants:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def create(self, name: str, settings: dict[str, Any] | None = None) -> tuple[TenantRow, str]:
        """A tenant with fresh key material, and its first admin key (returned once)."""
        ctx = self.ctx
        tenant_id = "t_" + secrets.token_hex(8)
        kek_version, wrapped, sealed_seed = new_tenant_material(ctx.ring, tenant_id)
        row = TenantRow(
            tenant_id,
            name,
            time.time(),
            kek_version,
            wrapped,
            sealed_seed,
            1,
            {**DEFAULT_TENANT_SETTINGS, **(settings or {})},
        )
        ctx.store.add_tenant(row)
        key = ctx.store.add_api_key(tenant_id, frozenset(ROLES), "first admin key", time.time())
        ctx.audit(
            None,
            "tenant.create",
            "ok",
            tenant_id=tenant_id,
            actor="operator",
            details={"name": name},
        )
        return row, key

    def authenticate(self, token: str) -> Caller | None:
        """``fg_<id>_<secret>`` -> the caller, or None. Compares hashes in constant time."""
        parts = token.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != "fg":
            return None
        row = self.ctx.store.get_api_key(parts[1])
        expected = row.secret_hash if row else hash_secret("dummy-for-equal-timing")
        if not hmac.compare_digest(expected, hash_secret(parts[2])) or row is None or row.revoked:
            return None
        return Caller(row.tenant_id, row.id, row.roles)

    def view(self, caller: Caller) -> dict[str, Any]:
        t = self.ctx.tenant(caller.tenant_id)
        settings = {**DEFAULT_TENANT_SETTINGS, **t.settings}  # tenants made before a new setting
        return {"tenant_id": t.id, "name": t.name, **{k: settings[k] for k in PUBLIC_SETTINGS}}

    def update(self, caller: Caller, changes: dict[str, Any]) -> dict[str, Any]:
        t = self.ctx.tenant(caller.tenant_id)
        if "embed_origins" in changes:
            changes = {**changes, "embed_origins": embed_origins(changes["embed_origins"])}
        self.ctx.store.update_tenant_settings(t.id, {**t.settings, **changes})
        weakened = {
            k: {"from": t.settings.get(k), "to": v}
            for k, v in changes.items()
            if k in AUDITED_SETTINGS and t.settings.get(k) != v
        }
        self.ctx.audit(
            caller, "tenant.update", "ok", details={"changed": sorted(changes), **weakened}
        )
        return self.view(caller)

    def create_key(self, caller: Caller, roles: frozenset[str], label: str) -> dict[str, Any]:
        if not roles or not roles <= ROLES:
            raise InputError(f"roles must be among {sorted(ROLES)}", code="bad_request")
        key = self.ctx.store.add_api_key(caller.tenant_id, roles, label, time.time())
        key_id = key.split("_")[1]
        self.ctx.audit(
            caller, "key.create", "ok", details={"key_id": key_id, "roles": sorted(roles)}
        )
        return {"key": key, "key_id": key_id, "roles": sorted(roles)}

    def revoke_key(self, caller: Caller, key_id: str) -> dict[str, Any]:
        if not self.ctx.store.revoke_api_key(caller.tenant_id, key_id, time.time()):
            raise NotFoundError("no such key")
        self.ctx.audit(caller, "key.revoke", "ok", details={"key_id": key_id})
        return {"key_id": key_id, "revoked": True}
