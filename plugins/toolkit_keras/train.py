"""Training a model family on a dataset: a .keras file, its manifest and its metrics, with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from toolkit.api import TensorSpec, TrainingResult, UsageError, WordTokenizer, library_versions

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
          limit: int | None = None, seed: int = 0, learning_rate: float = 1e-3, validation_split: float = 0.0,
          early_stopping: int | None = None, model_options: dict[str, Any] | None = None,
          on_start: Callable[[int], None] | None = None,
          on_batch: Callable[[int, int, dict], None] | None = None) -> TrainingResult:
    """Train `family` on `dataset` and save it to `output` (a .keras working path).

    `early_stopping` is a patience in epochs on the validation loss (a validation split of 0.1 is taken when none
    is given); the best epoch's weights are kept."""
    dataset.require_available()
    x, y = dataset.load("train")
    xt, yt = dataset.load("test")
    if not isinstance(x, np.ndarray):
        raise UsageError(f"the {family.name} family takes one input, and '{dataset.name}' gives several "
                         f"({', '.join(x)})", "Train a model with several inputs in Keras; the toolkit converts, "
                         "quantizes and benchmarks it")
    if limit:
        x, y = x[:limit], y[:limit]
    classification = dataset.task == "classification"

    import keras

    keras.utils.set_random_seed(seed)
    hparams = dict(model_options or {})
    extra: dict[str, Any] = {}
    files: dict[str, str] = {}
    tokenizer = getattr(dataset, "tokenizer", None)
    if tokenizer is not None:  # token ids: the vocabulary travels beside the model
        tok = tokenizer()
        hparams["vocabulary_size"] = len(tok.vocabulary)
        extra["tokenizer"] = tok.settings()
        files[WordTokenizer.suffix] = tok.vocabulary_text()
    if getattr(dataset, "class_names", None) and classification:  # so a device can name its answers
        extra["class_names"] = [str(c) for c in dataset.class_names]
    columns = getattr(dataset, "columns", None)
    if columns is not None:  # tabular: what each input column holds, with the categories' codes
        hparams["categorical"] = dataset.categorical()
        extra["features"] = columns()
    model = family.build(x.shape[1:], dataset.num_classes if classification else int(np.prod(y.shape[1:])),
                         **hparams)
    _adapt_normalization(model, x)
    if classification:
        loss, metric = keras.losses.SparseCategoricalCrossentropy(from_logits=True), "accuracy"
    else:
        loss, metric = keras.losses.MeanSquaredError(), "mae"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=[metric])
    if early_stopping and not validation_split:
        validation_split = 0.1
    steps = -(-int(len(x) * (1 - validation_split)) // batch_size)
    if on_start:
        on_start(steps * epochs)
    callbacks = [_progress_callback(on_batch)] if on_batch else []
    if early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(patience=early_stopping, restore_best_weights=True))
    t0 = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks, shuffle=True,
                        validation_split=validation_split or 0.0)
    train_s = time.perf_counter() - t0
    test_loss, test_metric = model.evaluate(xt, yt, batch_size=256, verbose=0)

    model.save(output)

    metrics: dict[str, Any] = {
        "dataset": dataset.name,
        "train_samples": int(np.floor(len(x) * (1 - validation_split))),  # Keras holds out the last rows
        "validation_samples": len(x) - int(np.floor(len(x) * (1 - validation_split))),
        "test_samples": int(len(xt)),
        "epochs": epochs,
        "epochs_run": len(history.history.get("loss", [])),
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "validation_split": validation_split,
        "train_seconds": round(train_s, 2),
        "history": {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()},
        "test_loss": round(float(test_loss), 5),
        **({"model_options": model_options} if model_options else {}),
    }
    if classification:
        metrics["accuracy"] = round(float(test_metric), 5)
        # What always answering the most common training class scores on the test split: the bar to beat.
        metrics["baseline_accuracy"] = round(float((yt == np.bincount(y).argmax()).mean()), 5)
    else:
        pred = model.predict(xt, batch_size=256, verbose=0).reshape(yt.shape)
        metrics["mae"], metrics["rmse"] = _errors(pred, yt)
        metrics["baseline"], guess = _naive_forecast(x, y, xt)
        metrics["baseline_mae"], metrics["baseline_rmse"] = _errors(guess.reshape(yt.shape), yt)
    out_name = "logits" if classification else "forecast"
    return TrainingResult(
        inputs=[TensorSpec(t.name, (None, *x.shape[1:]), str(t.dtype)) for t in model.inputs],
        outputs=[TensorSpec(out_name, (None, *((dataset.num_classes,) if classification else y.shape[1:])),
                            "float32")],
        metrics=metrics,
        versions=library_versions(*KERAS_LIBS),
        extra=extra,
        files=files,
    )


def _adapt_normalization(model: Any, x: np.ndarray) -> None:
    """Preprocessing inside the graph learns its statistics from the training split, as it arrives at the layer
    (after the one-hot of categories, or the differencing of a series)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            upstream = keras.Model(model.inputs, layer.input)
            layer.adapt(upstream.predict(x, batch_size=512, verbose=0))


def _errors(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    err = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return round(float(np.abs(err).mean()), 5), round(float(np.sqrt((err ** 2).mean())), 5)


def _naive_forecast(x: np.ndarray, y: np.ndarray, xt: np.ndarray) -> tuple[str, np.ndarray]:
    """The simple answer a regression must beat: the last value for a series that predicts its next step, else the
    mean training target."""
    if xt.ndim == 3 and xt.shape[2] == int(np.prod(y.shape[1:])):
        return "last value", xt[:, -1, :]
    return "mean of the training targets", np.broadcast_to(y.mean(axis=0), (len(xt), *y.shape[1:]))
