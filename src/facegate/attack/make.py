"""Make attack videos of each kind from ../shared/data (used by `facegate attack` and the
attack evaluation). Every attack answers a given challenge: it performs the challenged actions
on cue, as the kits do; the tint attack follows the challenge's colour sequence."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import numpy as np

from facegate.attack.lighting import render_flash
from facegate.attack.media import on_time_grid, track_video
from facegate.attack.synth import emulator, fit_frame, photo_on_stick, screen_replay
from facegate.attack.timeline import make_timeline
from facegate.engine.decode import decode_image
from facegate.engine.pipeline import FaceEngine
from facegate.errors import FacegateError
from facegate.eval.datasets import (
    EVAL_LIMITS,
    VideoTruth,
    bona_fide_videos,
    list_faces,
    load_video_truth,
)
from facegate.liveness.challenge import Challenge, ChallengePolicy, create_challenge, random_flash
from facegate.liveness.signals import IrisModel
from facegate.liveness.video import VideoLimits

KINDS = ("photo_on_stick", "emulator", "emulator_on_screen", "splice", "tint")


@dataclass
class Attack:
    kind: str
    frames: list[np.ndarray]
    sources: list[str]
    actions: tuple[str, ...]
    flash: tuple[tuple[str, int], ...] | None = None
    info: dict[str, object] = field(default_factory=dict)


@dataclass
class PhotoFace:
    path: Path
    rgb: np.ndarray  # letterboxed to the attack frame size
    mesh: np.ndarray


def load_photo(engine: FaceEngine, path: Path) -> PhotoFace | None:
    """A still photo with one clear face, letterboxed to 640x480, and its face mesh."""
    try:
        image = decode_image(path.read_bytes())
        rgb = fit_frame(image.rgb if hasattr(image, "rgb") else image)
        result = engine.analyse(rgb, multiple="largest", enforce_quality=False)
    except FacegateError:
        return None
    if result.landmarks.mesh is None or result.faces_found != 1:
        return None  # a kit user picks a photo of one person
    return PhotoFace(path, rgb, result.landmarks.mesh)


def make_attack(
    kind: str,
    photos: Sequence[PhotoFace],
    actions: tuple[str, ...],
    rng: Random,
    *,
    flash: tuple[tuple[str, int], ...] | None = None,
    video: tuple[str, list] | None = None,
) -> Attack:
    """One attack of ``kind`` answering ``actions``: from ``photos[0]`` (and ``photos[1]`` for
    a splice), or for ``tint`` from ``video`` = (name, tracked frames) lit by ``flash``."""
    timeline = make_timeline(actions, rng)
    first = photos[0] if photos else None
    if kind == "photo_on_stick" and first is not None:
        frames = photo_on_stick(first.rgb, timeline, rng)
        return Attack(kind, frames, [first.path.name], actions)
    if kind in ("emulator", "emulator_on_screen") and first is not None:
        frames = emulator(first.rgb, first.mesh, timeline, rng)
        if kind == "emulator_on_screen":
            frames = screen_replay(frames, rng)
        return Attack(kind, frames, [first.path.name], actions)
    if kind == "splice" and len(photos) >= 2:
        a = emulator(photos[0].rgb, photos[0].mesh, timeline, rng)
        b = emulator(photos[1].rgb, photos[1].mesh, timeline, rng)
        # the cut falls in the middle of the answer, where a kit would switch faces
        cut = len(a) // 2
        return Attack(
            kind,
            a[:cut] + b[cut:],
            [photos[0].path.name, photos[1].path.name],
            actions,
            info={"cut_frame": cut},
        )
    if kind == "tint" and video is not None and flash is not None:
        name, tracked = video
        lag = rng.uniform(0, 400)
        frames = render_flash(
            [(f.t_ms, f.rgb, f.mesh) for f in tracked],
            flash,
            lag_ms=lag,
            strength=rng.uniform(0.06, 0.12),
            uniform=True,
        )
        return Attack(kind, frames, [name], actions, flash, {"lag_ms": round(lag)})
    raise ValueError(f"cannot make {kind} from what was given")


def tracked_video(
    engine: FaceEngine, iris: IrisModel, path: Path, limits: VideoLimits, max_ms: float
) -> list:
    frames = track_video(engine, iris, path.read_bytes(), limits)
    return on_time_grid([f for f in frames if f.t_ms <= max_ms])


def with_flash(challenge: Challenge, rng: Random) -> Challenge:
    """The same challenge with a random colour sequence added."""
    return dataclasses.replace(challenge, flash=random_flash(ChallengePolicy(flash=True), rng))


class AttackMaker:
    """The i-th attack of a kind with the challenge it answers. Photos (from one split of
    ../shared/data/faces, shuffled by ``rng``) are loaded and videos tracked once, when first
    needed; attack i uses photos i and i+1 (the second only for a splice)."""

    def __init__(
        self, engine: FaceEngine, iris: IrisModel, data: Path, split: str, rng: Random
    ) -> None:
        self.engine, self.iris, self.data, self.rng = engine, iris, data, rng
        self.paths = [img.path for img in list_faces(data / "faces", split)]
        rng.shuffle(self.paths)
        self.paths.reverse()  # popped from the end: shuffled order
        self.photos: list[PhotoFace] = []
        self.tracked: dict[str, list] = {}
        self._truth: dict[str, VideoTruth] | None = None

    @property
    def truth(self) -> dict[str, VideoTruth]:
        """The selfie videos of the data folder with their truth, read when a tint first needs
        them (the photo attacks need no videos/ folder)."""
        if self._truth is None:
            self._truth = bona_fide_videos(load_video_truth(self.data))
        return self._truth

    @property
    def videos(self) -> list[str]:
        """The videos a tint can replay: those that show at least one action."""
        return [n for n, truth in self.truth.items() if truth.contains]

    def photo(self, i: int) -> PhotoFace:
        while len(self.photos) <= i and self.paths:
            photo = load_photo(self.engine, self.paths.pop())
            if photo is not None:
                self.photos.append(photo)
        return self.photos[i % len(self.photos)]

    def video(self, name: str) -> list:
        if name not in self.tracked:
            path = self.data / "videos" / name
            self.tracked[name] = tracked_video(self.engine, self.iris, path, EVAL_LIMITS, 25_000)
        return self.tracked[name]

    def make(
        self, kind: str, i: int, actions: tuple[str, ...] | None = None
    ) -> tuple[Attack, Challenge]:
        """Random actions (or ``actions``); a tint answers its real video's own actions and a
        colour sequence, which it then follows on the whole frame."""
        challenge = create_challenge(
            ChallengePolicy(), now=time.time(), rng=self.rng, actions=actions
        )
        if kind == "tint":
            name = self.videos[i % len(self.videos)]
            challenge = with_flash(
                dataclasses.replace(challenge, actions=self.truth[name].contains), self.rng
            )
            attack = make_attack(
                kind,
                [],
                challenge.actions,
                self.rng,
                flash=challenge.flash,
                video=(name, self.video(name)),
            )
            return attack, challenge
        pair = [self.photo(i), self.photo(i + 1)]
        return make_attack(kind, pair, challenge.actions, self.rng), challenge
