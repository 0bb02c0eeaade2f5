"""A backend over onnx.reference.ReferenceEvaluator: onnx's own pure-Python implementation of the operators.

Very slow, but it needs nothing beyond `onnx` and follows the ONNX specification to the letter.
"""

from __future__ import annotations

import functools
import importlib.util
from importlib import metadata
from typing import Any, Callable

import numpy as np

from toolkit.artifact import Artifact
from toolkit.errors import ModelFileError
from toolkit.interfaces import Availability, Backend, BackendOptions, Session
from toolkit.specs import specs_from_onnx


class OnnxEvaluatorSession(Session):
    def __init__(self, evaluator: Any, model: Any):
        self.evaluator = evaluator
        # TensorSpecs with None for dynamic dimensions (e.g. a batch dimension named 'N').
        self.input_specs, self.output_specs = specs_from_onnx(model)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.evaluator.run(None, inputs)  # None: every output, in graph order
        return dict(zip(self.evaluator.output_names, outputs))

    def bench_callable(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        # The benchmark times only this: the runtime's own call, without run()'s dict building around it.
        return functools.partial(self.evaluator.run, None, inputs)

    def describe(self) -> dict[str, Any]:
        return {"runtime": "onnx.reference"}


class OnnxEvaluatorBackend(Backend):
    name = "onnx-evaluator"
    formats = ("onnx",)
    extra = None  # no edge-toolkit extra installs it: the plugin's own dependencies do
    priority = -20  # below 0: never picked when the user names no --backend
    in_sweeps = False  # far too slow for the quickstart and --all-backends: run it with --backend
    description = "ONNX models on onnx.reference.ReferenceEvaluator (pure Python, slow, exact)"

    def available(self) -> Availability:
        if importlib.util.find_spec("onnx") is None:
            return Availability(False, "onnx is not installed: pip install onnx")
        return Availability(True)

    def versions(self) -> dict[str, str]:
        return {"onnx": metadata.version("onnx")}

    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        import onnx  # imported here, not at module level: `toolkit plugins` must not pay for it
        from onnx.reference import ReferenceEvaluator

        path = str(artifact.path)
        try:
            model = onnx.load(path)
            evaluator = ReferenceEvaluator(model)
        except Exception as e:  # DecodeError for a corrupt file, ValueError/KeyError for a bad graph
            raise ModelFileError(f"onnx cannot load '{path}': {type(e).__name__}",
                                 "Check the file is a complete, valid .onnx model") from None
        return OnnxEvaluatorSession(evaluator, model)
