"""decode_image: each bad input gets its own typed error; good formats decode the same pixels."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.helpers import encode, load_rgb

from facegate.engine.decode import ImageLimits, decode_image
from facegate.errors import InputError

PHOTO = "faces/Joseph_Biden/face_recognition_biden.jpg"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, followed by a tiny IDAT and IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _code(data: bytes, limits: ImageLimits | None = None) -> str:
    with pytest.raises(InputError) as info:
        decode_image(data, limits or ImageLimits())
    return info.value.code


def test_empty_file() -> None:
    assert _code(b"") == "empty_file"


def test_text_file() -> None:
    assert _code(b"name,identity\nthis is not an image\n" * 20) == "not_an_image"


def test_truncated_jpeg(shared_data: Path) -> None:
    data = (shared_data / PHOTO).read_bytes()
    assert _code(data[: len(data) // 2]) == "truncated_image"


@pytest.mark.parametrize("side", [30000, 8000])
def test_decompression_bomb_refused_from_header(side: int) -> None:
    # 8000^2 is under Pillow's own bomb check but over our 40 Mpx limit
    assert _code(_png_header_only(side, side)) == "too_many_pixels"


def test_over_byte_limit(shared_data: Path) -> None:
    data = (shared_data / PHOTO).read_bytes()
    assert _code(data, ImageLimits(max_bytes=len(data) - 1)) == "image_too_large"


def test_too_small() -> None:
    assert _code(encode(np.full((20, 30, 3), 128, np.uint8))) == "image_too_small"


def test_unsupported_format() -> None:
    img = Image.new("RGB", (64, 64))
    import io

    buf = io.BytesIO()
    img.save(buf, format="GIF")
    assert _code(buf.getvalue()) == "unsupported_format"


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP"])
def test_lossless_formats_roundtrip(shared_data: Path, fmt: str) -> None:
    rgb = load_rgb(shared_data / PHOTO)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    out = decode_image(encode(rgb, fmt, **kwargs))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out, rgb)


def test_grayscale_and_alpha_become_rgb(shared_data: Path) -> None:
    rgb = load_rgb(shared_data / PHOTO)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    out = decode_image(encode(grey))
    assert out.shape == (*grey.shape, 3)
    assert np.array_equal(out[..., 0], grey)
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])  # fully transparent
    out = decode_image(encode(rgba))
    assert out.shape == rgb.shape and out.min() == 255  # composited on white


def test_exif_orientation_is_applied(shared_data: Path) -> None:
    rgb = load_rgb(shared_data / PHOTO)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(rgb, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data)
    assert out.shape[:2] == (rgb.shape[1], rgb.shape[0])
