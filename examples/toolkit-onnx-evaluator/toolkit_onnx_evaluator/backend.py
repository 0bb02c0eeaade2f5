"""A backend over onnx.reference.ReferenceEvaluator: onnx's own pure-Python implementation of the operators.

Very slow, but it needs nothing beyond `onnx` and follows the ONNX specification to the letter. It imports only
`toolkit.api`, the toolkit's public API for plugins.
"""

from __future__ import annotations

import functools
import importlib.util
from importlib import metadata
from typing import Any, Callable

import numpy as np

from toolkit.api import (Artifact, Availability, Backend, BackendOptions, ModelFileError, PluginOption, Session,
                         UsageError, first_line, read_specs)


class OnnxEvaluatorSession(Session):
    def __init__(self, evaluator: Any, path: str):
        self.evaluator = evaluator
        # TensorSpecs (None for dynamic dimensions, e.g. a batch dimension named 'N'), read by the toolkit's
        # ONNX format plugin: every backend describes a model the same way.
        self.input_specs, self.output_specs = read_specs(path)

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
    options = (PluginOption("verbose", int, 0, "ReferenceEvaluator's verbosity (0-4), printed in the child's log"),)

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
        except Exception as e:  # DecodeError for a corrupt file
            raise ModelFileError(f"onnx cannot parse '{artifact.path.name}': {type(e).__name__}",
                                 "Check the file is a complete, valid .onnx model") from None
        try:
            evaluator = ReferenceEvaluator(model, verbose=options.extra.get("verbose", 0))
        except Exception as e:  # the file parsed: this is the evaluator's limit (a missing kernel), not the file's
            raise UsageError(f"onnx.reference cannot run '{artifact.path.name}': {first_line(e)[:200]}",
                             "Run it on another --backend (onnxruntime)") from e
        return OnnxEvaluatorSession(evaluator, path)
