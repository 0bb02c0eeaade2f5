"""The reference backend held to the other backends on a real model file and real held-out data: the bounds of
issue 10, in one place for every test that makes a family's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit import plugins
from toolkit.artifact import Artifact
from toolkit.benchmark.measure import fitting_inputs, load_session

NATIVE = {"onnx": ("onnxruntime", {}), "tflite": ("tflite", {"reference_kernels": "true"})}


def assert_reference_agrees(path: Path, dataset: str, samples: int = 64) -> dict[str, float]:
    """Run `path` on the reference backend and on its runtime (ONNX Runtime; LiteRT's reference kernels) over the
    first `samples` of `dataset`'s test split. Float outputs: within 1e-5 relative (rtol 1e-5, atol 1e-5 x the
    output's largest magnitude). Quantized outputs: at least 99.9 % equal, never more than one step apart.
    Returns the measured max abs difference and share of equal elements per output."""
    artifact = Artifact.open(path)
    backend, options = NATIVE[artifact.format]
    _, ours = load_session(artifact, "reference", 1, None, {})
    _, theirs = load_session(artifact, backend, 1, None, options)
    x, _ = plugins.registries().datasets.get(dataset).load("test")
    x = {k: v[:samples] for k, v in x.items()} if isinstance(x, dict) else x[:samples]
    fed = {s.name: s.quantize(v) for s, v in zip(ours.input_specs, fitting_inputs(ours, dataset, x).values())}
    measured = {}
    for session in (ours, theirs):
        session.resize({name: value.shape for name, value in fed.items()})
    mine, want = ours.run(fed), theirs.run(fed)
    for spec in ours.output_specs:
        a, b = mine[spec.name], want[spec.name]
        assert a.shape == b.shape and a.dtype == b.dtype, (spec.name, a.shape, b.shape, a.dtype, b.dtype)
        step = _qdq_step(path, spec.name) if artifact.format == "onnx" else None
        if a.dtype.kind == "f" and step is not None:  # a QDQ graph's output: its integer grid, in real numbers
            steps = np.rint(np.abs(a - b) / step)
            assert steps.max() <= 1 and (steps == 0).mean() >= 0.999, (path.name, spec.name, float(steps.max()))
            measured[spec.name] = float((steps == 0).mean())
        elif a.dtype.kind == "f":
            scale = float(np.abs(b).max())
            assert np.allclose(a, b, rtol=1e-5, atol=1e-5 * scale), (path.name, spec.name, float(np.abs(a - b).max()))
            measured[spec.name] = float(np.abs(a - b).max())
        else:
            steps = np.abs(a.astype(np.int64) - b.astype(np.int64))
            assert steps.max() <= 1 and (steps == 0).mean() >= 0.999, (path.name, spec.name, int(steps.max()))
            measured[spec.name] = float((steps == 0).mean())
    return measured


def _qdq_step(path: Path, output: str) -> float | None:
    """The scale of the DequantizeLinear that writes `output`, or None when a float operator writes it."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    node = next((n for n in graph.node if output in n.output), None)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    scale = next((t for t in graph.initializer if t.name == node.input[1]), None)
    return None if scale is None else float(numpy_helper.to_array(scale).reshape(-1)[0])
