"""Smoke test of ``facegate eval stream`` (issue 15, item 4): one bona fide stream and one
streaming attacker through a throwaway server, on a data folder of a few real files. The full
sweep (docs/attack-defence.md) takes minutes; this takes about half a minute, since every stream
plays in real time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.data import tiny_data_folder

CLI = [sys.executable, "-m", "facegate.cli.main"]
IDENTITIES = ("Al_Gore", "Alec_Baldwin")  # "eval" split identities


def test_eval_stream_reports_apcer_per_delay_and_bpcer_per_jitter(
    shared_data: Path, tmp_path: Path
) -> None:
    data = tiny_data_folder(
        shared_data, tmp_path / "data", videos=("liveportrait_d18.mp4",), identities=IDENTITIES
    )
    report_path = tmp_path / "stream.json"
    cmd = [*CLI, "eval", "stream", "--data", str(data), "--delays", "2000", "--jitter", "0:0",
           "--attempts", "1", "--report", str(report_path), "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    report = json.loads(report_path.read_text())
    assert {k: v for k, v in report.items() if k != "rows"} == printed
    assert printed["bound"] == {
        "max_reflection_lag_ms": 700.0,
        "max_jitter_ms": 400.0,
        "max_gap_ms": 700.0,
    }
    assert set(printed["apcer"]) == {"2000"} and set(printed["bpcer"]) == {"0:0"}
    attack, bona = printed["apcer"]["2000"], printed["bpcer"]["0:0"]
    assert {"attempts", "accepted", "apcer", "reasons", "no_verdict"} <= set(attack)
    assert {"attempts", "accepted", "bpcer", "reasons", "no_verdict"} <= set(bona)
    # a renderer 2 s behind every reveal: its reflections and actions come outside the bounds
    assert attack["attempts"] == 1 and attack["accepted"] == 0 and attack["apcer"] == 0.0
    # the harness is not one that rejects everything: the real video with its colours passes
    assert bona["attempts"] == 1 and bona["accepted"] == 1, bona["reasons"]
    assert [r["kind"] for r in report["rows"]] == ["bona_fide", "attack"]
    assert all(r["client"]["frames_sent"] > 0 for r in report["rows"])
