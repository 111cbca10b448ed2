"""`facegate attack KIND`: write attack videos and a manifest of the challenge each answers."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from facegate.attack.make import AttackMaker
from facegate.attack.media import write_video
from facegate.engine.pipeline import FaceEngine
from facegate.liveness.signals import IrisModel


def make_attacks(
    kind: str,
    data: Path,
    out: Path,
    *,
    count: int,
    seed: int,
    actions: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    engine = FaceEngine(num_threads=2)
    maker = AttackMaker(engine, IrisModel(2), data, "all", random.Random(seed))
    out.mkdir(parents=True, exist_ok=True)
    manifest: list[dict[str, Any]] = []
    for i in range(count):
        attack, _ = maker.make(kind, i, actions)
        file = f"{kind}-{i:04d}.mp4"
        write_video(attack.frames, out / file)
        manifest.append(
            {
                "file": file,
                "kind": kind,
                "sources": attack.sources,
                "actions": list(attack.actions),
                "flash": [list(step) for step in attack.flash] if attack.flash else None,
                **attack.info,
            }
        )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
