"""Built-in plugin: Keras/TensorFlow. Model zoo (cnn, mlp), datasets, training, Keras->TFLite (fp32 and post-training
quantization schemes), Keras->ONNX.

Registering imports no TensorFlow: the classes import it when they do their work.
"""

from toolkit.api import hookimpl

from .backend import KerasBackend
from .convert import KerasTFLiteQuantizer, KerasToONNX, KerasToTFLite
from .datasets import BreastCancer, Cifar10, Digits, FashionMNIST
from .models import CifarCNN, TabularMLP


@hookimpl
def register_models(register):
    register(CifarCNN())
    register(TabularMLP())


@hookimpl
def register_datasets(register):
    register(FashionMNIST())
    register(Digits())
    register(Cifar10())
    register(BreastCancer())


@hookimpl
def register_converters(register):
    register(KerasToTFLite())
    register(KerasToONNX())


@hookimpl
def register_quantizers(register):
    register(KerasTFLiteQuantizer())


@hookimpl
def register_backends(register):
    register(KerasBackend())
