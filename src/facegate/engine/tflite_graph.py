"""MobileFaceNet's PReLU, put back as one op: 12 -> 7 ms a face (chip + mirror) on one thread.

The converted MobileFaceNet file spells each of its 33 PReLU activations as five element-wise
ops over the whole feature map, ``relu(x) + c * (x - abs(x))`` with ``c = alpha / 2`` folded into
a constant; each op is its own pass over memory in XNNPACK, and together they cost ~40% of the
model's time. TFLite has a ``PRELU`` op (XNNPACK runs it in one pass) that computes
``x if x > 0 else alpha * x``. Same bits: for ``x < 0`` the five ops give ``0 + c * (2x)`` and
PRELU gives ``(2c) * x``, one rounding of the same exact product (scaling by 2 is exact); for
``x > 0`` they give ``x + c * 0 = x``. (One exception: XNNPACK's SUB and MUL flush subnormal
values, under 1.2e-38, to zero and its PRELU keeps them.) ``tests/data/test_engine_faces.py``
holds the two graphs' outputs bit for bit equal on real chips; so were all 1505 photos' embeddings.

The rewrite is done in memory at load, on bytes whose sha256 was checked; nothing is written.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

_OP = schema.BuiltinOperator


def _opcode(model: schema.ModelT, index: int) -> int:
    code = model.operatorCodes[index]
    return int(max(code.builtinCode, code.deprecatedBuiltinCode))


def fuse_prelu(data: bytes) -> tuple[bytes, int]:
    """The model with every ``relu(x) + c * (x - abs(x))`` (c a float32 constant) as ``PRELU``
    with slope ``2c``; returns the new flatbuffer and how many were fused. Only the first
    subgraph is rewritten, and only where each intermediate result has no other reader."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    ops = graph.operators
    producer = {int(t): k for k, op in enumerate(ops) for t in op.outputs}
    readers: dict[int, list[int]] = {}
    for k, op in enumerate(ops):
        for t in op.inputs:
            readers.setdefault(int(t), []).append(k)
    for t in graph.outputs:  # a graph output has a reader outside the graph
        readers.setdefault(int(t), []).append(-1)

    def made_by(tensor: int, code: int) -> int | None:
        k = producer.get(tensor)
        return k if k is not None and _opcode(model, ops[k].opcodeIndex) == code else None

    def constant(tensor: int) -> np.ndarray | None:
        t = graph.tensors[tensor]
        raw = model.buffers[t.buffer].data if t.type == schema.TensorType.FLOAT32 else None
        return None if raw is None or len(raw) == 0 else np.frombuffer(bytes(raw), np.float32)

    fused: dict[int, tuple[int, int]] = {}  # ADD op -> (x, slope tensor) of its PRELU
    gone: set[int] = set()
    for k, op in enumerate(ops):
        if _opcode(model, op.opcodeIndex) != _OP.ADD or len(op.inputs) != 2:
            continue
        a, b = (int(t) for t in op.inputs)
        relu, mul = made_by(a, _OP.RELU), made_by(b, _OP.MUL)
        if relu is None or mul is None:
            relu, mul = made_by(b, _OP.RELU), made_by(a, _OP.MUL)
        if relu is None or mul is None:
            continue
        x = int(ops[relu].inputs[0])
        m0, m1 = (int(t) for t in ops[mul].inputs)
        c_tensor, d = (m0, m1) if constant(m0) is not None else (m1, m0)
        c, sub = constant(c_tensor), made_by(d, _OP.SUB)
        if c is None or sub is None:
            continue
        s0, s1 = (int(t) for t in ops[sub].inputs)
        absolute = made_by(s1, _OP.ABS)
        if s0 != x or absolute is None or int(ops[absolute].inputs[0]) != x:
            continue
        chain = {relu: k, mul: k, sub: mul, absolute: sub}  # op -> its only reader
        if any(readers.get(int(ops[j].outputs[0])) != [r] for j, r in chain.items()):
            continue
        slope = (c * np.float32(2)).astype(np.float32)
        if not np.array_equal(slope / np.float32(2), c):  # an overflow or a lost bit: leave it
            continue
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(slope.tobytes(), np.uint8)
        model.buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.shape = np.array([slope.size], np.int32)
        tensor.type = schema.TensorType.FLOAT32
        tensor.buffer = len(model.buffers) - 1
        tensor.name = (graph.tensors[c_tensor].name or b"") + b"/prelu_slope"
        graph.tensors.append(tensor)
        fused[k] = (x, len(graph.tensors) - 1)
        gone |= set(chain)
    if not fused:
        return data, 0
    codes = [_opcode(model, i) for i in range(len(model.operatorCodes))]
    if _OP.PRELU not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = _OP.PRELU
        code.version = 1
        model.operatorCodes.append(code)
        codes.append(_OP.PRELU)
    kept = []
    for k, op in enumerate(ops):
        if k in fused:
            prelu = schema.OperatorT()
            prelu.opcodeIndex = codes.index(_OP.PRELU)
            prelu.inputs = np.array(fused[k], np.int32)
            prelu.outputs = op.outputs
            kept.append(prelu)
        elif k not in gone:
            kept.append(op)
    graph.operators = kept
    builder = flatbuffers.Builder(len(data) + 65536)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), len(fused)
