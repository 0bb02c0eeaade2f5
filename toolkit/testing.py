"""Helpers for plugin authors' tests: a tiny real model, in-process registration, and a conformance check
that runs a backend the way `toolkit bench` does and compares its answers with ONNX Runtime's."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import plugins
from .artifact import Artifact
from .interfaces import Backend, BackendOptions


def tiny_onnx_model(path: str | Path, features: int = 4, outputs: int = 3, seed: int = 0) -> Path:
    """Relu(x @ W + b) with a dynamic batch dimension 'N': input 'x' [N, features], output 'y' [N, outputs]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((features, outputs)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", outputs])],
        [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


@contextmanager
def plugin_registered(plugin: object, name: str = "test-plugin") -> Iterator[plugins.LoadedPlugins]:
    """Register `plugin` (a module or an object with hookimpls) in this process for the duration."""
    undo = plugins.register_for_tests(name, plugin)
    try:
        yield plugins.loaded()
    finally:
        undo()


def assert_backend_conforms(backend: Backend, model: str | Path, batch: int = 5, rtol: float = 1e-5,
                            atol: float = 1e-6, reference: str = "onnxruntime") -> dict[str, Any]:
    """Load `model` with `backend`, run it as the benchmark does, and compare with the `reference` backend.

    Checks: specs describe the inputs; run() and bench_callable() agree; outputs match the reference.
    Returns the outputs. Raises AssertionError with what differs.
    """
    artifact = Artifact.open(model)
    session = backend.load(artifact, BackendOptions())
    assert session.input_specs, f"{backend.name}: the session declares no inputs"
    rng = np.random.default_rng(0)
    inputs = {}
    for spec in session.input_specs:
        shape = tuple(batch if d is None else d for d in spec.shape)
        inputs[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    session.resize({k: v.shape for k, v in inputs.items()})
    outputs = session.run(inputs)
    assert set(outputs) == {s.name for s in session.output_specs}, \
        f"{backend.name}: run() returned {sorted(outputs)}, the specs name {[s.name for s in session.output_specs]}"
    session.bench_callable(inputs)()  # must run on the preloaded inputs without raising
    ref_backend = plugins.registries().backends.get(reference)
    ref = ref_backend.load(artifact, BackendOptions()).run(inputs)
    for name, want in ref.items():
        np.testing.assert_allclose(outputs[name], want, rtol=rtol, atol=atol,
                                   err_msg=f"{backend.name} differs from {reference} on output '{name}'")
    return outputs
