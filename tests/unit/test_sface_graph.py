"""SFace's graph repair (synthetic graphs), and the repaired model against OpenCV's own run of the
untouched file (the shipped weights, no photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from facegate.engine import models
from facegate.engine.sface import (
    drop_initializer_inputs,
    drop_unused_inputs,
    make_batch_symbolic,
    prepare_graph,
    to_blob,
)
from facegate.errors import ModelError


def _graph_with_stray_inputs() -> onnx.ModelProto:
    """y = (x - bias) * scale, with 'bias' an initializer also declared as an input (as SFace's
    graph does) and 'float_w' a declared input that no node reads (the 29 in SFace)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    bias_in = helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3])
    stray = helper.make_tensor_value_info("float_w", TensorProto.FLOAT, [3, 3])
    inits = [
        numpy_helper.from_array(np.array([1, 2, 3], np.float32), "bias"),
        numpy_helper.from_array(np.array([2, 2, 2], np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("Sub", ["x", "bias"], ["d"]),
        helper.make_node("Mul", ["d", "scale"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x, bias_in, stray], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def test_only_unread_inputs_are_removed() -> None:
    model = _graph_with_stray_inputs()
    assert drop_unused_inputs(model) == ["float_w"]
    assert [i.name for i in model.graph.input] == ["x", "bias"]
    assert len(model.graph.node) == 2 and len(model.graph.initializer) == 2


def test_initializer_inputs_become_constants_and_batch_varies() -> None:
    model = _graph_with_stray_inputs()
    drop_unused_inputs(model)
    assert drop_initializer_inputs(model) == 1
    make_batch_symbolic(model)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)  # batch of two on a batch-1 graph
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, (x - [1, 2, 3]) * 2)


def test_prepare_graph_leaves_the_computation_alone() -> None:
    data = _graph_with_stray_inputs().SerializeToString()
    fixed, removed = prepare_graph(data)
    assert removed == ["float_w"]
    before = onnx.load_from_string(data)
    after = onnx.load_from_string(fixed)
    assert [n.SerializeToString() for n in before.graph.node] == [
        n.SerializeToString() for n in after.graph.node
    ]


def test_blob_is_nchw_raw_pixels() -> None:
    chip = np.zeros((112, 112, 3), np.uint8)
    chip[..., 0] = 200  # red
    blob = to_blob([chip, chip])
    assert blob.shape == (2, 3, 112, 112) and blob.dtype == np.float32
    assert blob[0, 0].max() == 200 and blob[0, 1:].max() == 0  # channel 0 is R: RGB order


def test_missing_or_altered_sface_weights_are_refused(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "models").mkdir()
    monkeypatch.setattr(models, "_package_dir", lambda module, hint: tmp_path)
    with pytest.raises(ModelError) as info:
        models.sface_model()
    assert info.value.code == "model_missing"
    (tmp_path / "models" / models.SFACE_FILE).write_bytes(b"not the model")
    with pytest.raises(ModelError) as info:
        models.sface_model()
    assert info.value.code == "model_checksum"


def test_repaired_graph_computes_what_opencv_computes_on_the_original() -> None:
    """OpenCV's dnn runs the shipped file as is; its FaceRecognizerSF feeds
    ``blobFromImage(bgr_chip, swapRB=true)``, i.e. RGB. Our RGB chip must give the same vector."""
    cv2 = pytest.importorskip("cv2")
    from facegate.engine.sface import SFaceEmbedder

    path = models.sface_model().path
    net = cv2.dnn.readNetFromONNX(str(path))
    rgb = np.random.default_rng(3).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    blob = cv2.dnn.blobFromImage(
        np.ascontiguousarray(rgb[:, :, ::-1]), 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False
    )
    net.setInput(blob, "data")
    reference = net.forward().ravel()
    embedder = SFaceEmbedder()
    assert len(embedder.removed_inputs) == 29
    ours = embedder.raw([rgb])[0]
    assert np.abs(ours - reference).max() < 1e-3 * np.abs(reference).max()
    # the chip and its mirror in one call give what two single calls give
    both = embedder.raw([rgb, rgb[:, ::-1]])
    np.testing.assert_allclose(both[0], ours, atol=1e-4)
