"""`facegate attack KIND`: write attack videos and a manifest of the challenge each answers."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from facegate.attack.make import PhotoFace, load_photo, make_attack, tracked_video
from facegate.attack.media import write_video
from facegate.engine.pipeline import FaceEngine
from facegate.eval.faces import list_faces
from facegate.eval.liveness import EVAL_LIMITS, VIDEO_ACTIONS
from facegate.liveness.challenge import ChallengePolicy, create_challenge
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
    rng = random.Random(seed)
    engine = FaceEngine(num_threads=2)
    out.mkdir(parents=True, exist_ok=True)
    policy = ChallengePolicy(flash=kind == "tint")
    manifest: list[dict[str, Any]] = []
    photos: list[PhotoFace] = []
    paths = [img.path for img in list_faces(data / "faces", "all")]
    rng.shuffle(paths)
    videos = [n for n, truth in VIDEO_ACTIONS.items() if truth.contains]
    iris = IrisModel(2) if kind == "tint" else None
    tracked: dict[str, list] = {}
    for i in range(count):
        if kind == "tint":
            name = videos[i % len(videos)]
            if name not in tracked:
                tracked[name] = tracked_video(
                    engine, iris, data / "videos" / name, EVAL_LIMITS, 25_000
                )
            challenge = create_challenge(
                policy, now=time.time(), rng=rng, actions=VIDEO_ACTIONS[name].contains
            )
            attack = make_attack(
                kind, [], challenge.actions, rng, flash=challenge.flash, video=(name, tracked[name])
            )
        else:
            while len(photos) < 2 or len(photos) < i + 2:
                if not paths:
                    break
                photo = load_photo(engine, paths.pop())
                if photo is not None:
                    photos.append(photo)
            challenge = create_challenge(policy, now=time.time(), rng=rng, actions=actions)
            attack = make_attack(
                kind,
                [photos[i % len(photos)], photos[(i + 1) % len(photos)]],
                challenge.actions,
                rng,
            )
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
