"""Per-frame liveness signals from MediaPipe's face mesh and iris models (pure per frame).

- eye openness: the eye aspect ratio (EAR) of the iris model's eye contour. The 468-point mesh
  barely moves when the eyelid closes; the iris model's contour does (../shared/context/stack.md).
- head pose: yaw / pitch / roll from the mesh's own 3-D points (see engine.quality.head_pose_deg).
- mouth openness: inner-lip gap over mouth width.

``FaceTracker`` runs the detector on the first frame and every ``detect_every`` frames (which
also counts faces); in between, the next crop comes from the last mesh, as MediaPipe tracks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from facegate.engine.detect import Detector
from facegate.engine.landmarks import FaceMesh, five_from_mesh, mesh_roi, roi_transform, warp_crop
from facegate.engine.models import mediapipe_model
from facegate.engine.quality import head_pose_deg
from facegate.engine.tflite import TFLiteModel
from facegate.types import FaceBox, Landmarks

IRIS_INPUT = 64
IRIS_ROI_SCALE = 2.3
# (outer/inner corner) pairs per eye as they appear in the image: image-left eye first
EYE_CORNERS = ((33, 133), (362, 263))
# EAR points in the iris model's 71-point contour: p1, p2, p3, p4, p5, p6 (corners p1/p4)
EAR_POINTS = (0, 11, 13, 8, 5, 3)
MOUTH_INNER_TOP, MOUTH_INNER_BOTTOM, MOUTH_LEFT, MOUTH_RIGHT = 13, 14, 61, 291
SECOND_FACE_MIN_RELATIVE_WIDTH = 0.5
MIN_PRESENCE = 0.5


def eye_aspect_ratio(contour: np.ndarray) -> float:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|) over the iris model's eye contour (71, >=2)."""
    p1, p2, p3, p4, p5, p6 = (contour[i, :2] for i in EAR_POINTS)
    width = float(np.linalg.norm(p1 - p4))
    if width < 1e-6:
        return 0.0
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2 * width))


def mouth_openness(mesh: np.ndarray) -> float:
    gap = float(np.linalg.norm(mesh[MOUTH_INNER_TOP, :2] - mesh[MOUTH_INNER_BOTTOM, :2]))
    width = float(np.linalg.norm(mesh[MOUTH_LEFT, :2] - mesh[MOUTH_RIGHT, :2]))
    return gap / max(width, 1e-6)


class IrisModel:
    """MediaPipe iris landmark model: 71 eye-contour points + 5 iris points per eye.

    Both eyes go through one call (batch of 2): 4.4 ms instead of 2 x 2.5 ms on one thread.
    """

    def __init__(self, num_threads: int = 1) -> None:
        path = mediapipe_model("iris_landmark.tflite").path
        self.model = TFLiteModel(path, num_threads, batch=2)

    def eye_contours(self, rgb: np.ndarray, mesh: np.ndarray) -> list[np.ndarray]:
        """Contours (71, 2) in image pixels for the image-left and image-right eye.

        The model was trained on one eye side; the image-right eye is mirrored in and out.
        """
        crops, transforms = [], []
        for flip, (i, j) in zip((False, True), EYE_CORNERS):
            a, b = mesh[i, :2], mesh[j, :2]
            centre = (a + b) / 2
            size = IRIS_ROI_SCALE * float(np.linalg.norm(b - a))
            angle = math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))
            to_image = roi_transform((float(centre[0]), float(centre[1])), size, angle, IRIS_INPUT)
            crop = warp_crop(rgb, to_image, IRIS_INPUT, cv2.BORDER_REPLICATE)
            crops.append(crop[:, ::-1] if flip else crop)
            transforms.append(to_image)
        contours, _iris = self.model.run(np.stack(crops).astype(np.float32) / 255.0)
        out = []
        for k, (flip, to_image) in enumerate(zip((False, True), transforms)):
            pts = contours.reshape(2, 71, 3)[k, :, :2].copy()
            if flip:
                pts[:, 0] = IRIS_INPUT - pts[:, 0]
            out.append(pts @ to_image[:, :2].T + to_image[:, 2])
        return out


@dataclass(frozen=True)
class FrameSignals:
    """What one analysed frame says. Angles in degrees, openness ratios unitless."""

    t_ms: float
    face: bool
    faces_counted: int | None = None  # set on frames where the detector ran
    box_xyxy: tuple[float, float, float, float] | None = None
    ear: float | None = None  # mean of both eyes
    ear_left: float | None = None
    ear_right: float | None = None
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    roll_deg: float | None = None
    mouth: float | None = None
    redetected: bool = False
    landmarks: Landmarks | None = field(default=None, repr=False, compare=False)


def signals_from_mesh(
    rgb: np.ndarray, mesh: np.ndarray, presence: float, iris: IrisModel | None, t_ms: float
) -> FrameSignals:
    """``iris=None``: eye openness is not measured (left None)."""
    ears: list[float | None] = [None, None]
    if iris is not None:
        ears = [eye_aspect_ratio(c) for c in iris.eye_contours(rgb, mesh)]
    yaw, pitch, roll = head_pose_deg(mesh)
    xy = mesh[:, :2]
    box = (
        float(xy[:, 0].min()),
        float(xy[:, 1].min()),
        float(xy[:, 0].max()),
        float(xy[:, 1].max()),
    )
    return FrameSignals(
        t_ms=t_ms,
        face=True,
        box_xyxy=box,
        ear=None if ears[0] is None or ears[1] is None else (ears[0] + ears[1]) / 2,
        ear_left=ears[0],
        ear_right=ears[1],
        yaw_deg=yaw,
        pitch_deg=pitch,
        roll_deg=roll,
        mouth=mouth_openness(mesh),
        landmarks=Landmarks(five=five_from_mesh(mesh), mesh=mesh, presence=presence),
    )


@dataclass(frozen=True)
class TrackedFace:
    """The first stage of a frame: where the face is (its mesh), or that none was found.

    Tracking is sequential (each crop comes from the last mesh); what follows from the mesh
    (``frame_signals``) is not, so it can run for one frame while the next is being tracked.
    """

    t_ms: float
    mesh: np.ndarray | None
    presence: float | None = None
    faces_counted: int | None = None
    redetected: bool = False


def frame_signals(rgb: np.ndarray, tracked: TrackedFace, iris: IrisModel | None) -> FrameSignals:
    """Eye (unless ``iris`` is None), pose and mouth signals of a tracked frame."""
    if tracked.mesh is None or tracked.presence is None:
        return FrameSignals(
            t_ms=tracked.t_ms,
            face=False,
            faces_counted=tracked.faces_counted,
            redetected=tracked.redetected,
        )
    sig = signals_from_mesh(rgb, tracked.mesh, tracked.presence, iris, tracked.t_ms)
    return FrameSignals(
        **{**sig.__dict__, "faces_counted": tracked.faces_counted, "redetected": tracked.redetected}
    )


def roi_from_mesh(mesh: np.ndarray) -> tuple[tuple[float, float], float, float]:
    """Next frame's crop from this frame's mesh: its box, 1.5x, rotated with the eye line."""
    xy = mesh[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    centre = (float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2))
    size = 1.5 * float(max(hi - lo))
    a, b = mesh[33, :2], mesh[263, :2]
    return centre, size, math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))


class FaceTracker:
    """Follows one face through a frame sequence; re-detects periodically and when lost.

    ``detector`` finds the face when there is no track; ``counter`` (a cheaper detector, by
    default the same) re-counts faces every ``detect_every`` frames while tracking.
    """

    def __init__(
        self,
        detector: Detector,
        mesh: FaceMesh,
        iris: IrisModel,
        detect_every: int = 5,
        counter: Detector | None = None,
    ):
        self.detector = detector
        self.counter = counter or detector
        self.mesh = mesh
        self.iris = iris
        self.detect_every = detect_every
        self._last_mesh: np.ndarray | None = None
        self._count = 0
        self.timings_ms = {"detect": 0.0, "mesh": 0.0, "iris_pose_mouth": 0.0}

    def _timed(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.timings_ms[stage] += (now - t0) * 1000
        return now

    def _detect(self, rgb: np.ndarray, detector: Detector) -> tuple[FaceBox | None, int]:
        boxes = sorted(detector.detect(rgb), key=lambda b: -b.area)
        if not boxes:
            return None, 0
        main = boxes[0]
        count = 1 + sum(b.width >= SECOND_FACE_MIN_RELATIVE_WIDTH * main.width for b in boxes[1:])
        return main, count

    def track(self, rgb: np.ndarray, t_ms: float) -> TrackedFace:
        """Detect or follow the face in this frame (detector and mesh only)."""
        tracking = self._last_mesh is not None
        run_detector = not tracking or self._count % self.detect_every == 0
        self._count += 1
        counted: int | None = None
        redetected = False
        mesh = presence = None
        t = time.perf_counter()
        if not run_detector and self._last_mesh is not None:
            mesh, presence = self.mesh.run_roi(rgb, *roi_from_mesh(self._last_mesh))
            t = self._timed("mesh", t)
            if presence < MIN_PRESENCE:
                run_detector, redetected, mesh = True, True, None
        if run_detector:
            box, counted = self._detect(rgb, self.counter if tracking else self.detector)
            if box is None and tracking:  # the cheap counter missed: ask the full detector
                box, counted = self._detect(rgb, self.detector)
            t = self._timed("detect", t)
            if box is None:
                self._last_mesh = None
                return TrackedFace(t_ms, None, faces_counted=0, redetected=redetected)
            mesh, presence = self.mesh.run_roi(rgb, *mesh_roi(box))
            t = self._timed("mesh", t)
            if presence < MIN_PRESENCE:
                self._last_mesh = None
                return TrackedFace(t_ms, None, faces_counted=counted)
        assert mesh is not None and presence is not None
        self._last_mesh = mesh
        return TrackedFace(t_ms, mesh, presence, counted, redetected)

    def step(self, rgb: np.ndarray, t_ms: float) -> FrameSignals:
        """Both stages of one frame, one after the other."""
        tracked = self.track(rgb, t_ms)
        t = time.perf_counter()
        sig = frame_signals(rgb, tracked, self.iris)
        self._timed("iris_pose_mouth", t)
        return sig
