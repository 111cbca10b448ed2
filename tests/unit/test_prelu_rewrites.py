"""PReLU rewrites made at load for speed must give the same bits: SFace's ONNX ``PRelu`` into fast
ops (``split_prelu``, every slope range) and MobileFaceNet's five-op TFLite spelling into one
``PRELU`` (``fuse_prelu``), on synthetic graphs; tests/data holds both on real chips."""

from __future__ import annotations

import flatbuffers
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert import schema_py_generated as tfl
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

from facegate.engine.sface import split_prelu
from facegate.engine.tflite_graph import fuse_prelu

CHANNELS = 16


def _prelu_graph(slope: np.ndarray, slope_is_constant: bool = True) -> onnx.ModelProto:
    """y = PRelu(x, slope), x of shape (N, C, 5, 7), slope (C, 1, 1) as SFace stores it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", CHANNELS, 5, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", CHANNELS, 5, 7])
    inputs = [x]
    inits = []
    if slope_is_constant:
        inits.append(numpy_helper.from_array(slope, "slope"))
    else:
        inputs.append(helper.make_tensor_value_info("slope", TensorProto.FLOAT, [CHANNELS, 1, 1]))
    node = helper.make_node("PRelu", ["x", "slope"], ["y"])
    graph = helper.make_graph([node], "g", inputs, [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    return np.asarray(y)


def _inputs(subnormals: bool = True) -> np.ndarray:
    """Signed values over many magnitudes, with exact zeros and subnormals among them."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, CHANNELS, 5, 7)).astype(np.float32)
    x *= np.float32(10.0) ** rng.integers(-6, 7, x.shape).astype(np.float32)
    x.flat[::11] = 0.0
    if subnormals:
        x.flat[5::13] = np.float32(1e-40) * np.sign(x.flat[5::13])
    return x


@pytest.mark.parametrize(
    ("low", "high", "ops"),
    [
        (-0.8, 1.0, ["Mul", "Max"]),  # SFace: 25 of its 27 layers
        (1.0, 1.7, ["Mul", "Min"]),
        (-0.6, 1.12, ["Relu", "Min", "Mul", "Add"]),  # the other 2: slopes on both sides of 1
    ],
)
def test_rewrite_gives_the_same_bits(low: float, high: float, ops: list[str]) -> None:
    slope = np.random.default_rng(1).uniform(low, high, (CHANNELS, 1, 1)).astype(np.float32)
    slope.flat[0], slope.flat[-1] = low, high
    model = _prelu_graph(slope)
    x = _inputs()
    reference = _run(model, x)
    assert split_prelu(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ops
    out = _run(model, x)
    assert np.array_equal(out, reference)
    # and what PReLU means, computed here
    np.testing.assert_array_equal(out, np.where(x > 0, x, slope * x))


def test_a_slope_given_at_run_time_is_left_alone() -> None:
    model = _prelu_graph(np.zeros((CHANNELS, 1, 1), np.float32), slope_is_constant=False)
    assert split_prelu(model) == 0
    assert [n.op_type for n in model.graph.node] == ["PRelu"]


def _five_op_prelu(c: np.ndarray, extra_reader: bool = False) -> bytes:
    """A TFLite model computing relu(x) + c * (x - abs(x)), as MobileFaceNet's file spells PReLU
    (``extra_reader``: the ABS result is also a graph output, so it must not be fused away)."""
    model = tfl.ModelT()
    model.version = 3
    empty, const = tfl.BufferT(), tfl.BufferT()
    const.data = np.frombuffer(c.astype(np.float32).tobytes(), np.uint8)
    model.buffers = [empty, const]
    names = ["x", "relu", "abs", "sub", "c", "mul", "y"]
    model.subgraphs = [tfl.SubGraphT()]
    graph = model.subgraphs[0]
    graph.tensors = []
    for name in names:
        t = tfl.TensorT()
        t.name = name.encode()
        t.type = tfl.TensorType.FLOAT32
        t.shape = np.array([CHANNELS] if name == "c" else [2, 5, 7, CHANNELS], np.int32)
        t.buffer = 1 if name == "c" else 0
        graph.tensors.append(t)
    ix = {n: i for i, n in enumerate(names)}
    kinds = [tfl.BuiltinOperator.RELU, tfl.BuiltinOperator.ABS, tfl.BuiltinOperator.SUB]
    kinds += [tfl.BuiltinOperator.MUL, tfl.BuiltinOperator.ADD]
    model.operatorCodes = []
    for kind in kinds:
        code = tfl.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = kind
        code.version = 1
        model.operatorCodes.append(code)
    wiring = [(["x"], "relu"), (["x"], "abs"), (["x", "abs"], "sub")]
    wiring += [(["c", "sub"], "mul"), (["relu", "mul"], "y")]
    graph.operators = []
    for k, (inputs, output) in enumerate(wiring):
        op = tfl.OperatorT()
        op.opcodeIndex = k
        op.inputs = np.array([ix[i] for i in inputs], np.int32)
        op.outputs = np.array([ix[output]], np.int32)
        graph.operators.append(op)
    graph.inputs = np.array([ix["x"]], np.int32)
    graph.outputs = np.array([ix["y"]] + ([ix["abs"]] if extra_reader else []), np.int32)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _run_tflite(data: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def test_tflite_five_op_prelu_becomes_one_op_with_the_same_bits() -> None:
    c = np.random.default_rng(2).uniform(-0.4, 0.6, CHANNELS).astype(np.float32)  # alpha / 2
    data = _five_op_prelu(c)
    # NHWC, as TFLite runs. No subnormals: XNNPACK's SUB/MUL flush them to zero and its PRELU
    # does not (values under 1.2e-38; on real chips the embeddings are bit for bit the same)
    x = np.ascontiguousarray(_inputs(subnormals=False)[:2].transpose(0, 2, 3, 1))
    fused, count = fuse_prelu(data)
    assert count == 1
    model = tfl.ModelT.InitFromPackedBuf(fused, 0)
    assert len(model.subgraphs[0].operators) == 1
    out = _run_tflite(fused, x)
    assert np.array_equal(out, _run_tflite(data, x))
    np.testing.assert_array_equal(out, np.where(x > 0, x, (2 * c) * x))


def test_tflite_prelu_whose_parts_are_read_elsewhere_is_left_alone() -> None:
    data = _five_op_prelu(np.full(CHANNELS, 0.1, np.float32), extra_reader=True)
    assert fuse_prelu(data) == (data, 0)
