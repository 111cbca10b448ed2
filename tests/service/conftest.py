"""A real facegate server on 127.0.0.1 (uvicorn in a thread), driven over HTTP with httpx."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from tests.helpers import missing_resource

from facegate.liveness.check import LivenessChecker
from facegate.protection.crypto import MasterKeys, load_keyring
from facegate.service import FaceService
from facegate.service.index import DatabaseIndex
from facegate.settings import Settings
from facegate.storage.postgres import PostgresStore
from facegate.storage.sqlite import SQLiteStore
from facegate.web.app import create_app

EVALUATION_TENANT = {
    "require_liveness": False,
    "allow_chosen_actions": True,
    "allow_video_upload": True,
}


@dataclass
class Server:
    url: str
    service: FaceService
    data_dir: Path
    key_file: Path
    admin_key: str
    thread: threading.Thread
    server: uvicorn.Server

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[str]:
    """A throwaway PostgreSQL 16 with pgvector (the pgserver wheel bundles both) on a Unix
    socket in a temporary folder; stopped and deleted after the session."""
    try:
        import pgserver
    except ImportError:
        missing_resource("pgserver is not installed: run ./scripts/setup.sh --test")

    folder = tmp_path_factory.mktemp("postgres")
    server = pgserver.get_server(folder, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


def new_database(admin_url: str) -> str:
    """A fresh database on the test server, so every test module starts empty."""
    import secrets

    import psycopg

    name = "fg_" + secrets.token_hex(6)
    with psycopg.connect(admin_url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return admin_url.replace("/postgres?", f"/{name}?", 1)


def start_server(
    engine,
    tmp: Path,
    *,
    rate_per_minute: int = 10_000,
    max_body: int = 32 << 20,
    liveness: bool = True,
    postgres_url: str | None = None,
    tenant_settings: dict | None = None,
    postgres_unsealed: bool = False,
    ring: MasterKeys | None = None,
    **settings_fields: Any,
) -> Server:
    """A server whose first tenant, "alpha", is an evaluation tenant unless ``tenant_settings``
    say otherwise: still photos accepted and actions chosen by the caller, so that the API's
    paths can be driven with the shared photos and recorded videos. The secure defaults are
    tested on fresh tenants (test_secure_defaults.py). ``settings_fields`` are further fields of
    ``facegate.settings.Settings`` (limits, for example); ``ring``: master keys other than a key
    file in ``tmp`` (a PKCS#11 token)."""
    data_dir, key_file = tmp / "data", tmp / "keys" / "master.keys"
    data_dir.mkdir(parents=True)
    index: DatabaseIndex | None = None  # the default: in-memory, built from sealed templates
    if postgres_url:
        store = PostgresStore(new_database(postgres_url), unsealed_index=postgres_unsealed)
        if postgres_unsealed:  # the opt-in FACEGATE_INDEX=pgvector-unsealed
            index = DatabaseIndex(store)
    else:
        store = SQLiteStore(data_dir / "facegate.sqlite3")
    checker = LivenessChecker(engine) if liveness else None
    keys = ring if ring is not None else load_keyring(key_file)
    service = FaceService(store, keys, engine, checker, index)
    _, admin_key = service.create_tenant(
        "alpha",
        EVALUATION_TENANT if tenant_settings is None else tenant_settings,
    )
    settings = Settings(
        data_dir=data_dir,
        key_file=key_file,
        rate_per_minute=rate_per_minute,
        max_body_bytes=max_body,
        liveness=liveness,
        **settings_fields,
    )
    app = create_app(settings, service=service)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    return Server(
        f"http://127.0.0.1:{port}", service, data_dir, key_file, admin_key, thread, server
    )


def stop_server(server: Server) -> None:
    server.server.should_exit = True
    server.thread.join(timeout=10)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, engine, tmp_path_factory) -> Iterator[Server]:
    """The same API tests run on both backends."""
    url = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    s = start_server(engine, tmp_path_factory.mktemp("facegate"), postgres_url=url)
    yield s
    stop_server(s)


def face(shared_data: Path, rel: str) -> bytes:
    return (shared_data / "faces" / rel).read_bytes()


def consenting_subject(client: httpx.Client, subject_id: str) -> None:
    assert client.post("/v1/subjects", json={"subject_id": subject_id}).status_code == 201
    version = client.get("/v1/tenant").json()["consent_text_version"]
    r = client.post(
        f"/v1/subjects/{subject_id}/consents",
        json={"text_version": version, "method": "checkbox in test"},
    )
    assert r.status_code == 201, r.text
