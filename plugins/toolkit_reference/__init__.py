"""Built-in plugin: a CPU reference backend in numpy that runs fp32 ONNX graphs (CNN, element-wise, normalisation, pad, reduce and transformer operators)."""

from toolkit.api import hookimpl

from .backend import ReferenceBackend


@hookimpl
def register_backends(register):
    register(ReferenceBackend())
