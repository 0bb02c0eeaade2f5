"""A backend that runs .keras files with Keras itself: the source every converted artifact is checked against."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from toolkit.artifact import Artifact, library_versions
from toolkit.interfaces import Availability, Backend, BackendOptions, Session
from toolkit.specs import TensorSpec

from .train import KERAS_LIBS


class KerasSession(Session):
    def __init__(self, model: Any):
        self.model = model
        shape = tuple(model.inputs[0].shape)
        self.input_specs = [TensorSpec(model.inputs[0].name, shape, "float32")]
        self.output_specs = [TensorSpec("logits", tuple(model.outputs[0].shape), "float32")]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs[self.input_specs[0].name]
        return {"logits": np.asarray(self.model(x, training=False))}

    def describe(self) -> dict[str, Any]:
        return {"runtime": "keras"}


class KerasBackend(Backend):
    name = "keras"
    formats = ("keras",)
    extra = "keras"
    priority = 0
    description = "Keras models run by Keras on TensorFlow (the reference for parity checks)"

    def available(self) -> Availability:
        if importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow") is None:
            return Availability(False, "keras and tensorflow are not installed", self.extra)
        return Availability(True)

    def versions(self) -> dict[str, str]:
        return library_versions(*KERAS_LIBS)

    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        if options.threads:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(options.threads)
        from .convert import load_keras

        return KerasSession(load_keras(artifact.path))
