"""Training a model family on a dataset: a .keras file, its manifest and its metrics, with a progress bar."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from toolkit import atomic
from toolkit.artifact import Artifact, Manifest, library_versions, sha256_file

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


def train(model_name: str, dataset_name: str, epochs: int, output_dir: Path, *, batch_size: int = 64,
          limit: int | None = None, seed: int = 0, learning_rate: float = 1e-3,
          on_start: Callable[[int], None] | None = None,
          on_batch: Callable[[int, int, dict], None] | None = None) -> tuple[Artifact, dict[str, Any]]:
    """Train `model_name` on `dataset_name`; write DIR/MODEL.keras, its manifest and DIR/metrics.json."""
    from toolkit import plugins

    regs = plugins.registries()
    family, dataset = regs.models.get(model_name), regs.datasets.get(dataset_name)
    dataset.require_available()
    x, y = dataset.load("train")
    xt, yt = dataset.load("test")
    if limit:
        x, y = x[:limit], y[:limit]

    import keras

    keras.utils.set_random_seed(seed)
    model = family.build(x.shape[1:], dataset.num_classes)
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

    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{model_name}.keras"
    with tempfile.TemporaryDirectory(dir=output_dir) as tmp:
        tmp_path = Path(tmp) / path.name  # Keras needs the .keras suffix; rename keeps the write atomic
        model.save(tmp_path)
        atomic.move_into_place(tmp_path, path)

    metrics = {
        "dataset": dataset_name,
        "train_samples": int(len(x)),
        "test_samples": int(len(xt)),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "train_seconds": round(train_s, 2),
        "history": {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()},
        "test_loss": round(float(test_loss), 5),
        "accuracy": round(float(test_acc), 5),
    }
    from toolkit.specs import TensorSpec

    manifest = Manifest(
        file=path.name,
        format="keras",
        precision="fp32",
        sha256=sha256_file(path),
        model=model_name,
        inputs=[TensorSpec(model.inputs[0].name, (None, *x.shape[1:]), "float32")],
        outputs=[TensorSpec("logits", (None, dataset.num_classes), "float32")],
        producer={"plugin": "keras", "step": "train"},
        versions=library_versions(*KERAS_LIBS),
        seed=seed,
        metrics={"accuracy": metrics["accuracy"], "accuracy_dataset": dataset_name},
        extra={"dataset": dataset_name, "num_classes": dataset.num_classes},
    )
    artifact = Artifact(path, manifest)
    artifact.write_manifest()
    atomic.write_json(output_dir / "metrics.json", metrics)
    return artifact, metrics
