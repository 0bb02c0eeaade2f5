"""Built-in plugin: Keras/TensorFlow. Model zoo (cnn, mlp, lstm, transformer), datasets, training, Keras->TFLite (fp32 and post-training
quantization schemes), Keras->ONNX.

Registering imports no TensorFlow: the classes import it when they do their work.
"""

from toolkit.api import hookimpl

from .backend import KerasBackend
from .convert import KerasTFLiteQuantizer, KerasToONNX, KerasToTFLite, TFLiteToONNX
from .datasets import CO2, IMDB, BreastCancer, Cifar10, Digits, FashionMNIST, FineFoods, GermanCredit
from .models import CifarCNN, RecurrentModel, TabularMLP, TransformerEncoder


@hookimpl
def register_models(register):
    register(CifarCNN())
    register(TabularMLP())
    register(RecurrentModel())
    register(TransformerEncoder())


@hookimpl
def register_datasets(register):
    register(FashionMNIST())
    register(Digits())
    register(Cifar10())
    register(BreastCancer())
    register(GermanCredit())
    register(CO2())
    register(FineFoods())
    register(IMDB())


@hookimpl
def register_converters(register):
    register(KerasToTFLite())
    register(KerasToONNX())
    register(TFLiteToONNX())


@hookimpl
def register_quantizers(register):
    register(KerasTFLiteQuantizer())


@hookimpl
def register_backends(register):
    register(KerasBackend())
