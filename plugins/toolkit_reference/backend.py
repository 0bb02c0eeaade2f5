"""The reference backend: runs an ONNX graph node by node with the numpy operators in ops.py.

Slow but obvious: a second opinion on what a model computes, on any machine with numpy and onnx.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from toolkit.artifact import Artifact, library_versions
from toolkit.errors import ModelFileError
from toolkit.interfaces import Availability, Backend, BackendOptions, Session
from toolkit.specs import specs_from_onnx

from .ops import OPS


def _load_graph(path: str) -> Any:
    import onnx

    try:
        return onnx.load(path)
    except Exception as e:  # DecodeError and friends
        raise ModelFileError(f"onnx cannot parse '{path}': {type(e).__name__}", "Check the file is a valid .onnx") from None


class ReferenceSession(Session):
    def __init__(self, model: Any):
        import onnx
        from onnx import numpy_helper

        graph = model.graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.nodes = [(n.op_type, list(n.input), list(n.output),
                       {a.name: _attr(onnx.helper.get_attribute_value(a)) for a in n.attribute})
                      for n in graph.node]

        self.input_specs, self.output_specs = specs_from_onnx(model)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values: dict[str, Any] = dict(self.constants)
        values.update(inputs)
        values[""] = None  # an omitted optional input
        for op_type, ins, outs, attrs in self.nodes:
            results = OPS[op_type]([values[i] for i in ins], attrs)
            values.update(zip(outs, results))
        return {s.name: values[s.name] for s in self.output_specs}

    def describe(self) -> dict[str, Any]:
        return {"runtime": "numpy", "numpy": np.__version__}


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "dims") and hasattr(value, "data_type"):  # a TensorProto (Constant's value)
        from onnx import numpy_helper

        return numpy_helper.to_array(value)
    return value


def _unsupported(model: Any) -> str | None:
    """Why the numpy kernels cannot run `model`, or None."""
    missing = sorted({n.op_type for n in model.graph.node if n.op_type not in OPS or n.domain not in ("", "ai.onnx")})
    return f"the reference backend has no kernels for {', '.join(missing)}" if missing else None


class ReferenceBackend(Backend):
    name = "reference"
    formats = ("onnx",)
    extra = "reference"
    priority = -10  # never the default: it is the slow second opinion
    description = "ONNX graphs run node by node in numpy (the CNN's operator set)"

    def available(self) -> Availability:
        if importlib.util.find_spec("onnx") is None:
            return Availability(False, "onnx is not installed", self.extra)
        return Availability(True)

    def versions(self) -> dict[str, str]:
        return library_versions("onnx", "numpy")

    def supports(self, artifact: Artifact) -> str | None:
        why = super().supports(artifact)
        if why:
            return why
        return _unsupported(_load_graph(str(artifact.path)))

    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        model = _load_graph(str(artifact.path))
        why = super().supports(artifact) or _unsupported(model)
        if why:
            raise ModelFileError(f"{why} (in '{artifact.path.name}')", "Use the onnxruntime backend for this model")
        return ReferenceSession(model)
