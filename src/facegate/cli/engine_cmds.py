"""Engine commands: ``compare`` (1:1 on two images) and ``models install``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facegate.cli.common import _print, _read_image
from facegate.errors import FacegateError


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


def cmd_models_install(args: argparse.Namespace) -> int:
    from facegate.engine.models import install_mobilefacenet, mediapipe_model

    out: dict[str, Any] = {"mediapipe": str(mediapipe_model("face_landmark.tflite").path.parent)}
    path = install_mobilefacenet(Path(args.dir) if args.dir else None)
    out["mobilefacenet"] = str(path)
    _print(out)
    return 0
