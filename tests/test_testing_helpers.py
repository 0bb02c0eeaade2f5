"""toolkit.testing, the helpers plugin authors test with, on real backends."""

from __future__ import annotations

import pytest

from toolkit import plugins
from toolkit.api import TensorSpec, hookimpl
from toolkit.testing import assert_backend_conforms, conformance_models, plugin_registered, tiny_onnx_model
from toolkit_reference.backend import ReferenceBackend


def test_the_reference_backend_conforms_on_the_tiny_model(tmp_path):
    outputs = assert_backend_conforms(ReferenceBackend(), tiny_onnx_model(tmp_path / "tiny.onnx"))
    assert outputs["y"].shape == (2, 3) and (outputs["y"] >= 0).all()  # the last of batches 5 and 2


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite", "reference"])
def test_the_builtin_backends_conform_on_every_tiny_model_they_can_run(backend, tmp_path):
    be = plugins.registries().backends.get(backend)
    models = conformance_models(tmp_path, formats=be.formats)
    assert len(models) >= 2
    for model in models:
        assert_backend_conforms(be, model)


class _Twisted(ReferenceBackend):
    """The reference backend with one deliberate mistake, to show what the conformance check catches."""

    twist = ""

    def load(self, artifact, options):
        session = super().load(artifact, options)
        run = session.run
        twists = {"shape": lambda v: v[:, :-1], "dtype": lambda v: v.astype("float64"), "value": lambda v: v + 1}
        session.run = lambda inputs: {k: twists[self.twist](v) for k, v in run(inputs).items()}
        return session


@pytest.mark.parametrize("twist,message", [
    ("shape", "output 'y' has shape [5, 2], the model declares [?, 3]"),
    ("dtype", "output 'y' has dtype float64, the model declares float32"),
    ("value", "output 'y' differs from the onnxruntime backend's"),
])
def test_the_conformance_check_catches_a_wrong_shape_dtype_or_value(twist, message, tmp_path):
    backend = type("Twisted", (_Twisted,), {"name": f"twisted-{twist}", "twist": twist})()
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("?", r"\?")):
        assert_backend_conforms(backend, tiny_onnx_model(tmp_path / "tiny.onnx"))


def test_specs_that_differ_from_the_model_file_do_not_conform(tmp_path):
    class Renaming(ReferenceBackend):
        name = "renaming"

        def load(self, artifact, options):
            session = super().load(artifact, options)
            session.output_specs = [TensorSpec("logits", s.shape, s.dtype) for s in session.output_specs]
            return session

    with pytest.raises(AssertionError, match=r"output names \['logits'\], the model file declares \['y'\]"):
        assert_backend_conforms(Renaming(), tiny_onnx_model(tmp_path / "tiny.onnx"))


def test_plugin_registered_adds_and_removes_an_in_process_plugin():
    class Plugin:
        @hookimpl
        def register_backends(self, register):
            class Renamed(ReferenceBackend):
                name = "my-npu"

            register(Renamed())

    with plugin_registered(Plugin(), "my-plugin") as loaded:
        assert "my-npu" in loaded.registries.backends
        assert {r.name: r.status for r in loaded.records}["my-plugin"] == "ok"
    assert "my-npu" not in plugins.registries().backends
