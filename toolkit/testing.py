"""Test helpers for plugin authors: tiny real models, a conformance check for backends, and in-process plugins.

    from toolkit.testing import assert_backend_conforms, conformance_models, plugin_registered

    def test_my_backend_conforms(tmp_path):
        for model in conformance_models(tmp_path, formats=MyBackend.formats):
            assert_backend_conforms(MyBackend(), model)

The conformance check loads a model the way `toolkit bench` does and fails with a message that says what the
backend got wrong: specs that differ from the model file's, outputs of the wrong name, dtype or shape, resize()
that cannot be called twice, numbers that differ from the reference runtime's.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import formats, plugins
from .artifact import Artifact
from .benchmark import protocol
from .benchmark.measure import batch_of
from .interfaces import Backend, BackendOptions

# Tiny TFLite files made once with TensorFlow (tests/support/make_tiny_tflite.py) and shipped with the toolkit,
# so that a backend author needs no TensorFlow to test against .tflite files.
TFLITE_FIXTURES = ("tiny_fp32.tflite", "tiny_int8.tflite")


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


def tiny_onnx_two_inputs(path: str | Path, seed: int = 0) -> Path:
    """Two inputs with a dynamic batch 'N' and a dynamic length 'L': a [N, L] and b [N, L] -> sum [N, L] and
    scaled [N, L] (a * 2): several inputs, several outputs, two dynamic dimensions."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "two"], ["scaled"])],
        "tiny_two_inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "L"]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", "L"])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", "L"]),
         helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["N", "L"])],
        [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def tiny_tflite_model(folder: str | Path, name: str = "tiny_fp32.tflite") -> Path:
    """A copy of a shipped tiny .tflite in `folder`: tiny_fp32.tflite (inputs a and b [N, 4], two outputs) or
    tiny_int8.tflite (full int8, quantized input and output)."""
    if name not in TFLITE_FIXTURES:
        raise ValueError(f"no tiny TFLite model {name}; there are {', '.join(TFLITE_FIXTURES)}")
    target = Path(folder) / name
    with resources.as_file(resources.files("toolkit") / "testdata" / name) as src:
        shutil.copyfile(src, target)
    return target


def conformance_models(folder: str | Path, formats: Sequence[str] = ("onnx", "tflite")) -> list[Path]:
    """The tiny models of `formats` that assert_backend_conforms should pass on, written into `folder`."""
    folder = Path(folder)
    out: list[Path] = []
    if "onnx" in formats:
        out += [tiny_onnx_model(folder / "tiny.onnx"), tiny_onnx_two_inputs(folder / "tiny_two_inputs.onnx")]
    if "tflite" in formats:
        out += [tiny_tflite_model(folder, n) for n in TFLITE_FIXTURES]
    return out


def _inputs_for(specs: list[Any], batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    shapes = {}
    for s in specs:
        shapes[s.name] = tuple(batch if (d is None and j == 0) else length if d is None else d
                               for j, d in enumerate(s.shape))
    return protocol.make_inputs([s.to_dict() for s in specs], shapes, seed=seed)


def assert_backend_conforms(backend: Backend, model: str | Path, batches: Sequence[int] = (5, 2),
                            rtol: float = 1e-5, atol: float = 1e-6, reference: str | None = "default",
                            options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Load `model` with `backend` and run it as the benchmark does; raise AssertionError saying what is wrong.

    Checks: the session's input and output specs match the model file's (names, dtypes, ranks); resize() may be
    called before every run with different batch sizes (`batches`); run() returns exactly the declared outputs
    with the declared dtypes and shapes; bench_callable() runs; the numbers match the `reference` backend's
    ("default": the best built-in backend for the format; None: skip). Returns the last outputs.
    """
    artifact = Artifact.open(model)
    declared_in, declared_out = formats.read_specs(artifact.path, artifact.format)
    from .options import resolve_options

    session = backend.load(artifact, BackendOptions(extra=resolve_options(backend, dict(options or {}))))
    where = f"{backend.name} on {artifact.path.name}"
    for what, theirs, ours in (("input", session.input_specs, declared_in), ("output", session.output_specs,
                                                                            declared_out)):
        assert [s.name for s in theirs] == [s.name for s in ours], \
            f"{where}: {what} names {[s.name for s in theirs]}, the model file declares {[s.name for s in ours]}"
        for t, o in zip(theirs, ours):
            assert t.dtype == o.dtype, f"{where}: {what} '{t.name}' is {t.dtype}, the model file declares {o.dtype}"
            assert len(t.shape) == len(o.shape), \
                f"{where}: {what} '{t.name}' has rank {len(t.shape)}, the model file declares {len(o.shape)}"
    outputs: dict[str, np.ndarray] = {}
    for i, batch in enumerate(batches):
        fixed = [s.shape[0] for s in session.input_specs if s.shape and s.shape[0] is not None]
        n = fixed[0] if fixed else batch
        inputs = _inputs_for(session.input_specs, n, 3 + i, seed=i)
        session.resize({k: tuple(v.shape) for k, v in inputs.items()})
        outputs = session.run(inputs)
        batch, dim_name = batch_of(session, inputs)
        try:
            protocol.check_outputs(outputs, [s.to_dict() for s in session.output_specs], batch, dim_name)
        except protocol.ProtocolError as e:
            raise AssertionError(f"{where} (batch {n}): {e}") from None
        session.bench_callable(inputs)()  # must run on the preloaded inputs without raising
        if reference:
            _compare_with_reference(artifact, backend, inputs, outputs, reference, rtol, atol, where)
    return outputs


def _compare_with_reference(artifact: Artifact, backend: Backend, inputs: dict[str, np.ndarray],
                            outputs: dict[str, np.ndarray], reference: str, rtol: float, atol: float,
                            where: str) -> None:
    from .benchmark.runner import default_backend
    from .options import resolve_options

    name = default_backend(artifact) if reference == "default" else reference
    if name == backend.name:
        return
    ref_backend = plugins.registries().backends.get(name)
    if artifact.format not in ref_backend.formats:
        raise ValueError(f"reference backend {name} runs {', '.join(ref_backend.formats)} files, not "
                         f"{artifact.format}: pass reference='default' or None")
    ref_session = ref_backend.load(artifact, BackendOptions(extra=resolve_options(ref_backend, {})))
    ref_session.resize({k: tuple(v.shape) for k, v in inputs.items()})
    want = ref_session.run(inputs)
    for out_name, value in want.items():
        np.testing.assert_allclose(outputs[out_name], value, rtol=rtol, atol=atol,
                                   err_msg=f"{where}: output '{out_name}' differs from the {name} backend's")


@contextmanager
def plugin_registered(plugin: object, name: str = "test-plugin") -> Iterator[plugins.LoadedPlugins]:
    """Register `plugin` (a module or an object with hookimpls) in this process for the duration. A plugin that
    is already installed and loaded stays as it is (registered once, under its installed name)."""
    undo = plugins.register_for_tests(name, plugin)
    try:
        yield plugins.loaded()
    finally:
        undo()
