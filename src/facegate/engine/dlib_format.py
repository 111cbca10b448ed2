"""Read dlib's face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) into plain arrays.

Pure parsing, no I/O: ``dlib_onnx`` turns the result into an ONNX graph.

dlib's serialisation (``dlib/serialize.h``): integers are one header byte (low nibble = byte
count, bit 7 = sign) and that many little-endian bytes; floats are an integer mantissa and an
integer exponent; strings are a length and bytes; bools are ``'0'``/``'1'``; tensors are a version
(2), four dimensions and raw little-endian float32. A network is written outermost layer first as
nested version numbers, then the input layer, then each layer's own fields from the bottom up,
each followed by training state we skip. Tag and skip layers write no fields, so the residual
wiring comes from the known architecture, and the reader checks the layer sequence against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_LAYER = "input_rgb_image_sized"


@dataclass(frozen=True)
class Conv:
    weight: np.ndarray  # (out, in, rows, cols), as ONNX wants it
    bias: np.ndarray
    stride: int
    padding: int


@dataclass(frozen=True)
class Affine:
    """A batch norm frozen after training: ``gamma * x + beta`` per channel."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" or "avg"
    size: int  # 0: over the whole feature map
    stride: int
    padding: int


@dataclass(frozen=True)
class Layer:
    """One entry of the bottom-up layer sequence."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc
    conv: Conv | None = None
    affine: Affine | None = None
    pool: Pool | None = None
    fc: np.ndarray | None = None  # (inputs, outputs)


@dataclass(frozen=True)
class DlibResNet:
    channel_means: tuple[float, float, float]  # RGB, subtracted before dividing by 256
    size: int  # input chip side (150)
    layers: tuple[Layer, ...]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("dlib network file ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int_(self) -> int:
        head = self._take(1)[0]
        size = head & 0x0F
        if size > 8:
            raise ValueError(f"bad integer header at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if head & 0x80 else value

    def float_(self) -> float:
        mantissa = self.int_()
        exponent = self.int_()
        return float(mantissa) * 2.0**exponent

    def string(self) -> str:
        n = self.int_()
        if not 0 <= n <= 256:
            raise ValueError(f"bad string length {n} at byte {self.pos}")
        return self._take(n).decode("ascii")

    def bool_(self) -> bool:
        c = self._take(1)
        if c not in (b"0", b"1"):
            raise ValueError(f"bad bool at byte {self.pos - 1}")
        return c == b"1"

    def tensor(self) -> np.ndarray:
        version = self.int_()
        if version != 2:
            raise ValueError(f"unsupported tensor version {version}")
        dims = [self.int_() for _ in range(4)]
        count = int(np.prod(dims))
        raw = self._take(4 * count)
        return np.frombuffer(raw, "<f4", count).reshape(dims).astype(np.float32)

    def alias_tensor(self) -> tuple[int, ...]:
        if self.int_() != 1:
            raise ValueError("unsupported alias_tensor version")
        return tuple(self.int_() for _ in range(4))

    def peek_string(self, text: str) -> bool:
        encoded = text.encode("ascii")
        start = self.pos + 2  # a length under 128 is two bytes: header 0x01 and the length
        return (
            self.data[self.pos : self.pos + 2] == bytes([1, len(encoded)])
            and self.data[start : start + len(encoded)] == encoded
        )


def _read_con(r: _Reader, version: str) -> Layer:
    params = r.tensor().ravel()
    filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (r.int_() for _ in range(7))
    shape = r.alias_tensor()
    r.alias_tensor()  # biases
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.float_()
    use_bias = r.bool_() if version == "con_5" else True
    if rows != cols or stride_y != stride_x or pad_y != pad_x or shape[0] != filters:
        raise ValueError("unexpected convolution shape in the dlib network")
    size = int(np.prod(shape))
    weight = params[:size].reshape(shape)
    bias = params[size : size + filters] if use_bias else np.zeros(filters, np.float32)
    return Layer("con", conv=Conv(weight, bias, stride_y, pad_y))


def _read_affine(r: _Reader) -> Layer:
    params = r.tensor().ravel()
    gamma_shape = r.alias_tensor()
    r.alias_tensor()  # beta
    if r.int_() != 0:
        raise ValueError("only convolutional-mode affine layers are supported")
    n = int(np.prod(gamma_shape))
    return Layer("affine", affine=Affine(params[:n].copy(), params[n : 2 * n].copy()))


def _read_pool(r: _Reader, kind: str) -> Layer:
    rows, cols, stride_y, stride_x, pad_y, pad_x = (r.int_() for _ in range(6))
    if rows != cols or stride_y != stride_x or pad_y != pad_x:
        raise ValueError("unexpected pooling shape in the dlib network")
    return Layer(f"{kind}_pool", pool=Pool(kind, rows, stride_y, pad_y))


def _read_fc(r: _Reader) -> Layer:
    outputs = r.int_()
    inputs = r.int_()
    params = r.tensor().reshape(-1, outputs)
    if params.shape[0] not in (inputs, inputs + 1):
        raise ValueError("unexpected fully connected shape in the dlib network")
    if params.shape[0] == inputs + 1 and np.any(params[inputs]):
        raise ValueError("a fully connected bias is not supported")
    return Layer("fc", fc=params[:inputs].copy())


def _skip_training_state(r: _Reader, first: bool) -> None:
    """After each layer's fields: three flags and three (empty) tensors of training state; the
    layer right above the input also writes its sample expansion factor."""
    for _ in range(3):
        r.bool_()
    for _ in range(3):
        r.tensor()
    if first:
        r.int_()


def read_dlib_resnet(data: bytes) -> DlibResNet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat``. Raises ``ValueError`` on any other
    file."""
    r = _Reader(data)
    r.int_()
    if not r.string().startswith("loss_metric"):
        raise ValueError("not a dlib metric-learning network")
    r.float_(), r.float_()  # margin and distance threshold: training only
    for _ in range(1000):  # the nested layers' version numbers, down to the input layer
        if r.peek_string(INPUT_LAYER):
            break
        r.int_()
    else:
        raise ValueError("no input layer found in the dlib network")
    r.string()
    means = (r.float_(), r.float_(), r.float_())
    rows, cols = r.int_(), r.int_()
    if rows != cols:
        raise ValueError("the dlib network's input is not square")

    layers: list[Layer] = []
    while True:
        name = r.string()
        if name in ("con_4", "con_5"):
            layer = _read_con(r, name)
        elif name == "affine_":
            layer = _read_affine(r)
        elif name in ("relu_", "add_prev_"):
            layer = Layer(name[:-1])
        elif name in ("max_pool_2", "avg_pool_2"):
            layer = _read_pool(r, name[:3])
        elif name == "fc_2":
            layers.append(_read_fc(r))
            break  # the last layer: the rest of the file is training state
        else:
            raise ValueError(f"unsupported dlib layer {name!r}")
        layers.append(layer)
        _skip_training_state(r, first=len(layers) == 1)
    net = DlibResNet(means, rows, tuple(layers))
    check_architecture(net)
    return net


STEM = ("con", "affine", "relu", "max_pool")
BLOCK = ("con", "affine", "relu", "con", "affine", "add_prev", "relu")
DOWN_BLOCK = ("con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu")
HEAD = ("avg_pool", "fc")


def split_blocks(layers: tuple[Layer, ...]) -> list[tuple[Layer, ...]]:
    """Stem, residual blocks and head; raises ``ValueError`` if the sequence is not dlib's
    face ResNet (whose residual wiring we rebuild, since tags are not written to the file)."""
    kinds = [layer.kind for layer in layers]
    if tuple(kinds[:4]) != STEM or tuple(kinds[-2:]) != HEAD:
        raise ValueError("the dlib network is not the face ResNet")
    groups: list[tuple[Layer, ...]] = [layers[:4]]
    i = 4
    while i < len(layers) - 2:
        for pattern in (BLOCK, DOWN_BLOCK):
            if tuple(kinds[i : i + len(pattern)]) == pattern:
                groups.append(layers[i : i + len(pattern)])
                i += len(pattern)
                break
        else:
            raise ValueError(f"unexpected layer sequence at layer {i} of the dlib network")
    groups.append(layers[-2:])
    return groups


def check_architecture(net: DlibResNet) -> None:
    split_blocks(net.layers)
    head_pool = net.layers[-2].pool
    if head_pool is None or head_pool.size != 0:
        raise ValueError("the dlib network does not end in a global average pool")
