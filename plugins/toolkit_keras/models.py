"""The model zoo. The CNN is the classic Keras CIFAR-10 tutorial network, exactly as written for 32x32x3; the MLP
scores tabular records, with its feature scaling inside the graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from toolkit.api import Model, TrainingResult, UsageError

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


class CifarCNN(KerasModel):
    name = "cnn"
    task = "classification"
    default_dataset = "fashion-mnist"
    fallback_datasets = ("digits",)
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
    default_dataset = "breast-cancer"
    description = ("Normalization (fitted to the training split, inside the graph: a device feeds raw features), "
                   "Dense 64 relu, Dropout 0.2, Dense 32 relu, Dense N logits")

    def build(self, input_shape: Sequence[int], num_outputs: int, **hparams: Any) -> Any:
        import keras
        from keras import layers

        if len(input_shape) != 1:
            raise UsageError(f"the MLP takes rows of features, shape (features,), not {tuple(input_shape)}",
                             "Pick a tabular dataset, e.g. breast-cancer")
        return keras.Sequential(
            [
                keras.Input(shape=tuple(input_shape), name="features"),
                layers.Normalization(axis=-1, name="scaling"),  # adapted to the training split before fitting
                layers.Dense(64, activation="relu"),
                layers.Dropout(0.2),
                layers.Dense(32, activation="relu"),
                layers.Dense(num_outputs),
            ],
            name="mlp",
        )
