"""Training a model family on a dataset: a .keras file, its manifest and its metrics, with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from toolkit.api import TensorSpec, TrainingResult, library_versions

KERAS_LIBS = ("edge-toolkit", "tensorflow-cpu", "tensorflow", "keras", "numpy")


def _progress_callback(on_batch: Callable[[int, int, dict], None]) -> Any:
    import keras

    class Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            on_batch(self.epoch, batch, logs or {})

    return Progress()


def train(family: Any, dataset: Any, epochs: int, output: Path, *, batch_size: int = 64,
          limit: int | None = None, seed: int = 0, learning_rate: float = 1e-3,
          on_start: Callable[[int], None] | None = None,
          on_batch: Callable[[int, int, dict], None] | None = None) -> TrainingResult:
    """Train `family` on `dataset` and save it to `output` (a .keras working path)."""
    dataset.require_available()
    x, y = dataset.load("train")
    xt, yt = dataset.load("test")
    if limit:
        x, y = x[:limit], y[:limit]

    import keras

    keras.utils.set_random_seed(seed)
    model = family.build(x.shape[1:], dataset.num_classes)
    for layer in model.layers:  # preprocessing inside the graph learns its statistics from the training split
        if isinstance(layer, keras.layers.Normalization):
            layer.adapt(x)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    steps = -(-len(x) // batch_size)
    if on_start:
        on_start(steps * epochs)
    callbacks = [_progress_callback(on_batch)] if on_batch else []
    t0 = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks, shuffle=True)
    train_s = time.perf_counter() - t0
    test_loss, test_acc = model.evaluate(xt, yt, batch_size=256, verbose=0)

    model.save(output)

    metrics = {
        "dataset": dataset.name,
        "train_samples": int(len(x)),
        "test_samples": int(len(xt)),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "train_seconds": round(train_s, 2),
        "history": {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()},
        "test_loss": round(float(test_loss), 5),
        "accuracy": round(float(test_acc), 5),
        # What always answering the most common training class scores on the test split: the bar to beat.
        "baseline_accuracy": round(float((yt == np.bincount(y).argmax()).mean()), 5),
    }
    return TrainingResult(
        inputs=[TensorSpec(model.inputs[0].name, (None, *x.shape[1:]), "float32")],
        outputs=[TensorSpec("logits", (None, dataset.num_classes), "float32")],
        metrics=metrics,
        versions=library_versions(*KERAS_LIBS),
    )
