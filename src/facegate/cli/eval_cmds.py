"""Evaluation and liveness commands: ``eval faces|liveness|flash``, ``attack``, ``challenge``
and ``liveness``. Heavy imports stay inside the functions so that ``facegate --help`` and the
operator commands start without loading models or evaluation code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegate.cli.common import _print
from facegate.errors import InputError, TooLargeError


def cmd_eval_faces(args: argparse.Namespace) -> int:
    from facegate.eval.calibrate import run_face_evaluation

    root = Path(args.dir)
    if not root.is_dir():
        raise InputError("no such folder", code="dir_not_found", dir=args.dir)
    report = run_face_evaluation(
        root,
        embedder=args.embedder,
        split=args.split,
        report_path=Path(args.report) if args.report else None,
        det_path=Path(args.det_png) if args.det_png else None,
        calibrate_on=args.calibrate_split,
        write_calibration=args.write_calibration,
        max_impostor_pairs=args.max_impostor_pairs,
        progress=not args.no_progress,
    )
    _print(report)
    return 0


def cmd_challenge(args: argparse.Namespace) -> int:
    import time

    from facegate.config import challenge_key
    from facegate.liveness.challenge import ChallengePolicy, create_challenge, sign
    from facegate.settings import Settings

    actions = (
        tuple(a.strip() for a in args.actions.split(",") if a.strip()) if args.actions else None
    )
    policy = ChallengePolicy(ttl_s=args.ttl, flash=args.flash)
    challenge = create_challenge(policy, now=time.time(), actions=actions)
    _print({**challenge.payload(), "token": sign(challenge, challenge_key(Settings.from_env()))})
    return 0


def _read_challenge_token(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise InputError("no such challenge file", code="file_not_found", file=path)
    text = p.read_text(errors="replace").strip()
    if text.startswith("{"):
        try:
            return str(json.loads(text)["token"])
        except (json.JSONDecodeError, KeyError, TypeError):
            from facegate.errors import ChallengeError

            raise ChallengeError("the challenge file holds no token") from None
    return text


def cmd_liveness(args: argparse.Namespace) -> int:
    import time

    from facegate.config import challenge_key
    from facegate.engine.pipeline import FaceEngine
    from facegate.liveness.challenge import verify
    from facegate.liveness.check import LivenessChecker
    from facegate.liveness.ledger import ChallengeLedger
    from facegate.liveness.video import VideoLimits
    from facegate.settings import Settings

    settings = Settings.from_env()
    now = time.time()
    challenge = verify(_read_challenge_token(args.challenge), challenge_key(settings), now=now)
    video = Path(args.video)
    if not video.is_file():
        raise InputError("no such video file", code="file_not_found", file=args.video)
    limits = VideoLimits(max_seconds=args.max_seconds, max_bytes=args.max_bytes)
    if video.stat().st_size > limits.max_bytes:
        raise TooLargeError(
            "the video is larger than the byte limit",
            code="video_too_large",
            bytes=video.stat().st_size,
            limit=limits.max_bytes,
        )
    ChallengeLedger(settings.ensure_data_dir() / "challenges.sqlite3").spend(challenge, now=now)
    engine = FaceEngine(embedder=args.embedder, num_threads=2)
    checker = LivenessChecker(engine, limits=limits, num_threads=2)
    _print(checker.check(video.read_bytes(), challenge).to_dict())
    return 0


def cmd_eval_liveness(args: argparse.Namespace) -> int:
    from facegate.eval.liveness import run_liveness_evaluation

    data = Path(args.data)
    if not (data / "videos").is_dir():
        raise InputError(f"no videos folder under {data} (give --data)", code="dir_not_found")
    # the ground truth (facegate.eval.datasets); the spoof labels only when real attacks are run
    wanted = ["videos"] + (["spoof"] if args.real_challenges else [])
    for labels in (data / folder / "labels.csv" for folder in wanted):
        if not labels.is_file():
            raise InputError(f"no {labels.relative_to(data)} under {data}", code="file_not_found")
    report = run_liveness_evaluation(
        data,
        report_path=Path(args.report) if args.report else None,
        attacks=args.attacks,
        flash_trials=args.flash_trials,
        real_challenges=args.real_challenges,
    )
    _print(report)
    return 0


def cmd_eval_flash(args: argparse.Namespace) -> int:
    from facegate.eval.flash import run_flash_evaluation
    from facegate.eval.report import write_json

    lo, _, hi = args.strength.partition(":")
    report = run_flash_evaluation(
        Path(args.data),
        split=args.split,
        trials=args.trials,
        strength=(float(lo), float(hi or lo)),
        seed=args.seed,
    )
    if args.report:
        write_json(report, Path(args.report))
    _print(report)
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from facegate.attack.cli import make_attacks

    data = Path(args.data)
    if not (data / "faces").is_dir():
        raise InputError(f"no faces folder under {data} (give --data)", code="dir_not_found")
    manifest = make_attacks(
        args.kind,
        data,
        Path(args.out),
        count=args.count,
        seed=args.seed,
        actions=tuple(a for a in (args.actions or "").split(",") if a) or None,
    )
    _print({"written": len(manifest), "out": args.out, "manifest": "manifest.json"})
    return 0


def cmd_eval_stream(args: argparse.Namespace) -> int:
    """The streaming attacker's APCER per processing delay and the bona fide BPCER per jitter
    setting, through the streamed protocol (a throwaway local server unless --server)."""
    import sys

    from facegate.eval.report import write_json
    from facegate.eval.stream import Target, parse_delays, parse_jitters, run_stream_evaluation

    if bool(args.server) != bool(args.key):
        raise InputError("--server and --key go together", code="bad_request")
    target = Target(args.server, args.key, args.key) if args.server else None

    def progress(row: dict[str, object]) -> None:
        if not args.no_progress:
            sys.stderr.write(json.dumps({k: row[k] for k in ("kind", "live", "reasons")}) + "\n")

    report = run_stream_evaluation(
        Path(args.data),
        delays=parse_delays(args.delays),
        jitters=parse_jitters(args.jitter),
        attempts=args.attempts,
        target=target,
        progress=progress,
    )
    if args.report:
        write_json(report, Path(args.report))
    _print({k: v for k, v in report.items() if k != "rows"})
    return 0
