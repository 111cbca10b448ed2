"""Reading dlib's network file and rebuilding it for onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.engine.dlib_format import Layer, read_dlib_resnet, split_blocks
from facegate.engine.dlib_onnx import DlibOnnxNet
from facegate.engine.models import dlib_model


@pytest.fixture(scope="module")
def dat_bytes() -> bytes:
    return dlib_model("dlib_face_recognition_resnet_model_v1.dat").path.read_bytes()


@pytest.fixture(scope="module")
def net(dat_bytes: bytes):
    return read_dlib_resnet(dat_bytes)


def test_reads_dlib_face_resnet(net) -> None:
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con") == 29
    assert kinds.count("add_prev") == 14
    assert net.size == 150
    assert net.channel_means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert net.layers[0].conv is not None and net.layers[0].conv.weight.shape == (32, 3, 7, 7)
    assert net.layers[-1].fc is not None and net.layers[-1].fc.shape == (256, 128)


@pytest.mark.parametrize("cut", [0, 10, 300, 19_400, 5_000_000, -100])
def test_truncated_file_is_a_clear_error(dat_bytes: bytes, cut: int) -> None:
    with pytest.raises(ValueError):
        read_dlib_resnet(dat_bytes[:cut])


def test_other_file_is_a_clear_error() -> None:
    with pytest.raises(ValueError):
        read_dlib_resnet(b"\x01\x05hello" + bytes(100))


def test_unexpected_layer_sequence_is_refused(net) -> None:
    layers = list(net.layers)
    del layers[6]  # a relu inside the first block
    with pytest.raises(ValueError, match="layer sequence"):
        split_blocks(tuple(layers))
    with pytest.raises(ValueError):
        split_blocks((Layer("relu"), *net.layers))


def test_batch_rows_equal_single_runs(net) -> None:
    onnx_net = DlibOnnxNet(net)
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    batch = onnx_net.run(chips)
    assert batch.shape == (3, 128)
    for k in range(3):
        np.testing.assert_allclose(batch[k], onnx_net.run(chips[k : k + 1])[0], atol=1e-5)
    with pytest.raises(ValueError):
        onnx_net.run(chips[:, :100])


def test_matches_dlib_on_a_synthetic_chip(net) -> None:
    """The full-data test covers faces; this one runs without ../shared/data."""
    import dlib

    ref = dlib.face_recognition_model_v1(
        str(dlib_model("dlib_face_recognition_resnet_model_v1.dat").path)
    )
    y, x = np.mgrid[0:150, 0:150]
    chip = np.stack([x * 1.7, y * 1.7, (x + y) * 0.85], axis=-1).astype(np.uint8)
    a = np.asarray(ref.compute_face_descriptor(chip), np.float32)
    b = DlibOnnxNet(net).run(chip[None])[0]
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 1 - 1e-4
