"""Built-in plugin: the ONNX Runtime backend (CPU, CUDA, TensorRT providers) and its quantizers (static QDQ or
QOperator int8, calibrated; dynamic)."""

from toolkit.api import hookimpl

from .backend import OnnxRuntimeBackend
from .quantize import OrtDynamicQuantizer, OrtStaticQuantizer


@hookimpl
def register_backends(register):
    register(OnnxRuntimeBackend())


@hookimpl
def register_quantizers(register):
    register(OrtStaticQuantizer())
    register(OrtDynamicQuantizer())
