"""A backend that runs .keras files with Keras itself: the source every converted artifact is checked against."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from toolkit.api import Artifact, Availability, Backend, BackendOptions, Session, TensorSpec, library_versions

from .convert import dtype_name
from .train import KERAS_LIBS


class KerasSession(Session):
    def __init__(self, model: Any, artifact: Artifact):
        self.model = model
        self.input_specs = [TensorSpec(t.name, tuple(t.shape), dtype_name(t)) for t in model.inputs]
        # Keras names outputs after layers; the manifest's names (e.g. logits) are the ones users see.
        declared = artifact.manifest.outputs if artifact.manifest else []
        names = [s.name for s in declared] if len(declared) == len(model.outputs) else \
            [t.name for t in model.outputs]
        self.output_specs = [TensorSpec(n, tuple(t.shape), "float32") for n, t in zip(names, model.outputs)]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [inputs[s.name] for s in self.input_specs]
        result = self.model(args[0] if len(args) == 1 else args, training=False)
        results = result if isinstance(result, (list, tuple)) else [result]
        return {s.name: np.asarray(r, dtype=np.float32) for s, r in zip(self.output_specs, results)}

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

        return KerasSession(load_keras(artifact.path), artifact)
