"""Saliency maps of image classifiers on real samples: occlusion through any backend (so int8 .tflite and .onnx
files work), gradients where the model is Keras; one PNG per sample and one self-contained index.html.

The maths is in saliency.py and the drawing and the page in explain_page.py; here, the models run in child
processes (occlusion_in_child, gradient_in_child) and the command's work is put together. Nothing here imports
TensorFlow except gradient_in_child, in its child.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import ToolkitError, UsageError
from .saliency import (CHUNK, default_patch, fill_values, image_layout, is_probabilities, occlusion_map, pearson,
                       probabilities, spatial, windows)

METHODS = ("occlusion", "gradient")
FILLS = ("mean", "zero")
PICKS = ("first", "wrong", "disagree")
SEARCH = 2000  # test samples searched by --pick wrong and --pick disagree
PICKED = {"first": "the first ones", "wrong": f"the first the model gets wrong (among the first {SEARCH})",
          "disagree": f"the first on which the two models disagree (among the first {SEARCH})"}


# ---------------------------------------------------------------------------------------------- child side
def _output_spec(session: Any, target: str | None) -> Any:
    from .inputs import short_name

    outs = session.output_specs
    if target:
        for s in outs:
            if target in (s.name, short_name(s.name)):
                return s
    if len(outs) != 1:
        raise UsageError(f"the model has {len(outs)} outputs and none is named as the dataset's answer",
                         "Explain a model with one output of class scores")
    return outs[0]


def batch_predictor(session: Any, backend: str, output: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function from real-valued images (in the model's layout) to the chosen output's real values, (B, K): the
    input quantized for an integer model, the output dequantized, every result checked against the declared
    specs. A dynamic batch is resized per call; a fixed one is fed batch by batch, the last padded."""
    from .benchmark.measure import check_outputs

    spec = session.input_specs[0]
    fixed = spec.shape[0] if spec.shape and spec.shape[0] is not None else None

    def run(batch: np.ndarray) -> np.ndarray:
        feed = {spec.name: spec.quantize(batch)}
        session.resize({spec.name: tuple(batch.shape)})
        out = session.run(feed)
        check_outputs(out, session, backend, feed)
        return output.dequantize(out[output.name]).reshape(len(batch), -1)

    def predict(images: np.ndarray) -> np.ndarray:
        if not fixed:
            return np.concatenate([run(images[lo:lo + CHUNK]) for lo in range(0, len(images), CHUNK)])
        parts = []
        for lo in range(0, len(images), fixed):
            part = images[lo:lo + fixed]
            size = len(part)
            if size < fixed:
                part = np.concatenate([part, np.repeat(part[:1], fixed - size, axis=0)])
            parts.append(run(part)[:size])
        return np.concatenate(parts)

    return predict


def occlusion_in_child(model: str, backend: str, images: np.ndarray, layout: str, patch: int, stride: int,
                       fill: np.ndarray, target: str | None = None, classes: list[int] | None = None,
                       threads: int | None = None, num_classes: int = 0) -> dict[str, Any]:
    """Child entry point: the model's outputs on `images` and an occlusion map per image, for `classes` (default:
    the class it predicts), reporting progress per image."""
    from .benchmark.measure import load_session, open_artifact
    from .child import report_phase, report_progress

    report_phase("loading")
    be, session = load_session(open_artifact(model), backend, threads, None, {})
    if len(session.input_specs) != 1:
        raise UsageError(f"the model has {len(session.input_specs)} inputs", "Explain a model with one image input")
    predict = batch_predictor(session, be.name, _output_spec(session, target))
    report_phase("running")
    outputs = predict(images)
    logits, chosen = explained_classes(outputs, classes, num_classes, model)
    maps = []
    for i, (image, cls) in enumerate(zip(images, chosen)):
        report_progress(["sample", i])

        def score(batch: np.ndarray, cls: int = cls) -> np.ndarray:
            model_batch = batch if layout == "NHWC" else np.moveaxis(batch, -1, 1)
            return probabilities(predict(np.ascontiguousarray(model_batch)), logits)[:, cls]

        maps.append(occlusion_map(spatial(image[None], layout)[0], score, patch, stride, np.asarray(fill)))
    return {"outputs": outputs, "logits": logits, "classes": chosen, "maps": np.stack(maps),
            "backend": be.name, "runs": session.describe()}


def explained_classes(outputs: np.ndarray, classes: list[int] | None, num_classes: int,
                      model: str) -> tuple[bool, list[int]]:
    """(whether `outputs` are logits, the class each map explains: `classes`, else the predicted one), after
    checking the scores fit the dataset's classes."""
    check_scores(outputs, num_classes, model)
    return (not is_probabilities(outputs),
            [int(c) for c in (classes if classes is not None else np.argmax(outputs, axis=-1))])


def gradient_in_child(model: str, backend: str, images: np.ndarray, layout: str, target: str | None = None,
                      classes: list[int] | None = None, threads: int | None = None,
                      num_classes: int = 0) -> dict[str, Any]:
    """Child entry point: vanilla gradient saliency of a Keras model, |d p(class) / d pixel|, the largest over
    channels, for the class it predicts (or `classes`). TensorFlow is imported here, in this child only."""
    from .benchmark.measure import load_session, open_artifact
    from .child import report_phase, report_progress

    report_phase("loading")
    be, session = load_session(open_artifact(model), backend, threads, None, {})
    keras_model = getattr(session, "model", None)
    if keras_model is None or not callable(keras_model):
        raise UsageError(f"backend {be.name} gives no access to the model's gradients",
                         "Use --method occlusion, or run the .keras file on the keras backend")
    output = _output_spec(session, target)
    index = [s.name for s in session.output_specs].index(output.name)
    import tensorflow as tf

    report_phase("running")
    outputs = batch_predictor(session, be.name, output)(images)
    logits, chosen = explained_classes(outputs, classes, num_classes, model)
    maps = []
    for i, (image, cls) in enumerate(zip(images, chosen)):
        report_progress(["sample", i])
        x = tf.convert_to_tensor(image[None].astype(np.float32))
        with tf.GradientTape() as tape:
            tape.watch(x)
            result = keras_model(x, training=False)
            out = result[index] if isinstance(result, (list, tuple)) else result
            out = tf.reshape(out, (1, -1))
            probs = tf.nn.softmax(out, axis=-1) if logits else out
            score = probs[0, cls]
        grad = np.abs(tape.gradient(score, x).numpy())
        maps.append(spatial(grad, layout)[0].max(axis=-1))
    return {"outputs": outputs, "logits": logits, "classes": chosen, "maps": np.stack(maps).astype(np.float32),
            "backend": be.name, "runs": session.describe()}


# ---------------------------------------------------------------------------------------------- the parent side
@dataclass
class Side:
    """One model's view of the samples: its outputs, the class each map explains, the maps."""

    model: str
    backend: str
    outputs: np.ndarray
    logits: bool
    classes: list[int]
    maps: np.ndarray

    @property
    def predicted(self) -> list[int]:
        return [int(c) for c in np.argmax(self.outputs, axis=-1)]

    def probabilities(self) -> np.ndarray:
        return probabilities(self.outputs, self.logits)

    @property
    def score_kind(self) -> str:
        return "logits (softmax applied)" if self.logits else "probabilities"


@dataclass
class Explanation:
    """What `toolkit explain` found: the samples, each side's maps, their correlations, and the settings."""

    dataset: str
    indices: list[int]
    images: np.ndarray  # (N, H, W, C) for drawing
    labels: list[int]
    class_names: list[str]
    method: str
    settings: dict[str, Any]
    main: Side
    other: Side | None = None
    correlations: list[float | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # manifests ignored, and why

    def name_of(self, cls: int) -> str:
        return self.class_names[cls] if 0 <= cls < len(self.class_names) else str(cls)

    def to_dict(self, output: Path | None = None, files: Sequence[str] = ()) -> dict[str, Any]:
        sides = [("model", self.main)] + ([("compare", self.other)] if self.other else [])
        rows = []
        probs = {key: side.probabilities() for key, side in sides}
        for i, index in enumerate(self.indices):
            row: dict[str, Any] = {"index": index, "label": self.labels[i], "label_name": self.name_of(self.labels[i])}
            for key, side in sides:
                pred = side.predicted[i]
                row[key] = {"predicted": pred, "predicted_name": self.name_of(pred),
                            "probability": round(float(probs[key][i, pred]), 6), "explained_class": side.classes[i]}
            if self.other:
                row["correlation"] = self.correlations[i]
            if files:
                row["png"] = files[i]
            rows.append(row)
        out: dict[str, Any] = {
            "dataset": self.dataset, "split": "test", "method": self.method, **self.settings,
            "model": {"file": self.main.model, "backend": self.main.backend, "scores": self.main.score_kind}}
        if self.other:
            valid = [c for c in self.correlations if c is not None]
            out["compare"] = {"file": self.other.model, "backend": self.other.backend, "scores": self.other.score_kind}
            out["mean_correlation"] = round(float(np.mean(valid)), 4) if valid else None
            out["agreement"] = round(float(np.mean(np.equal(self.main.predicted, self.other.predicted))), 4)
        out["samples"] = rows
        if output is not None:
            out["output"] = str(output)
            out["html"] = str(output / "index.html")
        return out


def correlate(main: Side, other: Side) -> list[float | None]:
    return [None if c is None else round(c, 4) for c in (pearson(a, b) for a, b in zip(main.maps, other.maps))]


def labels_of(y: Any) -> list[int]:
    arr = np.asarray(y)
    return [int(v) for v in (arr.reshape(len(arr), -1)[:, 0] if arr.ndim > 1 else arr)]


def class_names_for(dataset: Any, manifest_extra: Mapping[str, Any] | None) -> list[str]:
    names = getattr(dataset, "class_names", None) or (manifest_extra or {}).get("class_names") or ()
    return [str(n) for n in names]


# ---------------------------------------------------------------------------------------------- the command's work
@dataclass
class Subject:
    """A model to explain, checked before any child starts: its artifact and the backend that runs it."""

    artifact: Any
    backend: str


def open_subject(path: Path, backend: str | None, method: str, role: str = "MODEL") -> Subject:
    """The artifact at `path` (ModelFileError when missing) and a backend that runs it: the one named (unknown
    names get a "did you mean"), else the default one for its format."""
    from . import plugins
    from .benchmark.measure import open_artifact
    from .benchmark.runner import capable_backends, default_backend

    artifact = open_artifact(str(path))
    if method == "gradient" and artifact.format != "keras":
        raise UsageError(f"--method gradient needs a Keras model, and {role} '{path.name}' is a .{artifact.format} "
                         "file", "Use --method occlusion, which runs through any backend (int8 files too)")
    if backend is None:
        return Subject(artifact, default_backend(artifact))
    plugins.registries().backends.get(backend)
    able, left_out = capable_backends(artifact, sweep=False)
    if backend not in able:
        why = left_out.get(backend) or plugins.registries().backends.get(backend).supports(artifact)
        raise UsageError(why or f"backend {backend} cannot run '{path.name}'",
                         f"Backends that can: {', '.join(able) or 'none installed'}")
    return Subject(artifact, backend)


def image_spec(subject: Subject) -> Any:
    """The model's one input, refused in one line unless it takes images (float, or quantized integers: token ids
    are not pixels); None when neither manifest nor format reader can tell (the dataset's samples decide)."""
    from .benchmark.measure import declared_specs
    from .inputs import format_shape

    name = subject.artifact.path.name
    specs = declared_specs(subject.artifact)
    inputs = specs[0] if specs else []
    if len(inputs) > 1:
        raise UsageError(f"'{name}' has {len(inputs)} inputs; explain takes image classifiers with one image input",
                         "Explain a CNN (a model whose input is [N, H, W, C] or [N, C, H, W])")
    if not inputs:
        return None
    spec = inputs[0]
    kind = np.dtype(_numpy_dtype(spec.dtype)).kind
    numbers = kind == "f" or (kind in "iu" and spec.quantization is not None)
    if not numbers or image_layout(tuple(d or 8 for d in spec.shape[1:])) is None:
        raise UsageError(f"'{name}' takes {spec.dtype} {format_shape(spec)}, not images; explain draws saliency "
                         "maps of image classifiers", "Explain a CNN (input [N, H, W, C] or [N, C, H, W])")
    return spec


def image_layout_for(subject: Subject, spec: Any, sample_shape: tuple[int, ...], dataset: str) -> str:
    """The layout ("NHWC" or "NCHW") of the dataset's samples, checked to fit the model's input."""
    if spec is not None and not spec.accepts((spec.shape[0] or 1, *sample_shape)):
        raise UsageError(f"dataset '{dataset}' gives samples of shape {list(sample_shape)}, "
                         f"'{subject.artifact.path.name}' wants {list(spec.shape[1:])}",
                         "Pick the dataset the model was trained on")
    layout = image_layout(sample_shape)
    if layout is None:
        raise UsageError(f"dataset '{dataset}' gives samples of shape {list(sample_shape)}, not images with 1, 3 or "
                         "4 channels", "Explain an image classifier on an image dataset")
    return layout


def _numpy_dtype(name: str) -> str:
    try:
        return str(np.dtype(name))
    except TypeError:
        return "object"


def test_split(dataset: Any) -> tuple[np.ndarray, list[int]]:
    """The dataset's test split as (images, labels), refused unless it is one array of a classification task."""
    x, y = dataset.load("test")
    if isinstance(x, Mapping):
        raise UsageError(f"dataset '{Path(str(dataset.name)).name}' gives several inputs ({', '.join(x)}), not images",
                         "Explain an image classifier on an image dataset")
    if dataset.task != "classification":
        raise UsageError(f"dataset '{Path(str(dataset.name)).name}' is for {dataset.task}; explain maps the evidence "
                         "for a predicted class", "Explain a classifier on a classification dataset")
    return np.asarray(x), labels_of(y)


def pick_indices(pick: str, count: int, labels: Sequence[int], predicted: Sequence[int],
                 other: Sequence[int] | None = None) -> list[int]:
    """The first `count` test samples (first), or the first the model gets wrong (wrong), or the first on which
    the two models disagree (disagree); `predicted` and `other` cover the searched samples."""
    if pick == "first":
        return list(range(min(count, len(labels))))
    if pick == "wrong":
        hits = [i for i, (p, y) in enumerate(zip(predicted, labels)) if p != y]
    else:
        hits = [i for i, (a, b) in enumerate(zip(predicted, other or ())) if a != b]
    return hits[:count]


def predicted_classes(subject: Subject, images: np.ndarray, target: str | None) -> list[int]:
    """The class `subject` predicts for each image, run in a child by its backend."""
    from .child import run_in_child
    from .inputs import short_name

    outputs = run_in_child("toolkit.benchmark.measure:predict", model=str(subject.artifact.path),
                           backend=subject.backend, arrays=images)
    key = next((k for k in outputs if target and target in (k, short_name(k))), next(iter(outputs)))
    scores = np.asarray(outputs[key])
    return [int(c) for c in np.argmax(scores.reshape(len(scores), -1), axis=-1)]


def choose_samples(pick: str, count: int, x: np.ndarray, labels: list[int], main: Subject, other: Subject | None,
                   target: str | None, dataset: str) -> list[int]:
    """Indices into the test split for --pick, searching its first SEARCH samples for wrong or disagree."""
    if pick == "first":
        return pick_indices(pick, count, labels, [])
    if pick == "disagree" and other is None:
        raise UsageError("--pick disagree needs two models", "Add --compare OTHER")
    pool = np.asarray(x[:SEARCH], np.float32)
    mine = predicted_classes(main, pool, target)
    theirs = predicted_classes(other, pool, target) if pick == "disagree" and other else None
    found = pick_indices(pick, count, labels[:len(pool)], mine, theirs)
    if not found:
        what = (f"'{main.artifact.path.name}' gets every one right" if pick == "wrong" else
                f"'{main.artifact.path.name}' and '{other.artifact.path.name}' agree on every one" if other else "")
        raise UsageError(f"among the first {len(pool)} test samples of {dataset}, {what}: nothing to pick",
                         "Use --pick first")
    return found


def explain(model: Path, dataset_name: str | None, compare: Path | None = None, backend: str | None = None,
            compare_backend: str | None = None, samples: int = 8, method: str = "occlusion", patch: int | None = None,
            stride: int | None = None, fill: str = "mean", threads: int | None = None, pick: str = "first",
            on_start: Callable[[int], None] | None = None,
            on_sample: Callable[[str, int], None] | None = None) -> Explanation:
    """Maps of `samples` test samples (chosen by `pick`), each model in its own child process; every check
    that needs no model run comes first."""
    from . import plugins
    from .text import check_vocabulary

    main = open_subject(model, backend, method)
    if compare and compare_backend is None and backend and _same_format(main, compare):
        compare_backend = backend  # --backend names the runtime of both files when it can run both
    other = open_subject(compare, compare_backend, method, "OTHER") if compare else None
    specs = [image_spec(s) for s in [main] + ([other] if other else [])]  # before any data is read
    name = dataset_name or (main.artifact.manifest.extra.get("dataset") if main.artifact.manifest else None)
    if not name:
        raise UsageError(f"'{model.name}' has no manifest naming its dataset", "Pass --dataset NAME")
    ds = plugins.registries().datasets.get(name)
    ds.require_available()
    check_vocabulary(main.artifact, ds)
    x, all_labels = test_split(ds)
    shown_name = Path(str(ds.name)).name
    layout = image_layout_for(main, specs[0], tuple(x.shape[1:]), shown_name)
    if other:
        image_layout_for(other, specs[1], tuple(x.shape[1:]), shown_name)
    indices = choose_samples(pick, samples, x, all_labels, main, other, ds.target_output, shown_name)
    images = np.asarray(x[indices], np.float32)
    labels = [all_labels[i] for i in indices]
    settings: dict[str, Any] = {"samples": len(indices), "pick": pick}
    kwargs: dict[str, Any] = {"images": images, "layout": layout, "target": ds.target_output, "threads": threads,
                              "num_classes": ds.num_classes}
    if method == "occlusion":
        train = ds.load("train")[0] if "train" in ds.splits else images
        occlusion = occlusion_settings(spatial(images[:1], layout).shape[1:3], patch, stride, fill, train, layout)
        settings.update(occlusion)
        kwargs.update(patch=occlusion["patch"], stride=occlusion["stride"],
                      fill=np.asarray(occlusion["fill_value"], np.float32))
    if on_start:
        on_start(len(indices) * (2 if other else 1))
    sides = run_sides(method, [main] + ([other] if other else []), kwargs, on_sample)
    ex = Explanation(shown_name, indices, spatial(images, layout), labels,
                     class_names_for(ds, main.artifact.manifest.extra if main.artifact.manifest else None),
                     method, settings, sides[0], sides[1] if other else None)
    if ex.other:
        ex.correlations = correlate(ex.main, ex.other)
    ex.notes = [n for s in [main] + ([other] if other else []) for n in s.artifact.notes]
    return ex


def occlusion_settings(size: tuple[int, int], patch: int | None, stride: int | None, fill: str, train: np.ndarray,
                       layout: str) -> dict[str, Any]:
    """Patch, stride (the defaults for the image size where not given) and fill, checked and described."""
    height, width = (int(d) for d in size)
    auto_patch, auto_stride = default_patch(height, width)
    patch = patch or auto_patch
    stride = stride or (auto_stride if patch == auto_patch else max(1, patch // 2))
    if patch > min(height, width):
        raise UsageError(f"--patch {patch} is larger than the {height}x{width} images",
                         f"Give at most {min(height, width)}")
    value = fill_values(train, layout, fill)
    text = "zero" if fill == "zero" else "the training images' mean, " + ", ".join(f"{v:.4g}" for v in value)
    return {"patch": patch, "stride": stride, "fill": fill, "fill_value": [float(v) for v in value],
            "fill_text": text, "positions": len(windows(height, width, patch, stride))}


def run_sides(method: str, subjects: Sequence[Subject], kwargs: dict[str, Any],
              on_sample: Callable[[str, int], None] | None) -> list[Side]:
    """Each model in its own child, one after the other; the second explains the classes the first predicts."""
    from .child import run_in_child

    sides: list[Side] = []
    classes = None
    for subject in subjects:
        label = subject.artifact.path.name

        def progress(payload: list, label: str = label) -> None:
            if on_sample and payload and payload[0] == "sample":
                on_sample(label, int(payload[1]))

        got = run_in_child(f"toolkit.explain:{method}_in_child", model=str(subject.artifact.path),
                           backend=subject.backend, classes=classes, on_progress=progress, **kwargs)
        sides.append(Side(str(subject.artifact.path), got["backend"], np.asarray(got["outputs"]),
                          bool(got["logits"]), [int(c) for c in got["classes"]], np.asarray(got["maps"], np.float32)))
        classes = sides[-1].classes  # comparable maps: both explain the class MODEL predicts
    return sides


def _same_format(main: Subject, compare: Path) -> bool:
    from . import formats

    try:
        return formats.detect(compare) == main.artifact.format
    except ToolkitError:  # open_subject says what is wrong with the file
        return False


def check_scores(outputs: np.ndarray, num_classes: int, model: str) -> None:
    """Class scores, one per class of the dataset: what a map of "the evidence for a class" needs."""
    if outputs.shape[1] < 2:
        raise UsageError(f"'{Path(model).name}' gives {outputs.shape[1]} score per sample, not class scores",
                         "Explain a classifier whose output is [N, classes]")
    if num_classes and outputs.shape[1] != num_classes:
        raise UsageError(f"'{Path(model).name}' scores {outputs.shape[1]} classes and the dataset has {num_classes}",
                         "Pick the dataset the model was trained on")
