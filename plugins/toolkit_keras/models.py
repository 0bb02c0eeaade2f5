"""The model zoo: the four basic families. The CNN is the classic Keras CIFAR-10 tutorial network, exactly as written
for 32x32x3; the MLP scores tabular records; the LSTM forecasts a series or classifies token ids; the Transformer is
a small encoder classifier over token ids. Preprocessing (scaling, one-hot of categories, differencing) is inside
each graph, so a deployed artifact takes what a device has: raw numbers, category codes, token ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from toolkit.api import Model, PluginOption, TrainingResult, UsageError

# Below this side the three valid 3x3 convolutions and two 2x2 pools leave nothing (17 -> 15 -> 7 -> 5 -> 2 -> 0).
MIN_SIDE_FOR_VALID_PADDING = 18


class KerasModel(Model):
    """A family built with Keras and trained by this plugin's training loop."""

    framework = "keras"
    format = "keras"

    def train(self, dataset: str, epochs: int, output: Path, **options: Any) -> TrainingResult:
        from toolkit.api import registries

        from .train import train

        return train(self, registries().datasets.get(dataset), epochs, output, **options)


# The quantize defaults below are measured by benchmarks/families.py (docs/support-matrix.md): the fastest
# quantized file at equal accuracy per family and runtime, on an AMD EPYC with AVX-512 VNNI, batch 1, 1 thread.
SEE = "docs/support-matrix.md"


class CifarCNN(KerasModel):
    name = "cnn"
    task = "classification"
    default_dataset = "fashion-mnist"
    fallback_datasets = ("digits",)
    recommended_quantization = {
        "tflite": ("int8", {}, f"measured 0.45x fp32's latency at 0.28x its size, top-1 within 0.1 point ({SEE})"),
        "onnx": ("int8", {}, f"static QDQ (uint8 activations, int8 per-channel weights) measured 0.80x fp32's "
                             f"latency at 0.31x its size; int8 activations measured 1.14x, dynamic 1.7-5.6x ({SEE})"),
    }
    description = ("Conv2D 32/64/64 3x3 relu, two 2x2 max-pools, Flatten, Dense 64 relu, Dense N logits "
                   "(the Keras CIFAR-10 CNN)")

    def build(self, input_shape: Sequence[int], num_outputs: int, **hparams: Any) -> Any:
        import keras
        from keras import layers

        if len(input_shape) != 3:
            raise UsageError(f"the CNN takes images of shape (height, width, channels), not {tuple(input_shape)}",
                             "Pick an image dataset")
        side = min(input_shape[0], input_shape[1])
        if side < 4:
            raise UsageError(f"images of {input_shape[0]}x{input_shape[1]} are too small for the CNN",
                             "Use images of at least 4x4")
        # Exactly the tutorial network where it fits; smaller images keep their size through the convolutions.
        padding = "valid" if side >= MIN_SIDE_FOR_VALID_PADDING else "same"
        return keras.Sequential(
            [
                keras.Input(shape=tuple(input_shape), name="image"),
                layers.Conv2D(32, (3, 3), activation="relu", padding=padding),
                layers.MaxPooling2D((2, 2)),
                layers.Conv2D(64, (3, 3), activation="relu", padding=padding),
                layers.MaxPooling2D((2, 2)),
                layers.Conv2D(64, (3, 3), activation="relu", padding=padding),
                layers.Flatten(),
                layers.Dense(64, activation="relu"),
                layers.Dense(num_outputs),
            ],
            name="cnn",
        )


class TabularMLP(KerasModel):
    name = "mlp"
    task = "classification"
    default_dataset = "german-credit"
    fallback_datasets = ("breast-cancer",)
    recommended_quantization = {
        "tflite": ("int8", {}, f"as fast as fp32 (1.00x) at 0.60x its size, top-1 within 0.5 point ({SEE})"),
        "onnx": ("int8", {}, f"every quantized MLP measured slower than fp32 on ONNX Runtime (static QDQ 1.24x): it "
                             f"buys size (0.88x), not speed; keep the fp32 file where speed matters ({SEE})"),
    }
    description = ("one-hot of categorical columns and feature scaling (fitted to the training split) inside the "
                   "graph, so a device feeds raw values and category codes; Dense 64 relu, Dropout 0.2, Dense 32 "
                   "relu, Dense N logits")

    def build(self, input_shape: Sequence[int], num_outputs: int, **hparams: Any) -> Any:
        import keras
        from keras import layers

        from .layers import CategoryOneHot

        if len(input_shape) != 1:
            raise UsageError(f"the MLP takes rows of features, shape (features,), not {tuple(input_shape)}",
                             "Pick a tabular dataset, e.g. german-credit")
        if hparams.get("vocabulary_size"):
            raise UsageError("the MLP takes numeric features, and this dataset gives token ids (text)",
                             "Train the lstm or transformer family on text")
        preprocessing = [CategoryOneHot(hparams["categorical"], name="one_hot")] if hparams.get("categorical") else []
        return keras.Sequential(
            [
                keras.Input(shape=tuple(input_shape), name="features"),
                *preprocessing,
                layers.Normalization(axis=-1, name="scaling"),  # adapted to the training split before fitting
                layers.Dense(64, activation="relu"),
                layers.Dropout(0.2),
                layers.Dense(32, activation="relu"),
                layers.Dense(num_outputs),
            ],
            name="mlp",
        )


RNN_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}


def _in_range(name: str, value: Any, low: int, high: int) -> int:
    """A size option checked before Keras sees it (0 units or a million would fail deep inside TensorFlow)."""
    if not low <= int(value) <= high:
        raise UsageError(f"-o {name}={value} is out of range", f"Give {name} from {low} to {high}")
    return int(value)


def _recurrent(cell: str, units: int, **kwargs: Any) -> Any:
    from keras import layers

    return getattr(layers, RNN_CELLS[cell])(units, **kwargs)


class RecurrentModel(KerasModel):
    name = "lstm"
    task = "regression"
    default_dataset = "co2"
    recommended_quantization = {
        "tflite": ("dynamic", {}, f"measured 0.93x fp32's latency at 0.88x its size on the CO2 forecast (full int8 "
                                  f"1.10x and larger, unrolled); on text int8 and dynamic tie at 0.87x ({SEE})"),
        "onnx": ("int8", {}, f"every quantized LSTM measured slower than fp32 on ONNX Runtime (static QDQ 1.07x): "
                             f"keep the fp32 file where speed matters ({SEE})"),
    }
    description = ("a recurrent network (-o cell=lstm|gru|rnn). On a series (steps, features): month-to-month "
                   "differences, scaled, then the cell, and the forecast is the last value plus the predicted change "
                   "(all inside the graph). On token ids: Embedding 32, the cell, Dense N logits")
    options = (PluginOption("cell", str, "lstm", "the recurrent cell", choices=tuple(RNN_CELLS)),
               PluginOption("units", int, 32, "units of the recurrent layer"))

    def build(self, input_shape: Sequence[int], num_outputs: int, **hparams: Any) -> Any:
        import keras
        from keras import layers

        cell, units = hparams.get("cell", "lstm"), _in_range("units", hparams.get("units", 32), 1, 1024)
        if len(input_shape) == 1:  # token ids
            if not hparams.get("vocabulary_size"):
                raise UsageError("the LSTM's text form needs a tokenised text dataset", "Pick e.g. fine-foods")
            return keras.Sequential([
                keras.Input(shape=tuple(input_shape), name="tokens", dtype="int32"),
                layers.Embedding(int(hparams["vocabulary_size"]), 32),
                _recurrent(cell, units),
                layers.Dense(num_outputs),
            ], name=f"{cell}_text")
        if len(input_shape) != 2 or input_shape[0] is None or input_shape[0] < 3:
            raise UsageError(f"the LSTM takes a series of shape (steps, features) with 3 or more steps, or token "
                             f"ids of shape (length,), not {tuple(input_shape)}", "Pick co2 or fine-foods")
        steps = int(input_shape[0])
        series = keras.Input(shape=tuple(input_shape), name="series")
        # Changes from one step to the next: a series that keeps rising (CO2) stays in the range it was trained on.
        later = layers.Cropping1D((1, 0))(series)
        earlier = layers.Cropping1D((0, 1))(series)
        change = layers.Subtract(name="change")([later, earlier])
        scaled = layers.Normalization(axis=-1, name="scaling")(change)  # adapted to the training split
        hidden = _recurrent(cell, units)(scaled)
        predicted = layers.Dense(num_outputs, name="predicted_change")(hidden)
        last = layers.Flatten()(layers.Cropping1D((steps - 1, 0))(series))
        if num_outputs != int(input_shape[1]):
            raise UsageError(f"the forecast predicts each of the {input_shape[1]} features; the dataset asks "
                             f"for {num_outputs} outputs", "Pick a dataset whose target is the next step")
        forecast = layers.Add(name="forecast")([last, predicted])
        return keras.Model(series, forecast, name=f"{cell}_forecast")


class TransformerEncoder(KerasModel):
    name = "transformer"
    task = "classification"
    default_dataset = "fine-foods"
    recommended_quantization = {
        "tflite": ("fp16", {}, f"fp32's speed at 0.51x its size; full int8 measured 6.4x slower (its int8 "
                               f"attention operators leave XNNPACK for reference kernels) and dynamic 1.21x ({SEE})"),
        "onnx": ("dynamic", {}, f"1.09x fp32's latency at 0.30x its size; static int8 measured 1.55x ({SEE})"),
    }
    description = ("token and position embeddings, encoder blocks (multi-head self-attention, feed-forward, "
                   "residuals, layer normalisation), average pooling, Dense N logits; over token ids")
    options = (PluginOption("blocks", int, 1, "encoder blocks"),
               PluginOption("heads", int, 2, "attention heads"),
               PluginOption("width", int, 32, "embedding width"))

    def build(self, input_shape: Sequence[int], num_outputs: int, **hparams: Any) -> Any:
        import keras
        from keras import layers

        from .layers import TokenAndPositionEmbedding

        if len(input_shape) != 1 or not hparams.get("vocabulary_size"):
            raise UsageError(f"the transformer takes token ids of shape (length,), not {tuple(input_shape)}",
                             "Pick a tokenised text dataset, e.g. fine-foods")
        width = _in_range("width", hparams.get("width", 32), 2, 1024)
        heads = _in_range("heads", hparams.get("heads", 2), 1, 64)
        blocks = _in_range("blocks", hparams.get("blocks", 1), 1, 24)
        if width % heads:
            raise UsageError(f"width {width} is not a multiple of heads {heads}", "Pick e.g. -o width=32 -o heads=2")
        tokens = keras.Input(shape=tuple(input_shape), name="tokens", dtype="int32")
        x = TokenAndPositionEmbedding(int(hparams["vocabulary_size"]), int(input_shape[0]), width,
                                      name="embedding")(tokens)
        for i in range(blocks):
            attended = layers.MultiHeadAttention(heads, width // heads, name=f"attention_{i}")(x, x)
            x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, layers.Dropout(0.1)(attended)]))
            ff = layers.Dense(width * 2, activation="relu")(x)
            x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, layers.Dropout(0.1)(layers.Dense(width)(ff))]))
        x = layers.GlobalAveragePooling1D()(x)
        x = layers.Dropout(0.1)(x)
        return keras.Model(tokens, layers.Dense(num_outputs, name="logits")(x), name="transformer")
