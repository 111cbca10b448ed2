"""SFace (OpenCV Zoo, Apache-2.0): a 128-D MobileFaceNet-style embedder, int8 block-quantised ONNX.

Why it is here: on ../shared/data/faces it misses fewer genuine pairs than MobileFaceNet at low
false-match rates, and the two models' errors are only partly shared, so their fused score is
better still (``engine/fusion.py``). Four quirks of the shipped file, handled at load:

- The graph declares 29 graph inputs that no node reads (the float weights of every conv layer
  and of the last linear layer, left behind when the int8 copies with their DequantizeLinear nodes
  were added). onnxruntime refuses to run the graph without values for them, so they are
  removed from the graph's input list in memory; nothing is written to disk.
- Every other weight (batch-norm statistics, PReLU slopes, the int8 blocks and their scales) is
  an initializer that is *also* declared as a graph input, which tells onnxruntime it may be
  overridden at run time: it then folds nothing (no conv + batch-norm fusion). Those declarations
  go too; the values stay as initializers. And the int8 weights are dequantised once at load
  (onnxruntime's ``session.disable_quant_qdq``: the DequantizeLinear nodes read constants, so
  constant folding turns them into float weights) instead of on every call. Together: 47 -> 24-29
  ms a chip on one thread here, same outputs to 2e-6.
- The batch size is fixed at 1 in the graph; it is made symbolic so that several chips (a
  video's frames, or a chip and its mirror image) go through in one call.
- onnxruntime's ``PRelu`` kernel is slow: profiled, its 27 PReLU layers took 58% of a chip's
  time (18 of 31 ms on one thread), the convolutions 28%. Each is rewritten into ops with fast
  kernels that compute the *same bits* (``split_prelu``): 29 -> 16 ms a chip on one thread, 15.5
  -> 8 ms on two, outputs identical (``tests/unit/test_prelu_rewrites.py`` and
  ``tests/data/test_sface_faces.py`` compare them with the unrewritten graph's).
- The model normalises inside the graph (subtract, multiply), so it takes raw 0..255 pixels, and
  it expects **RGB**: OpenCV's ``FaceRecognizerSF`` swaps BGR to RGB before the network
  (``blobFromImage(..., swapRB=true)``), and our decoder already gives RGB.

It shares MobileFaceNet's 112x112 chip: OpenCV aligns SFace's input to the same ArcFace five-point
template (``engine/align.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from facegate.engine.align import align_face
from facegate.engine.embed import ARCFACE_CHIP, l2_normalise
from facegate.engine.models import SFACE_SHA256, sface_model
from facegate.errors import ModelError
from facegate.types import FaceBox, Landmarks

CHIP_SIZE = 112


def drop_unused_inputs(model: onnx.ModelProto) -> list[str]:
    """Remove graph inputs that no node reads and no output names; returns the removed names.

    Only the input *declarations* go: initializers, nodes and outputs are untouched, so the
    computation is the same graph.
    """
    read = {name for node in model.graph.node for name in node.input}
    read |= {o.name for o in model.graph.output}
    removed = [i.name for i in model.graph.input if i.name not in read]
    keep = [i for i in model.graph.input if i.name in read]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return removed


def drop_initializer_inputs(model: onnx.ModelProto) -> int:
    """Undeclare graph inputs that are initializers (constants to the runtime from then on)."""
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return dropped


def make_batch_symbolic(model: onnx.ModelProto, name: str = "batch") -> None:
    """Let the first dimension of the (remaining) inputs and of the outputs vary."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = name
    # Shapes inferred for intermediate values would still say 1: drop them, ORT re-infers.
    del model.graph.value_info[:]


_ZERO = "facegate/prelu_zero"  # the scalar 0 of ``min(x, 0)``, added to the graph when needed


def split_prelu(model: onnx.ModelProto) -> int:
    """Rewrite each ``PRelu`` whose slope is a constant into ops that give the same bits.

    With ``a*x`` a correctly rounded product (the same one PRelu computes for ``x < 0``):
    where every slope is <= 1, ``max(x, a*x)`` picks ``x`` for ``x > 0`` and ``a*x`` for
    ``x < 0`` (rounding is monotone, so ``a*x`` cannot cross ``x``); where every slope is >= 1,
    ``min(x, a*x)`` does; otherwise ``relu(x) + a*min(x, 0)`` adds an exact zero to one of the
    two. Returns how many were rewritten; a PRelu with a run-time slope is left alone.
    """
    slopes = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    count = 0
    for node in model.graph.node:
        a = slopes.get(node.input[1]) if node.op_type == "PRelu" else None
        if a is None or a.size == 0:
            nodes.append(node)
            continue
        x, slope = node.input
        y, base = node.output[0], f"{node.output[0]}/prelu"
        if float(a.max()) <= 1.0 or float(a.min()) >= 1.0:
            pick = "Max" if float(a.max()) <= 1.0 else "Min"
            nodes += [
                helper.make_node("Mul", [x, slope], [f"{base}_ax"]),
                helper.make_node(pick, [x, f"{base}_ax"], [y]),
            ]
        else:
            nodes += [
                helper.make_node("Relu", [x], [f"{base}_pos"]),
                helper.make_node("Min", [x, _ZERO], [f"{base}_neg"]),
                helper.make_node("Mul", [f"{base}_neg", slope], [f"{base}_aneg"]),
                helper.make_node("Add", [f"{base}_pos", f"{base}_aneg"], [y]),
            ]
            if _ZERO not in slopes:
                slopes[_ZERO] = np.zeros((), a.dtype)
                model.graph.initializer.append(numpy_helper.from_array(slopes[_ZERO], _ZERO))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def prepare_graph(data: bytes, *, fast_prelu: bool = True) -> tuple[bytes, list[str]]:
    """The fixed graph, serialised in memory, and the names of the inputs that were removed.

    ``fast_prelu=False`` keeps the PReLU nodes (the reference the rewrite is tested against)."""
    model = onnx.load_from_string(data)
    removed = drop_unused_inputs(model)
    drop_initializer_inputs(model)
    make_batch_symbolic(model)
    if fast_prelu:
        split_prelu(model)
    return model.SerializeToString(), removed


def _return_freed_memory() -> None:
    """Give the heap freed after loading back to the OS (glibc keeps it otherwise)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def to_blob(chips: list[np.ndarray]) -> np.ndarray:
    """(N, 112, 112, 3) uint8 RGB chips -> (N, 3, 112, 112) float32 raw pixels (graph scales)."""
    return np.ascontiguousarray(np.stack(chips).astype(np.float32).transpose(0, 3, 1, 2))


class SFaceEmbedder:
    """SFace on onnxruntime, on the ArcFace-aligned 112x112 RGB chip.

    ``flip=True`` also embeds the mirror image and averages (as MobileFaceNet does). Unlike
    MobileFaceNet's fixed batch of two, here it doubles the cost (~30 -> ~58 ms on one thread,
    measured before the PReLU rewrite) for FNMR@1e-4 4.67% -> 4.13% on eval, so the
    ``sface`` embedder runs without it.
    """

    name = "sface"
    dim = 128
    chip = ARCFACE_CHIP

    def __init__(self, flip: bool = False, num_threads: int = 1, fast_prelu: bool = True) -> None:
        data = sface_model().path.read_bytes()
        if hashlib.sha256(data).hexdigest() != SFACE_SHA256:  # the bytes we parse are the ones
            raise ModelError("SFace weights fail their checksum", code="model_checksum")
        try:
            graph, self.removed_inputs = prepare_graph(data, fast_prelu=fast_prelu)
        except Exception as exc:  # onnx raises its own DecodeError types
            raise ModelError("cannot parse SFace's ONNX graph", code="model_invalid") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        # No second, pre-packed copy of the (now float) weights: -30 MB peak, no slower here.
        options.add_session_config_entry("session.disable_prepacking", "1")
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        del data, graph
        _return_freed_memory()  # the parse and optimisation copies: ~40 MB of resident memory
        self._input = self.session.get_inputs()[0].name
        self.flip = flip
        self.space_id = f"sface-{SFACE_SHA256[:8]}-mesh5-arcface112-rgb" + ("-flip" if flip else "")

    def align(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray:
        return align_face(rgb, landmarks.five, CHIP_SIZE)

    def raw(self, chips: list[np.ndarray]) -> np.ndarray:
        """Raw (N, 128) outputs for N RGB chips, in one call."""
        (out,) = self.session.run(None, {self._input: to_blob(chips)})
        return np.asarray(out, dtype=np.float32)

    def embed_chip(self, chip: np.ndarray) -> np.ndarray:
        if not self.flip:
            return l2_normalise(self.raw([chip])[0])
        out = self.raw([chip, chip[:, ::-1]])
        return l2_normalise(l2_normalise(out[0]) + l2_normalise(out[1]))

    def embed_chips(self, chips: list[np.ndarray]) -> list[np.ndarray]:
        """Many chips in one call, without the flip: for comparing frames of one video with each
        other (not for templates, whose space may include the flip)."""
        if not chips:
            return []
        return [l2_normalise(row) for row in self.raw(chips)]

    def embed(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray:
        return self.embed_chip(self.align(rgb, box, landmarks))
