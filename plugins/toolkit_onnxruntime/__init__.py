"""Built-in plugin: the ONNX Runtime backend (CPU, CUDA, TensorRT providers) and its static QDQ int8 quantizer."""

from toolkit.api import hookimpl

from .backend import OnnxRuntimeBackend
from .quantize import OrtStaticQuantizer


@hookimpl
def register_backends(register):
    register(OnnxRuntimeBackend())


@hookimpl
def register_quantizers(register):
    register(OrtStaticQuantizer())
