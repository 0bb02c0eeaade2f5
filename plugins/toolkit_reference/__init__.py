"""Built-in plugin: a CPU reference backend in numpy that runs fp32 ONNX graphs (the CNN's operator set)."""

from toolkit.api import hookimpl

from .backend import ReferenceBackend


@hookimpl
def register_backends(register):
    register(ReferenceBackend())
