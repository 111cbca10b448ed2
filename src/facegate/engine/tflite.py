"""Load a ``.tflite`` file on ai-edge-litert (no TensorFlow) with an explicit thread count."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from ai_edge_litert.interpreter import Interpreter

log = logging.getLogger(__name__)


class TFLiteModel:
    """One interpreter, one input; ``run`` returns the outputs in the model's declared order."""

    def __init__(
        self,
        path: Path | None,
        num_threads: int = 1,
        batch: int | None = None,
        *,
        content: bytes | None = None,
    ) -> None:
        """From a file, or from ``content`` (a model rewritten in memory) when it is given."""
        if content is not None:
            self.interpreter = Interpreter(model_content=content, num_threads=num_threads)
        else:
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        if batch is not None:  # only for models whose graph allows it (the iris model does)
            first = self.interpreter.get_input_details()[0]
            self.interpreter.resize_tensor_input(first["index"], [batch, *first["shape"][1:]])
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._outputs = [d["index"] for d in self.interpreter.get_output_details()]
        self.input_shape = tuple(int(v) for v in self._input["shape"])

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self._input["index"], tensor.astype(np.float32, copy=False))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i).copy() for i in self._outputs]
