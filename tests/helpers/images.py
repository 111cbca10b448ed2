"""Images in and out of bytes, for tests that build their own inputs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def encode(rgb: np.ndarray, fmt: str = "PNG", **kwargs: Any) -> bytes:
    """``rgb`` encoded as ``fmt`` (PIL's format name), as an upload would carry it."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))
