"""Load benchmark: `facegate serve --workers N` on loopback, verify throughput and latency.

Starts a real server (the CLI, with its worker processes) on 127.0.0.1 with a temporary data and
key folder, lets the first tenant accept still photos, enrols a few real faces from
``../shared/data/faces``, then runs 1:1 verifications from 1, 4, 16 and 64 concurrent clients,
each level on new connections (``Connection: close``) and on reused ones (one keep-alive
connection per client), while a probe (a process of its own) times ``GET /healthz`` on a new
connection every 50 ms beside the load. Each
level runs for ``--seconds``, so the whole run is bounded (levels x modes x seconds, plus the
start). Answers other than 200 are counted by status (503 ``busy`` is the per-worker cap at
work). Prints a Markdown table (for docs/scaling.md) and writes JSON with ``--out``.

The clients are asyncio coroutines in this one process, which shares the machine's cores with
the server: on a 2-core machine the numbers are a lower bound on the server's capacity.

    .venv/bin/python bench/bench_load.py --workers 2 --clients 0,1,4,16,64 --seconds 8
    .venv/bin/python bench/bench_load.py --workers 1 --clients 1 --modes reused --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "faces"
PEOPLE = ("Joseph_Biden", "Al_Gore", "Alec_Baldwin", "Alan_Ball")


@dataclass
class Level:
    """What one (clients, mode) run measured."""

    clients: int
    mode: str
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    health_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        ok = sorted(self.latencies_ms)
        health = sorted(self.health_ms)
        return {
            "clients": self.clients,
            "mode": self.mode,
            "ok": len(ok),
            "per_s": round(len(ok) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": _pct(ok, 50),
            "p95_ms": _pct(ok, 95),
            "p99_ms": _pct(ok, 99),
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "healthz_p50_ms": _pct(health, 50),
            "healthz_p99_ms": _pct(health, 99),
            "healthz_max_ms": round(health[-1], 1) if health else None,
        }


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return round(values[k], 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(workers: int, folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """``facegate serve`` in a fresh data folder; (process, base url, first admin key)."""
    port = _free_port()
    env = {
        **os.environ,
        "FACEGATE_DATA_DIR": str(folder / "data"),
        "FACEGATE_KEY_FILE": str(folder / "keys" / "master.keys"),
        "FACEGATE_RATE_PER_MINUTE": "1000000",
        "FACEGATE_RATE_PER_ADDRESS_PER_MINUTE": "0",
        "FACEGATE_AUTH_FAILURES_PER_MINUTE": "0",
    }
    log = (folder / "serve.log").open("wb")
    exe = Path(sys.executable).parent / "facegate"
    cmd = [str(exe), "serve", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {(folder / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        raise SystemExit("serve did not become ready in 180 s")
    key = (folder / "keys" / "first-admin-key").read_text().strip()  # written by the first start
    return proc, url, key


def enrol(url: str, key: str) -> list[tuple[str, bytes]]:
    """Still photos allowed on the tenant, one consenting subject per person, each enrolled from
    its first photo; verification later sends that same photo (always a match: no lockouts)."""
    subjects: list[tuple[str, bytes]] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        r = c.patch("/v1/tenant", json={"require_liveness": False})
        r.raise_for_status()
        version = c.get("/v1/tenant").json()["consent_text_version"]
        for person in PEOPLE:
            photo = sorted((FACES / person).glob("*.jpg"))[0].read_bytes()
            sid = person.lower()
            c.post("/v1/subjects", json={"subject_id": sid}).raise_for_status()
            c.post(
                f"/v1/subjects/{sid}/consents",
                json={"text_version": version, "method": "benchmark"},
            ).raise_for_status()
            r = c.post(f"/v1/subjects/{sid}/enroll", files={"image": ("f.jpg", photo)})
            if r.status_code != 201:
                raise SystemExit(f"enrolment of {person} failed: {r.text}")
            subjects.append((sid, photo))
    return subjects


async def run_level(
    url: str, key: str, subjects: list[tuple[str, bytes]], clients: int, mode: str, seconds: float
) -> Level:
    """``clients`` coroutines verifying in a loop for ``seconds``, plus the health probe."""
    level = Level(clients, mode)
    headers = {"Authorization": f"Bearer {key}"}
    if mode == "new":
        headers["Connection"] = "close"
    stop_at = time.perf_counter() + seconds
    ctx = multiprocessing.get_context("fork")
    results: Queue = ctx.Queue()  # type: ignore[type-arg]

    async def client(i: int) -> None:
        sid, photo = subjects[i % len(subjects)]
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=120, limits=limits
        ) as c:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    r = await c.post(
                        f"/v1/subjects/{sid}/verify", files={"image": ("f.jpg", photo)}
                    )
                except httpx.HTTPError as exc:
                    level.errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.05)
                    continue
                level.statuses[r.status_code] += 1
                if r.status_code == 200:
                    level.latencies_ms.append((time.perf_counter() - t0) * 1000)
                elif r.status_code == 503:  # as a well-behaved client does
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))

    probe = ctx.Process(target=probe_health, args=(url, seconds, results), daemon=True)
    probe.start()
    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)), asyncio.sleep(seconds))
    level.seconds = time.perf_counter() - start
    level.health_ms, health_errors = results.get(timeout=30)  # before join: the pipe drains
    probe.join(timeout=30)
    level.errors.update(health_errors)
    return level


def probe_health(url: str, seconds: float, results: Queue) -> None:  # type: ignore[type-arg]
    """``GET /healthz`` on a new connection every 50 ms, in a process of its own, so that its
    timings are not delayed by the load generator's own event loop."""
    times: list[float] = []
    errors: Counter[str] = Counter()
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        try:
            httpx.get(url + "/healthz", timeout=30, headers={"Connection": "close"})
            times.append((time.perf_counter() - t0) * 1000)
        except httpx.HTTPError as exc:
            errors["healthz_" + type(exc).__name__] += 1
        time.sleep(0.05)
    results.put((times, errors))


def table(rows: list[dict[str, object]], workers: int) -> str:
    lines = [
        "| workers | clients | connections | verifies/s | p50 / p95 / p99 ms | other answers "
        "| /healthz p50 / p99 / max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        statuses = dict(r["statuses"])  # type: ignore[call-overload]
        statuses.pop(200, None)
        other = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        errors = ", ".join(f"{k}: {v}" for k, v in dict(r["errors"]).items())  # type: ignore[call-overload]
        lines.append(
            f"| {workers} | {r['clients']} | {r['mode']} | {r['per_s']} | "
            f"{r['p50_ms']} / {r['p95_ms']} / {r['p99_ms']} | {other or errors or '-'} | "
            f"{r['healthz_p50_ms']} / {r['healthz_p99_ms']} / {r['healthz_max_ms']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", default="0,1,4,16,64", help="0: the probe alone")
    parser.add_argument("--modes", default="new,reused")
    parser.add_argument("--seconds", type=float, default=8.0, help="per level and mode")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="facegate-bench-load-") as tmp:
        proc, url, key = start_server(args.workers, Path(tmp))
        try:
            subjects = enrol(url, key)
            asyncio.run(run_level(url, key, subjects, 2, "reused", 2.0))  # warm both workers
            rows = []
            for clients in levels:
                for mode in modes if clients else modes[:1]:
                    level = asyncio.run(run_level(url, key, subjects, clients, mode, args.seconds))
                    rows.append(level.summary())
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(table(rows, args.workers))
    if args.out:
        args.out.write_text(json.dumps({"workers": args.workers, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
