"""toolkit.testing, the helpers plugin authors test with, on real backends."""

from __future__ import annotations

import pytest

from toolkit import plugins
from toolkit.hookspecs import hookimpl
from toolkit.testing import assert_backend_conforms, plugin_registered, tiny_onnx_model
from toolkit_reference.backend import ReferenceBackend


def test_the_reference_backend_conforms_on_the_tiny_model(tmp_path):
    outputs = assert_backend_conforms(ReferenceBackend(), tiny_onnx_model(tmp_path / "tiny.onnx"))
    assert outputs["y"].shape == (5, 3) and (outputs["y"] >= 0).all() and (outputs["y"] > 0).any()


def test_a_backend_with_wrong_answers_does_not_conform(tmp_path):
    class OffByOne(ReferenceBackend):
        name = "off-by-one"

        def load(self, artifact, options):
            session = super().load(artifact, options)
            run = session.run
            session.run = lambda inputs: {k: v + 1 for k, v in run(inputs).items()}
            return session

    with pytest.raises(AssertionError, match="off-by-one differs from onnxruntime on output 'y'"):
        assert_backend_conforms(OffByOne(), tiny_onnx_model(tmp_path / "tiny.onnx"))


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
