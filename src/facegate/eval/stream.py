"""``facegate eval stream``: APCER of a live streaming attacker against its processing delay,
next to the bona fide acceptance of a real video under simulated network jitter.

Why: the streamed protocol bounds *time*, not content (docs/liveness-protocol.md): each step is
revealed only once the previous one is covered, every frame is timed on the server's clock, and a
colour's reflection must follow its reveal within a bound. So the number that says what the
protocol is worth is how fast an attacker has to be: the emulator kit answering each revealed
step ``P`` ms late (``facegate.attack.stream``), for a sweep of ``P``; and the price bona fide
users pay is the acceptance of a real video, its revealed colours rendered onto the face, under
uplink delay and jitter. Both run through the real protocol against a real server.

- bona fide: ``videos/liveportrait_d18.mp4`` (opens its mouth twice) with its own action,
  ``open_mouth``, chosen in the start message (needs a tenant with ``allow_chosen_actions``),
  frames held back ``D`` ms plus a random 0..J ms each, order kept (``--jitter D:J``);
- attack: photos of the ``eval`` identities of ``faces/`` on a tenant with the defaults
  (server-chosen actions, each bound to its own step), answered ``P`` ms late (``--delays``).

Every stream plays in real time (5-10 s) in one spawned client process, so client and server
do not share a GIL; a throwaway server runs in this process unless ``server``/``key`` are given.
Each attempt has its own consenting subject: every attempt counts, and five failures would lock
a shared one.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from random import Random
from typing import Any

from facegate.errors import InputError
from facegate.eval.datasets import list_faces
from facegate.liveness.stream import DEFAULT_STREAM_POLICY

BONA_FIDE_VIDEO = "videos/liveportrait_d18.mp4"
BONA_FIDE_ACTIONS = ["open_mouth"]  # what the video shows (videos/labels.csv)
DEFAULT_DELAYS = (0.0, 300.0, 600.0, 1000.0, 2000.0)
DEFAULT_JITTERS = ((0.0, 0.0), (150.0, 100.0), (300.0, 250.0))


@dataclass(frozen=True)
class Target:
    """Where the streams go: the server's URL and a key (admin: it creates the subjects) for the
    bona fide streams and one for the attacks (may be the same)."""

    url: str
    bona_fide_key: str
    attack_key: str


def parse_delays(text: str) -> list[float]:
    """``0,300,600`` -> processing delays in ms (0 to 60000)."""
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("--delays: comma-separated milliseconds", code="bad_request") from None
    if not out or any(not 0 <= d <= 60_000 for d in out):
        raise InputError("--delays: 0 to 60000 ms each", code="bad_request")
    return out


def parse_jitters(text: str) -> list[tuple[float, float]]:
    """``0:0,150:100`` -> (constant delay, random extra up to) pairs in ms."""
    out: list[tuple[float, float]] = []
    for spec in (s.strip() for s in text.split(",") if s.strip()):
        delay, sep, jitter = spec.partition(":")
        try:
            pair = (float(delay), float(jitter or 0.0))
        except ValueError:
            raise InputError("--jitter: DELAY:JITTER,... in ms", code="bad_request") from None
        if not sep or not all(0 <= v <= 10_000 for v in pair):
            raise InputError("--jitter: DELAY:JITTER,... in ms (0-10000)", code="bad_request")
        out.append(pair)
    if not out:
        raise InputError("--jitter: at least one DELAY:JITTER", code="bad_request")
    return out


def jitter_name(delay: float, jitter: float) -> str:
    return f"{delay:.0f}:{jitter:.0f}"


def bound() -> dict[str, float]:
    """The timing bounds the server enforces (liveness.stream.StreamPolicy's defaults)."""
    p = DEFAULT_STREAM_POLICY
    return {
        "max_reflection_lag_ms": p.max_reflection_lag_ms,
        "max_jitter_ms": p.max_jitter_ms,
        "max_gap_ms": p.max_gap_ms,
    }


# --- the client process ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _engine() -> Any:
    from facegate.engine.pipeline import FaceEngine

    return FaceEngine()


@lru_cache(maxsize=4)
def _video(path: str) -> Any:
    """The bona fide video with its meshes (tracked once per client process, then reused)."""
    from facegate.cli.stream_cmds import load_video

    return load_video(Path(path), True)


def stream_job(job: dict[str, Any]) -> dict[str, Any]:
    """One stream (run in the client process): the bona fide video or an emulated photo."""
    from facegate.cli.stream_cmds import run_stream

    if job["kind"] == "bona_fide":
        source: Any = _video(job["video"])
    else:
        from facegate.attack.make import load_photo
        from facegate.attack.stream import StreamingEmulator

        photo = load_photo(_engine(), Path(job["photo"]))
        if photo is None:
            return {"skipped": True}
        source = StreamingEmulator(photo, job["processing_ms"], job["seed"])
    try:
        return asyncio.run(
            run_stream(job["url"], job["start"], source, key=job["key"], delay_ms=job["delay_ms"],
                       jitter_ms=job["jitter_ms"], seed=job["seed"],
                       stop_when_done=job["kind"] != "bona_fide")
        )  # fmt: skip
    except OSError as exc:
        return {"type": "error", "code": "connection_failed", "message": type(exc).__name__}


# --- the server --------------------------------------------------------------------------------


@contextmanager
def local_server() -> Iterator[Target]:
    """A throwaway server in this process (uvicorn in a thread, data in a temporary folder):
    an evaluation tenant (chosen actions allowed) for the bona fide video, a tenant with the
    defaults for the attacker."""
    import uvicorn

    from facegate.service.compose import open_service
    from facegate.settings import Settings
    from facegate.web.app import create_app

    with tempfile.TemporaryDirectory(prefix="facegate-eval-stream-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            key_file=Path(tmp) / "keys" / "master.keys",
            rate_per_minute=10_000,
            address_rate_per_minute=0,
        )
        settings.ensure_data_dir()
        service = open_service(settings)
        _, eval_key = service.create_tenant("evaluation", {"allow_chosen_actions": True})
        _, attack_key = service.create_tenant("default-settings")
        config = uvicorn.Config(
            create_app(settings, service=service), host="127.0.0.1", port=0, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        if not server.started:
            raise RuntimeError("the evaluation server did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield Target(f"http://127.0.0.1:{port}", eval_key, attack_key)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            anchor = getattr(service.store, "audit_anchor", None)
            if anchor is not None:  # anchor now, while the temporary folder still exists
                anchor.close()
            service.store.close()


def _post(url: str, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.loads(r.read() or b"{}"))


def consenting_subject(url: str, key: str, subject_id: str) -> None:
    """A fresh subject with consent recorded (a verification stream needs consent). A refusal
    (a key without the admin role, for one) is the caller's input: exit 2 with its status."""
    try:
        _post(url, key, "/v1/subjects", {"subject_id": subject_id})
        req = urllib.request.Request(
            url.rstrip("/") + "/v1/tenant", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            version = json.loads(r.read())["consent_text_version"]
        body = {"text_version": version, "method": "facegate eval stream"}
        _post(url, key, f"/v1/subjects/{subject_id}/consents", body)
    except urllib.error.HTTPError as exc:
        raise InputError(
            f"the server refused to create an evaluation subject (HTTP {exc.code})",
            code="server_refused",
        ) from None


# --- the evaluation ----------------------------------------------------------------------------


def _jobs(
    target: Target,
    data: Path,
    delays: Sequence[float],
    jitters: Sequence[tuple[float, float]],
    attempts: int,
) -> list[dict[str, Any]]:
    photos = [str(img.path) for img in list_faces(data / "faces", "eval")]
    if not photos:
        raise InputError(f"no eval-split identities under {data / 'faces'}", code="no_data")
    Random(5).shuffle(photos)
    run = f"{time.time_ns():x}"  # subjects unique on a shared server too
    jobs: list[dict[str, Any]] = []
    for delay, jitter in jitters:
        for i in range(attempts):
            jobs.append({"kind": "bona_fide", "video": str(data / BONA_FIDE_VIDEO),
                         "key": target.bona_fide_key, "delay_ms": delay, "jitter_ms": jitter,
                         "seed": i, "start": {"purpose": "verify",
                                              "actions": list(BONA_FIDE_ACTIONS)}})  # fmt: skip
    for p in delays:
        for i in range(attempts):
            jobs.append({"kind": "attack", "photo": photos[i % len(photos)],
                         "key": target.attack_key, "processing_ms": p, "delay_ms": 0.0,
                         "jitter_ms": 0.0, "seed": i, "start": {"purpose": "verify"}})  # fmt: skip
    for n, job in enumerate(jobs):
        job["url"] = target.url
        job["start"]["subject_id"] = f"eval-stream-{run}-{job['kind']}-{n}"
        consenting_subject(target.url, job["key"], job["start"]["subject_id"])
    return jobs


def _row(job: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    lag = next((c["score"] for c in out.get("cues", []) if c["name"] == "flash_lag_ms"), None)
    return {
        "kind": job["kind"],
        "delay_ms": job["delay_ms"],
        "jitter_ms": job["jitter_ms"],
        "processing_ms": job.get("processing_ms"),
        "live": bool(out.get("live")) if out.get("type") == "verdict" else None,
        "reasons": sorted({r["code"] for r in out.get("reasons", [])}),
        "error": out.get("code") if out.get("type") == "error" else None,
        "lag_ms": lag,
        "client": out.get("client"),
        "server": out.get("timings_ms"),
        "max_jitter_ms": (out.get("stream") or {}).get("max_jitter_ms"),
    }


def _tally(rows: Sequence[dict[str, Any]], accepted_is_error: bool) -> dict[str, Any]:
    """Attempts with a verdict, accepted, the error rate (APCER: accepted attacks; BPCER:
    rejected bona fide), the reasons that stopped the rejected and streams without a verdict."""
    judged = [r for r in rows if r["live"] is not None]
    accepted = sum(bool(r["live"]) for r in judged)
    reasons: dict[str, int] = {}
    for r in judged:
        for code in r["reasons"] if not r["live"] else ():
            reasons[code] = reasons.get(code, 0) + 1
    wrong = accepted if accepted_is_error else len(judged) - accepted
    lags = [r["lag_ms"] for r in judged if r["live"] and r["lag_ms"] is not None]
    rate = round(wrong / len(judged), 3) if judged else None
    return {
        "attempts": len(judged),
        "accepted": accepted,
        "apcer" if accepted_is_error else "bpcer": rate,
        "reasons": dict(sorted(reasons.items())),
        "no_verdict": sorted(r["error"] or "none" for r in rows if r["live"] is None),
        "accepted_lag_ms": lags,
    }


def run_stream_evaluation(
    data: Path,
    *,
    delays: Sequence[float] = DEFAULT_DELAYS,
    jitters: Sequence[tuple[float, float]] = DEFAULT_JITTERS,
    attempts: int = 2,
    target: Target | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Stream every attempt, one at a time; the report (``rows`` holds each stream's figures)."""
    if not (data / BONA_FIDE_VIDEO).is_file():
        raise InputError(f"no {BONA_FIDE_VIDEO} under {data} (give --data)", code="file_not_found")
    if not (data / "faces").is_dir():
        raise InputError(f"no faces folder under {data} (give --data)", code="dir_not_found")
    if not 1 <= attempts <= 100:
        raise InputError("--attempts: 1 to 100", code="bad_request")
    with local_server() if target is None else _given(target) as t:
        jobs = _jobs(t, data, delays, jitters, attempts)
        rows: list[dict[str, Any]] = []
        with mp.get_context("spawn").Pool(1) as pool:
            for job, out in zip(jobs, pool.imap(stream_job, jobs)):
                if out.get("skipped"):
                    continue
                rows.append(_row(job, out))
                if progress is not None:
                    progress(rows[-1])
    bona = [r for r in rows if r["kind"] == "bona_fide"]
    attack = [r for r in rows if r["kind"] == "attack"]
    return {
        "bound": bound(),
        "server": "local" if target is None else target.url,
        "bona_fide_video": BONA_FIDE_VIDEO,
        "attempts_per_setting": attempts,
        "apcer": {
            f"{p:.0f}": _tally([r for r in attack if r["processing_ms"] == p], True) for p in delays
        },
        "bpcer": {
            jitter_name(d, j): _tally(
                [r for r in bona if (r["delay_ms"], r["jitter_ms"]) == (d, j)], False
            )
            for d, j in jitters
        },
        "rows": rows,
    }


@contextmanager
def _given(target: Target) -> Iterator[Target]:
    yield target
