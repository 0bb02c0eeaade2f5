"""Built-in plugin: the model file formats the toolkit knows out of the box (.keras, .tflite, .onnx).

Formats are their own plugin, apart from any runtime: a backend, converter or quantizer of another plugin can
read a .tflite's scales or an .onnx's inputs whether or not LiteRT or ONNX Runtime is installed or allowed.
"""

from toolkit.api import hookimpl

from .keras_format import KerasFormat
from .onnx_format import OnnxFormat
from .tflite_format import TFLiteFormat


@hookimpl
def register_formats(register):
    register(KerasFormat())
    register(TFLiteFormat())
    register(OnnxFormat())
