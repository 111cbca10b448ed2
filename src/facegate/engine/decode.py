"""Bytes -> RGB array, with every size and format check done before pixels are decoded.

The header is read first (Pillow parses it lazily), so a decompression bomb is refused
before any pixel buffer is allocated.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facegate.errors import InputError, TooLargeError

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP"})


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on what we agree to decode."""

    max_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 48


DEFAULT_LIMITS = ImageLimits()


def decode_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode JPEG, PNG, WebP or BMP bytes into an (H, W, 3) uint8 RGB array.

    EXIF orientation is applied; grayscale is expanded to three channels; transparency
    is composited on white. Raises ``InputError`` with a specific ``code``.
    """
    if len(data) == 0:
        raise InputError("the file is empty", code="empty_file")
    if len(data) > limits.max_bytes:
        raise TooLargeError(
            "the image is larger than the byte limit",
            code="image_too_large",
            bytes=len(data),
            limit=limits.max_bytes,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own header check, far above ours
        raise TooLargeError(
            "the image has more pixels than allowed",
            code="too_many_pixels",
            limit=limits.max_pixels,
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError("the file is not a supported image", code="not_an_image") from exc
    if img.format not in SUPPORTED_FORMATS:
        raise InputError(
            "unsupported image format", code="unsupported_format", format=str(img.format)
        )
    width, height = img.size
    if width * height > limits.max_pixels:
        raise TooLargeError(
            "the image has more pixels than allowed",
            code="too_many_pixels",
            width=width,
            height=height,
            limit=limits.max_pixels,
        )
    if min(width, height) < limits.min_side:
        raise InputError(
            "the image is too small",
            code="image_too_small",
            width=width,
            height=height,
            limit=limits.min_side,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError("the image data is truncated or corrupt", code="truncated_image") from exc
    upright: Image.Image = ImageOps.exif_transpose(img) or img
    return np.ascontiguousarray(_to_rgb(upright))


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
