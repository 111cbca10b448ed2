"""schemathesis against a real server: every check, a fixed seed, a bounded number of examples,
zero failures. The server is SQLite with liveness off and the per-address limits off (the run
sends thousands of requests from one address, and the liveness routes answer a documented 503).
Options that are not obvious (which statuses mean "the content was refused, not its shape") are
in ``schemathesis.toml`` at the repository root, with their reasons.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.service.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SEED = 19
MAX_EXAMPLES = 40


def test_schemathesis_finds_no_failure(engine, tmp_path: Path) -> None:
    server = start_server(
        engine, tmp_path, liveness=False, address_rate_per_minute=0, auth_failures_per_minute=0
    )
    try:
        st = Path(sys.executable).with_name("st")
        cmd = [
            str(st),
            f"--config-file={ROOT / 'schemathesis.toml'}",
            "run",
            f"{server.url}/openapi.json",
            "--checks=all",
            f"--seed={SEED}",
            f"--max-examples={MAX_EXAMPLES}",
            "--workers=1",
            "--phases=examples,coverage,fuzzing",
            "--generation-database=none",
            "--request-timeout=30",
            "--no-color",
            f"--header=Authorization: Bearer {server.admin_key}",
            f"--report-dir={tmp_path / 'report'}",
        ]
        run = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
    finally:
        stop_server(server)
    print(run.stdout[-20000:], run.stderr[-5000:])
    assert run.returncode == 0, run.stdout[-8000:]
