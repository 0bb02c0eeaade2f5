"""Built-in plugin: the TFLite runtime backend (ai-edge-litert, with tflite-runtime as a fallback)."""

from toolkit.api import hookimpl

from .backend import TFLiteBackend


@hookimpl
def register_backends(register):
    register(TFLiteBackend())
