"""The public surface of ``import facegate``: what it exports, what it costs, how it refuses.

Fast and synthetic: no model is loaded here (every refusal below happens before the engine is
built, which ``test_refusals_load_no_model`` checks). Real faces are in tests/data.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pytest

import facegate
from facegate import api
from facegate.engine.decode import ImageLimits

# Pinned as httpx pins its exports: adding or removing a public name is a decision, made here.
EXPORTED = {
    "Comparison",
    "Embedding",
    "FaceAnalysis",
    "FaceError",
    "FacegateError",
    "InputError",
    "ModelError",
    "SpaceMismatchError",
    "Verifier",
    "__version__",
    "compare",
}

# Modules that must not load on `import facegate`: models, OpenCV, TFLite, ONNX Runtime, dlib.
HEAVY = (
    "cv2",
    "onnxruntime",
    "onnx",
    "ai_edge_litert",
    "dlib",
    "faiss",
    "facegate.engine.pipeline",
)


def test_all_is_pinned() -> None:
    assert set(facegate.__all__) == EXPORTED
    assert len(facegate.__all__) == len(EXPORTED)  # no duplicates


def test_every_exported_name_exists() -> None:
    for name in facegate.__all__:
        assert hasattr(facegate, name), name


def test_errors_are_one_tree() -> None:
    for name in ("InputError", "FaceError", "ModelError", "SpaceMismatchError"):
        assert issubclass(getattr(facegate, name), facegate.FacegateError)


def test_version() -> None:
    assert isinstance(facegate.__version__, str)
    assert re.match(r"^\d+(\.\d+)*", facegate.__version__)
    try:
        assert facegate.__version__ == version("facegate")
    except PackageNotFoundError:  # an uninstalled source tree
        assert facegate.__version__ == "0+unknown"


def test_import_is_cheap() -> None:
    code = f"import sys, facegate; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"import facegate loaded {out.stdout.strip()}"


@pytest.mark.parametrize("bad", [123, None, 1.5, ["a.jpg"], {"path": "a.jpg"}, object()])
def test_wrong_type_is_an_input_error(bad: object) -> None:
    with pytest.raises(facegate.InputError) as info:
        facegate.compare(bad, b"x")  # type: ignore[arg-type]
    assert info.value.code == "unsupported_input"
    assert type(bad).__name__ in str(info.value)
    assert info.value.details["image"] == "a"


def test_pil_image_gets_a_hint() -> None:
    from PIL import Image

    with pytest.raises(facegate.InputError, match=r"numpy\.asarray"):
        api.to_engine_input(Image.new("RGB", (64, 64)), ImageLimits())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(facegate.InputError) as info:
        facegate.compare(tmp_path / "nobody.jpg", str(tmp_path / "none.jpg"))
    assert info.value.code == "file_not_found"
    assert info.value.details["image"] == "a"


def test_missing_second_file_names_b(tmp_path: Path) -> None:
    a = tmp_path / "a.jpg"
    a.write_bytes(b"not read past the check")
    with pytest.raises(facegate.InputError) as info:
        facegate.compare(a, tmp_path / "none.jpg")
    assert info.value.code == "file_not_found" and info.value.details["image"] == "b"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(facegate.InputError) as info:
        api.to_engine_input(tmp_path, ImageLimits())
    assert info.value.code == "file_not_found"


def test_oversized_file_refused_from_its_size(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\0" * 2000)
    with pytest.raises(facegate.InputError) as info:
        api.to_engine_input(big, ImageLimits(max_bytes=1000))
    assert info.value.code == "image_too_large"


def test_bad_policy() -> None:
    with pytest.raises(facegate.InputError) as info:
        facegate.compare(b"x", b"y", multiple_faces="all")  # type: ignore[arg-type]
    assert info.value.code == "bad_argument"


def test_refusals_load_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs are checked before the (slow) models load, so a typo fails at once."""

    def no_models(embedder: str | None = None) -> api.Verifier:
        raise AssertionError("the models were loaded before the inputs were checked")

    monkeypatch.setattr(api, "shared_verifier", no_models)
    for a, b in ((1, b"x"), (b"x", tmp_path / "none.jpg"), (np.zeros((64, 64)), None)):
        with pytest.raises(facegate.InputError):
            facegate.compare(a, b)  # type: ignore[arg-type]


def test_bytes_like_inputs_become_bytes() -> None:
    limits = ImageLimits()
    for data in (b"abc", bytearray(b"abc"), memoryview(b"abc")):
        assert api.to_engine_input(data, limits) == b"abc"


def test_rgb_array_passes_unchanged() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    out = api.to_engine_input(rgb, ImageLimits())
    assert isinstance(out, np.ndarray) and np.array_equal(out, rgb)


def test_non_contiguous_array_is_made_contiguous() -> None:
    bgr = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    out = api.to_engine_input(bgr[:, :, ::-1], ImageLimits())
    assert isinstance(out, np.ndarray) and out.flags.c_contiguous


@pytest.mark.parametrize("shape", [(64, 80), (64, 80, 1)])
def test_grayscale_array_is_expanded(shape: tuple[int, ...]) -> None:
    gray = np.full(shape, 77, dtype=np.uint8)
    out = api.to_engine_input(gray, ImageLimits())
    assert isinstance(out, np.ndarray) and out.shape == (64, 80, 3) and (out == 77).all()


def test_rgba_array_is_composited_on_white() -> None:
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[:32, :, :3] = (10, 20, 30)
    rgba[:32, :, 3] = 255  # top half opaque, bottom half fully transparent
    out = api.to_engine_input(rgba, ImageLimits())
    assert isinstance(out, np.ndarray) and out.shape == (64, 64, 3)
    assert (out[:32] == (10, 20, 30)).all() and (out[32:] == 255).all()


@pytest.mark.parametrize(
    ("array", "code"),
    [
        (np.zeros((64, 64, 3), dtype=np.float32), "unsupported_input"),
        (np.zeros((64, 64, 3), dtype=np.uint16), "unsupported_input"),
        (np.zeros((64, 64, 2), dtype=np.uint8), "unsupported_input"),
        (np.zeros((2, 64, 64, 3), dtype=np.uint8), "unsupported_input"),
        (np.zeros(64, dtype=np.uint8), "unsupported_input"),
        (np.zeros((20, 64, 3), dtype=np.uint8), "image_too_small"),
        (np.zeros((0, 0, 3), dtype=np.uint8), "image_too_small"),
        (np.zeros((100, 100, 3), dtype=np.uint8), "too_many_pixels"),
    ],
)
def test_bad_arrays_are_refused(array: np.ndarray, code: str) -> None:
    with pytest.raises(facegate.InputError) as info:
        api.to_engine_input(array, ImageLimits(max_pixels=5000))
    assert info.value.code == code


def test_float_array_message_says_how_to_convert() -> None:
    with pytest.raises(facegate.InputError, match="uint8"):
        facegate.compare(np.zeros((64, 64, 3)), b"x")


def _analysis() -> facegate.FaceAnalysis:
    from facegate.types import Embedding, Landmarks, QualityCheck

    vector = np.full(4, 0.5, dtype=np.float32)
    return facegate.FaceAnalysis(
        faces_found=1,
        box_xyxy=(1.0, 2.0, 3.0, 4.0),
        quality=(QualityCheck("sharpness", 50.0, True, ">= 20.0"),),
        embedding=Embedding(vector, "space"),
        landmarks=Landmarks(np.zeros((5, 2))),
    )


def test_result_types_are_frozen_and_hide_embeddings() -> None:
    face = _analysis()
    result = facegate.Comparison(True, 0.7, 0.45, "fmr_1e-3", 1e-3, "m", "space", face, face)
    with pytest.raises(AttributeError):
        result.match = False  # type: ignore[misc]
    assert "0.5" not in repr(face) and "embedding" not in repr(face)
    assert face.quality_passed
    out = result.to_dict()
    assert out["match"] is True and out["space_id"] == "space"
    assert out["images"]["a"] == {
        "faces_found": 1,
        "box_xyxy": [1.0, 2.0, 3.0, 4.0],
        "quality": {"sharpness": {"value": 50.0, "passed": True, "bound": ">= 20.0"}},
    }


def test_comparison_has_no_truth_value() -> None:
    """``if facegate.compare(a, b):`` must not let everyone in."""
    face = _analysis()
    result = facegate.Comparison(False, 0.1, 0.45, "fmr_1e-3", 1e-3, "m", "space", face, face)
    with pytest.raises(TypeError, match=r"\.match"):
        bool(result)
