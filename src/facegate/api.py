"""The library facade: ``facegate.compare(a, b)`` and the reusable ``Verifier`` behind it.

Like face_recognition's ``api.py``, this is the one file to read to use facegate from Python.
Unlike it, nothing is loaded at import: the engine (models, OpenCV, TFLite, ONNX Runtime) is
imported and built the first time a ``Verifier`` is made, so ``import facegate`` stays cheap.

An image is one of:

- a path (``str`` or ``os.PathLike``): read as bytes, then decoded like any upload;
- ``bytes`` (or ``bytearray``/``memoryview``): an encoded JPEG, PNG, WebP or BMP file;
- a ``numpy.ndarray``: decoded pixels, (H, W, 3) ``uint8`` in **RGB** order. An array from
  OpenCV (``cv2.imread``, ``VideoCapture``) is BGR: convert it with
  ``cv2.cvtColor(img, cv2.COLOR_BGR2RGB)`` first, since facegate cannot tell the two apart and
  a BGR face scores lower against its RGB photos. Grayscale (H, W) or (H, W, 1) is expanded to
  three channels and RGBA (H, W, 4) is composited on white, exactly as decoding a grayscale or
  transparent PNG does. Arrays are held to the same pixel limits as files; no encoding round trip.

Every refusal is a ``FacegateError`` with a stable ``code`` (see ``facegate.errors``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

import numpy as np

from facegate.errors import FacegateError, InputError, TooLargeError
from facegate.types import Embedding, FaceBox, Landmarks, QualityCheck

if TYPE_CHECKING:
    from facegate.engine.compare import OperatingPoint
    from facegate.engine.decode import ImageLimits
    from facegate.engine.pipeline import FaceEngine, FaceResult

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray"
MultipleFaces = Literal["reject", "largest"]
DEFAULT_OPERATING_POINT = "fmr_1e-3"  # the CLI's and the service's default too
_MULTIPLE_FACES = ("reject", "largest")


@dataclass(frozen=True)
class FaceAnalysis:
    """One image's face: where it is, how many faces the image held, every quality value.

    ``box_xyxy`` is (x0, y0, x1, y1) in pixels of the decoded (EXIF-rotated) image.
    ``embedding`` is left out of ``repr``: it is biometric data and must not reach logs.
    """

    faces_found: int
    box_xyxy: tuple[float, float, float, float]
    quality: tuple[QualityCheck, ...]
    embedding: Embedding = field(repr=False)
    landmarks: Landmarks = field(repr=False, compare=False)

    @property
    def quality_passed(self) -> bool:
        return all(c.passed for c in self.quality)

    def to_dict(self) -> dict[str, Any]:
        """The same shape as each ``images`` entry of ``facegate compare`` (no embedding)."""
        return {
            "faces_found": self.faces_found,
            "box_xyxy": [round(v, 1) for v in self.box_xyxy],
            "quality": {c.name: c.to_dict() for c in self.quality},
        }


@dataclass(frozen=True)
class Comparison:
    """The answer to "are these the same person?", with everything needed to audit it.

    ``score`` is a cosine similarity (higher = more alike); ``match`` is
    ``score >= threshold``, where ``threshold`` is the calibrated value of ``operating_point``
    for ``embedding_space``, chosen so that strangers match at rate ``fmr_target``.
    """

    match: bool
    score: float
    threshold: float
    operating_point: str
    fmr_target: float
    embedder: str
    embedding_space: str
    a: FaceAnalysis
    b: FaceAnalysis

    def __bool__(self) -> bool:
        """Refused: ``if facegate.compare(a, b):`` would let everyone in, a result always exists."""
        raise TypeError("a Comparison has no truth value: test .match")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``facegate compare`` prints."""
        return {
            "match": self.match,
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "operating_point": self.operating_point,
            "fmr_target": self.fmr_target,
            "embedder": self.embedder,
            "space_id": self.embedding_space,
            "images": {"a": self.a.to_dict(), "b": self.b.to_dict()},
        }


class Verifier:
    """Loaded models for many comparisons: build one, call it often.

    Construction loads the detector, the landmark model and the embedder (a second or so, and
    ``ModelError`` when weights are missing); calls are then pure functions of their inputs.
    Calls on one ``Verifier`` are serialised by a lock because the TFLite interpreters inside
    are not safe to run from two threads at once; for parallel work make one per thread.

    ``embedder``: ``"mobilefacenet"`` or ``"dlib"``; ``None`` picks MobileFaceNet when its
    weights are installed, else dlib. Scores from different embedders never mix.
    """

    def __init__(
        self,
        embedder: str | None = None,
        *,
        detector: str = "blazeface",
        num_threads: int = 1,
    ) -> None:
        from facegate.engine.pipeline import DEFAULT_EMBEDDER, FaceEngine

        self._engine: FaceEngine = FaceEngine(
            embedder=embedder or DEFAULT_EMBEDDER, detector=detector, num_threads=num_threads
        )
        self._lock = threading.Lock()
        self._points: dict[str, OperatingPoint] = {}

    @property
    def embedder(self) -> str:
        return str(self._engine.embedder.name)

    @property
    def embedding_space(self) -> str:
        return self._engine.space_id

    def __repr__(self) -> str:
        return f"Verifier(embedder={self.embedder!r}, embedding_space={self.embedding_space!r})"

    def analyse(
        self,
        image: ImageInput,
        *,
        multiple_faces: MultipleFaces = "reject",
        enforce_quality: bool = True,
    ) -> FaceAnalysis:
        """The one face of ``image``, or ``InputError``/``FaceError`` with a reason ``code``.

        ``multiple_faces="largest"`` keeps the largest face instead of refusing a picture with
        another person in it; ``enforce_quality=False`` reports failed quality checks in
        ``quality`` instead of raising (a face that is not there still raises).
        """
        _check_policy(multiple_faces)
        pixels = to_engine_input(image, self._engine.limits)
        with self._lock:
            result = self._engine.analyse(
                pixels, multiple=multiple_faces, enforce_quality=enforce_quality
            )
        return _analysis(result)

    def embed(self, image: ImageInput, *, multiple_faces: MultipleFaces = "reject") -> Embedding:
        """The unit-length embedding of the one face of ``image`` (quality enforced)."""
        return self.analyse(image, multiple_faces=multiple_faces).embedding

    def compare(
        self,
        a: ImageInput,
        b: ImageInput,
        operating_point: str = DEFAULT_OPERATING_POINT,
        *,
        multiple_faces: MultipleFaces = "reject",
    ) -> Comparison:
        """Compare the faces of two images at a calibrated operating point (see ``compare``)."""
        from facegate.engine.compare import decide

        _check_policy(multiple_faces)
        pair = _labelled(to_engine_input, (a, b), self._engine.limits)
        point = self._operating_point(operating_point)
        faces = _labelled(self.analyse, pair, multiple_faces=multiple_faces)
        decision = decide(faces[0].embedding, faces[1].embedding, point)
        return Comparison(
            match=decision.match,
            score=decision.score,
            threshold=point.threshold,
            operating_point=point.name,
            fmr_target=point.fmr_target,
            embedder=self.embedder,
            embedding_space=self.embedding_space,
            a=faces[0],
            b=faces[1],
        )

    def _operating_point(self, name: str) -> OperatingPoint:
        """Checked before any image is analysed, so a typo fails fast and cheaply."""
        from facegate.engine.compare import operating_point

        if name not in self._points:
            self._points[name] = operating_point(self.embedding_space, name)
        return self._points[name]


_shared: dict[str | None, Verifier] = {}
_shared_lock = threading.Lock()


def shared_verifier(embedder: str | None = None) -> Verifier:
    """The process-wide ``Verifier`` for ``embedder``, built on first use (once, under a lock)."""
    verifier = _shared.get(embedder)
    if verifier is None:
        with _shared_lock:
            verifier = _shared.get(embedder)
            if verifier is None:
                verifier = _shared[embedder] = Verifier(embedder)
    return verifier


def compare(
    a: ImageInput,
    b: ImageInput,
    operating_point: str = DEFAULT_OPERATING_POINT,
    *,
    embedder: str | None = None,
    multiple_faces: MultipleFaces = "reject",
) -> Comparison:
    """Are the faces in ``a`` and ``b`` the same person?

    >>> r = facegate.compare("A.jpg", "B.jpg")          # doctest: +SKIP
    >>> r.match, r.score, r.threshold                    # doctest: +SKIP
    (True, 0.63, 0.456)

    ``a`` and ``b`` are paths, encoded image bytes, or RGB ``uint8`` arrays (an OpenCV BGR
    array must first go through ``cv2.cvtColor(img, cv2.COLOR_BGR2RGB)``). Each must hold
    exactly one face (``multiple_faces="largest"`` keeps the largest) that passes the quality
    gate. ``operating_point`` names a calibrated threshold: ``"fmr_1e-3"`` (one stranger in a
    thousand matches) or the stricter ``"fmr_1e-4"``.

    The first call loads the models into a shared ``Verifier`` (about a second); build your own
    ``Verifier`` to control threads or to keep several embedders apart.

    Raises ``InputError`` (file missing, not an image, unsupported input type, too large),
    ``FaceError`` (no face, several faces, poor quality) or ``ModelError`` (weights missing);
    every one carries a stable ``code`` and, here, ``details["image"]`` = ``"a"`` or ``"b"``.
    """
    from facegate.engine.decode import DEFAULT_LIMITS  # what the shared Verifier uses

    # Inputs are checked before the models load: a wrong type or a missing file fails at once.
    _check_policy(multiple_faces)
    pair = _labelled(to_engine_input, (a, b), DEFAULT_LIMITS)
    return shared_verifier(embedder).compare(
        pair[0], pair[1], operating_point, multiple_faces=multiple_faces
    )


def _check_policy(multiple_faces: str) -> None:
    if multiple_faces not in _MULTIPLE_FACES:
        raise InputError(
            f"multiple_faces must be one of {_MULTIPLE_FACES}, not {multiple_faces!r}",
            code="bad_argument",
        )


_T = TypeVar("_T")


def _labelled(
    step: Callable[..., _T], images: Sequence[Any], *args: Any, **kwargs: Any
) -> tuple[_T, _T]:
    """``step`` applied to images a and b; a refusal says which one (``details["image"]``)."""
    out: list[_T] = []
    for label, image in zip(("a", "b"), images):
        try:
            out.append(step(image, *args, **kwargs))
        except FacegateError as exc:
            exc.details.setdefault("image", label)
            raise
    return out[0], out[1]


def to_engine_input(image: object, limits: ImageLimits) -> bytes | np.ndarray:
    """Bytes for the decoder, or a validated (H, W, 3) uint8 RGB array; never a surprise type.

    Paths are read here (the engine itself only takes bytes or pixels: requests carry bytes,
    never paths). A file larger than the byte limit is refused from its size, before reading.
    """
    if isinstance(image, np.ndarray):
        return _rgb_array(image, limits)
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        return _read_file(Path(os.fsdecode(image)), limits)
    hint = ""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        hint = ' (for a PIL image pass numpy.asarray(img.convert("RGB")))'
    raise InputError(
        f"an image must be a path, bytes or an RGB numpy array, not {type(image).__name__}{hint}",
        code="unsupported_input",
        type=type(image).__name__,
    )


def _read_file(path: Path, limits: ImageLimits) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputError("not a file", code="file_not_found", file=str(path))
        if size > limits.max_bytes:
            raise TooLargeError(
                "the image is larger than the byte limit",
                code="image_too_large",
                bytes=size,
                limit=limits.max_bytes,
            )
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise InputError("no such file", code="file_not_found", file=str(path)) from exc
    except PermissionError as exc:
        raise InputError(
            "the file cannot be read", code="file_not_readable", file=str(path)
        ) from exc


def _rgb_array(image: np.ndarray, limits: ImageLimits) -> np.ndarray:
    """Hold an array to the decoder's rules: uint8, gray/RGB/RGBA, within the pixel limits."""
    from facegate.engine.decode import check_size  # lazy: `import facegate` stays light

    if image.dtype != np.uint8:
        raise InputError(
            f"an image array must have dtype uint8, not {image.dtype}"
            " (scale floats in [0, 1] with (img * 255).round().astype(numpy.uint8))",
            code="unsupported_input",
            dtype=str(image.dtype),
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise InputError(
            f"an image array must be (H, W), (H, W, 3) RGB or (H, W, 4) RGBA, not {image.shape}",
            code="unsupported_input",
            shape=list(image.shape),
        )
    check_size(image.shape[1], image.shape[0], limits)
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.shape[2] == 4:  # composite on white, as decode.py does for transparent files
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        rgb = image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.rint(rgb).astype(np.uint8))
    return np.ascontiguousarray(image)


def _analysis(result: FaceResult) -> FaceAnalysis:
    box: FaceBox = result.box
    x0, y0, x1, y1 = (float(v) for v in box.xyxy)
    return FaceAnalysis(
        faces_found=result.faces_found,
        box_xyxy=(x0, y0, x1, y1),
        quality=tuple(result.quality),
        embedding=result.embedding,
        landmarks=result.landmarks,
    )
