"""Bytes -> RGB array, with every size and format check done before pixels are decoded.

The header is read first (Pillow parses it lazily), so a decompression bomb is refused
before any pixel buffer is allocated. Every failure is an ``InputError`` with a code: the bytes
are the client's, so no parser exception may escape as a server fault (a 500 whose traceback
would quote them). ``tests/unit/test_decode_fuzz.py`` mutates real files to hold that.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from facegate.errors import FacegateError, InputError, TooLargeError

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP"})
TIFF_HEADERS = (b"II*\x00", b"MM\x00*")  # little- and big-endian; an EXIF block is a TIFF file
EXIF_ORIENTATION = 0x0112
UPRIGHT = {  # EXIF orientation -> the transpose that makes the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on what we agree to decode."""

    max_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 48


DEFAULT_LIMITS = ImageLimits()


def check_size(width: int, height: int, limits: ImageLimits) -> None:
    """The pixel bounds every image is held to, decoded from bytes or handed over as an array."""
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


def decode_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode JPEG, PNG, WebP or BMP bytes into an (H, W, 3) uint8 RGB array.

    EXIF orientation is applied; grayscale is expanded to three channels; transparency
    is composited on white. Raises ``InputError`` with a specific ``code``.
    """
    try:
        return _decode(data, limits)
    except FacegateError:
        raise
    except MemoryError as exc:
        raise TooLargeError("the image is too large to decode", code="too_many_pixels") from exc
    except Exception as exc:  # any other parser fault on the client's bytes (see the module)
        raise InputError("the image data is corrupt", code="corrupt_image") from exc


def _decode(data: bytes, limits: ImageLimits) -> np.ndarray:
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
    check_size(img.size[0], img.size[1], limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError("the image data is truncated or corrupt", code="truncated_image") from exc
    transpose = UPRIGHT.get(_orientation(img))
    upright = img.transpose(transpose) if transpose is not None else img
    return np.ascontiguousarray(_to_rgb(upright))


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 when absent or not a number from 1 to 8).

    Only the pixels are kept, so only this tag is read: ``ImageOps.exif_transpose`` would also
    re-serialise the whole EXIF block, which raises on a malformed one (negative seek offsets,
    wrong value types found by fuzzing). An EXIF segment that is not a TIFF structure at all, or
    that fails to parse, is refused as ``bad_exif``: cameras and browsers write valid ones, and a
    file that lies about its own structure is not worth guessing at."""
    raw = img.info.get("exif")
    if raw:
        block = raw[6:] if isinstance(raw, bytes) and raw.startswith(b"Exif\x00\x00") else raw
        if not isinstance(block, bytes) or not block.startswith(TIFF_HEADERS):
            raise InputError("the image's EXIF metadata is not a TIFF structure", code="bad_exif")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about every corrupt entry it skips
            value = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception as exc:
        raise InputError("the image's EXIF metadata is malformed", code="bad_exif") from exc
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


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
