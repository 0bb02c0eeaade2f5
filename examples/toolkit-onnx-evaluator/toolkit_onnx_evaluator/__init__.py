"""An example third-party plugin for edge toolkit: the `onnx-evaluator` backend.

A plugin is a module with hook implementations; each hook gets `register` and calls it once per item.
"""

from toolkit.api import hookimpl

from .backend import OnnxEvaluatorBackend


@hookimpl
def register_backends(register):
    register(OnnxEvaluatorBackend())
