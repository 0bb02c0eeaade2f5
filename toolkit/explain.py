"""Saliency maps of image classifiers on real samples: occlusion through any backend (so int8 .tflite and .onnx
files work), gradients where the model is Keras; one PNG per sample and one self-contained index.html.

The maths (patch positions, occluded batches, drops to maps, Pearson correlation) is plain numpy with the model
given as a function; the models run in child processes (occlusion_in_child, gradient_in_child); drawing uses
matplotlib's Agg canvas (the `report` extra). Nothing here imports TensorFlow except gradient_in_child, in its child.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import MissingRuntimeError, ToolkitError, UsageError

METHODS = ("occlusion", "gradient")
FILLS = ("mean", "zero")
PICKS = ("first", "wrong", "disagree")
SEARCH = 2000  # test samples searched by --pick wrong and --pick disagree
PICKED = {"first": "the first ones", "wrong": f"the first the model gets wrong (among the first {SEARCH})",
          "disagree": f"the first on which the two models disagree (among the first {SEARCH})"}
CHUNK = 64  # occluded images per call on a dynamic batch: bounded memory for large images
# How far dequantized int8 probabilities may stray from a distribution (10 classes, half a step of 1/256 each).
PROBABILITY_TOLERANCE = 0.05


# ---------------------------------------------------------------------------------------------- the maths
def image_layout(sample_shape: Sequence[int]) -> str | None:
    """"NHWC" or "NCHW" for one sample's shape (H, W, C) or (C, H, W), with 1, 3 or 4 channels; None otherwise."""
    if len(sample_shape) != 3:
        return None
    a, b, c = (int(d) for d in sample_shape)
    if c in (1, 3, 4) and min(a, b) >= 4:
        return "NHWC"
    if a in (1, 3, 4) and min(b, c) >= 4:
        return "NCHW"
    return None


def spatial(images: np.ndarray, layout: str) -> np.ndarray:
    """Images (N, ...) as (N, H, W, C), whatever their layout (a view, no copy)."""
    return images if layout == "NHWC" else np.moveaxis(images, 1, -1)


def default_patch(height: int, width: int) -> tuple[int, int]:
    """(patch, stride) for an image: about a seventh of its smaller side (2 pixels at least), half-overlapping.
    8x8 digits: 2, stride 1 (49 positions); 28x28: 4, stride 2 (169); 224x224: 32, stride 16 (169)."""
    side = min(height, width)
    patch = max(2, round(side / 7)) if side >= 4 else 1
    return patch, max(1, patch // 2)


def positions(size: int, patch: int, stride: int) -> list[int]:
    """Top (or left) edges of the patches along one side; the last patch always reaches the far edge."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def windows(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    return [(top, left) for top in positions(height, patch, stride) for left in positions(width, patch, stride)]


def occluded(image: np.ndarray, spots: Sequence[tuple[int, int]], patch: int, fill: np.ndarray) -> np.ndarray:
    """Copies of `image` (H, W, C), one per spot, each with a patch x patch square filled with `fill` (per channel)."""
    batch = np.repeat(image[None], len(spots), axis=0)
    for i, (top, left) in enumerate(spots):
        batch[i, top:top + patch, left:left + patch, :] = fill
    return batch


def occlusion_map(image: np.ndarray, score: Callable[[np.ndarray], np.ndarray], patch: int, stride: int,
                  fill: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """How much hiding each pixel lowers the score (H, W): `score` maps images (B, H, W, C) to the explained class's
    score (B,). A patch's drop goes to every pixel it hides, averaged over the patches that hide the pixel
    (Zeiler and Fergus' occlusion, aggregated as Captum does). Positive: evidence for the class."""
    height, width = image.shape[:2]
    base = float(score(image[None])[0])
    spots = windows(height, width, patch, stride)
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.float64)
    for lo in range(0, len(spots), chunk):
        part = spots[lo:lo + chunk]
        drops = base - np.asarray(score(occluded(image, part, patch, fill)), np.float64)
        for (top, left), drop in zip(part, drops):
            total[top:top + patch, left:left + patch] += drop
            count[top:top + patch, left:left + patch] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def is_probabilities(outputs: np.ndarray) -> bool:
    """Whether each row is already a distribution (in [0, 1], summing to 1 within dequantization's error)."""
    out = np.asarray(outputs, np.float64)
    return bool(out.min() >= -1e-3 and out.max() <= 1 + 1e-3
                and np.all(np.abs(out.sum(axis=-1) - 1.0) <= PROBABILITY_TOLERANCE))


def probabilities(outputs: np.ndarray, logits: bool) -> np.ndarray:
    """Rows of class probabilities: the softmax of logits, else the outputs as they are."""
    out = np.asarray(outputs, np.float64)
    if not logits:
        return out
    z = np.exp(out - out.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's correlation of two maps over their pixels; None when one is flat (no correlation is defined)."""
    x = np.asarray(a, np.float64).ravel() - np.mean(a)
    y = np.asarray(b, np.float64).ravel() - np.mean(b)
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / denom) if denom > 0 else None


def fill_values(train: np.ndarray, layout: str, how: str) -> np.ndarray:
    """What an occluding patch is filled with, per channel: the training images' mean, or zero."""
    channels = spatial(train[:1], layout).shape[-1]
    if how == "zero":
        return np.zeros(channels, np.float32)
    return spatial(np.asarray(train, np.float32), layout).reshape(-1, channels).mean(axis=0).astype(np.float32)


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
    check_scores(outputs, num_classes, model)
    logits = not is_probabilities(outputs)
    chosen = [int(c) for c in (classes if classes is not None else np.argmax(outputs, axis=-1))]
    maps = []
    for i, (image, cls) in enumerate(zip(images, chosen)):
        report_progress(["sample", i])

        def score(batch: np.ndarray, cls: int = cls) -> np.ndarray:
            model_batch = batch if layout == "NHWC" else np.moveaxis(batch, -1, 1)
            return probabilities(predict(np.ascontiguousarray(model_batch)), logits)[:, cls]

        maps.append(occlusion_map(spatial(image[None], layout)[0], score, patch, stride, np.asarray(fill)))
    return {"outputs": outputs, "logits": logits, "classes": chosen, "maps": np.stack(maps),
            "backend": be.name, "runs": session.describe()}


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
    check_scores(outputs, num_classes, model)
    logits = not is_probabilities(outputs)
    chosen = [int(c) for c in (classes if classes is not None else np.argmax(outputs, axis=-1))]
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


# ---------------------------------------------------------------------------------------------- drawing
def need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingRuntimeError("matplotlib, which draws the heat maps,", "report") from None


def _figure(width: float, height: float) -> Any:
    # The Agg canvas on a bare Figure: no pyplot, no global backend, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _mpl(text: str) -> str:
    return str(text).replace("$", r"\$")  # a '$' in a name must not start mathtext


def _shown(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An image (H, W, C) scaled to [0, 1] for display, with the colour map for one channel."""
    img = np.asarray(image, np.float64)
    span = img.max() - img.min()
    img = (img - img.min()) / span if span > 0 else np.zeros_like(img)
    return (img[..., 0], "gray") if img.shape[-1] == 1 else (img[..., :3], None)


def _overlay(ax: Any, image: np.ndarray, heat: np.ndarray, signed: bool, title: str) -> Any:
    shown, cmap = _shown(image)
    ax.imshow(shown, cmap=cmap, interpolation="nearest")
    limit = float(np.abs(heat).max()) or 1.0
    if signed:
        im = ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6, interpolation="nearest")
    else:
        im = ax.imshow(heat, cmap="inferno", vmin=0, vmax=limit, alpha=0.6, interpolation="nearest")
    ax.set_title(_mpl(title), fontsize=8)
    ax.set_axis_off()
    return im


def sample_png(ex: Explanation, i: int) -> bytes:
    """One sample: the image, then each model's map over it, titled with its prediction (and the correlation)."""
    sides = [ex.main] + ([ex.other] if ex.other else [])
    fig = _figure(2.6 * (1 + len(sides)), 2.9)
    axes = fig.subplots(1, 1 + len(sides))
    shown, cmap = _shown(ex.images[i])
    axes[0].imshow(shown, cmap=cmap, interpolation="nearest")
    axes[0].set_title(_mpl(f"test[{ex.indices[i]}]: {ex.name_of(ex.labels[i])}"), fontsize=8)
    axes[0].set_axis_off()
    signed = ex.method == "occlusion"
    for ax, side in zip(axes[1:], sides):
        pred, explained = side.predicted[i], side.classes[i]
        prob = side.probabilities()[i, pred]
        about = "" if explained == pred else f", map of {ex.name_of(explained)}"
        im = _overlay(ax, ex.images[i], side.maps[i], signed,
                      f"{Path(side.model).name} ({side.backend})\n{ex.name_of(pred)} {prob:.0%}{about}")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    if ex.other:
        r = ex.correlations[i]
        fig.suptitle(f"maps' correlation r = {r:.3f}" if r is not None else "maps' correlation: undefined (a flat map)",
                     fontsize=9)
    return _png(fig)


def png_files(ex: Explanation) -> list[str]:
    return [f"sample-{index:05d}.png" for index in ex.indices]


# ---------------------------------------------------------------------------------------------- the page
CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
img.map{max-width:100%;height:auto}.bad{color:#c0392b;font-weight:bold}p.note{color:#555;max-width:60em}"""


def render_html(ex: Explanation, pngs: Sequence[bytes]) -> str:
    """One self-contained page: settings, then per sample its figure (a data: URI), label, predictions and the
    correlation. No script, nothing loaded from elsewhere."""
    e = html.escape
    sides = [ex.main] + ([ex.other] if ex.other else [])
    data = ex.to_dict()
    what = (f"Occlusion: a {ex.settings['patch']}x{ex.settings['patch']} patch, stride {ex.settings['stride']}, "
            f"filled with {ex.settings['fill_text']}, slides over each image; a pixel's value is the mean drop of "
            "the explained class's probability over the patches that hide it (red: evidence for the class, blue: "
            "against)." if ex.method == "occlusion" else
            "Gradient: |d probability / d pixel| of the explained class, the largest over channels.")
    head = [f"<h1>Saliency maps: {e(Path(ex.main.model).name)}</h1>",
            f"<p>{len(ex.indices)} samples of {e(ex.dataset)}'s test split: {e(PICKED[ex.settings['pick']])}.</p>",
            f"<p class=\"note\">{e(what)}</p>", "<table>",
            "<tr><th>model</th><th>backend</th><th>scores</th></tr>"]
    for side in sides:
        head.append(f"<tr><td>{e(side.model)}</td><td>{e(side.backend)}</td><td>{e(side.score_kind)}</td></tr>")
    head.append("</table>")
    if ex.other:
        mean = data["mean_correlation"]
        head.append(f"<p>Mean correlation of the maps: <b>{mean:.3f}</b>; predictions agree on "
                    f"{data['agreement']:.0%} of the samples. Both maps explain the class "
                    f"{e(Path(ex.main.model).name)} predicts.</p>" if mean is not None else
                    "<p>Mean correlation of the maps: undefined (flat maps).</p>")
    rows = ["<table>", "<tr><th>sample</th><th>label</th>" + "".join(
        f"<th>{e(Path(s.model).name)}</th>" for s in sides) + ("<th>correlation</th>" if ex.other else "")
            + "<th>maps</th></tr>"]
    for i, row in enumerate(data["samples"]):
        cells = [f"<td>test[{row['index']}]</td>", f"<td>{e(row['label_name'])}</td>"]
        for key in ("model", "compare")[:len(sides)]:
            pred = row[key]
            wrong = " class=\"bad\"" if pred["predicted"] != row["label"] else ""
            cells.append(f"<td{wrong}>{e(pred['predicted_name'])} ({pred['probability']:.0%})</td>")
        if ex.other:
            r = row["correlation"]
            cells.append(f"<td>{'undefined' if r is None else f'{r:.3f}'}</td>")
        uri = "data:image/png;base64," + base64.b64encode(pngs[i]).decode("ascii")
        cells.append(f"<td><img class=\"map\" data-sample=\"{row['index']}\" alt=\"maps of test[{row['index']}]\" "
                     f"src=\"{uri}\"></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>toolkit explain: {e(Path(ex.main.model).name)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(head + rows) + "\n</body></html>\n")


def write_outputs(ex: Explanation, folder: Path) -> list[str]:
    """PNGs, maps.npz, then index.html, each written atomically (a temporary file renamed into place): an
    interrupted run leaves no half-written file under a final name. Returns the PNG names."""
    from . import atomic

    need_matplotlib()
    names = png_files(ex)
    pngs = [sample_png(ex, i) for i in range(len(ex.indices))]
    for name, data in zip(names, pngs):
        atomic.write_bytes(folder / name, data)
    arrays: dict[str, Any] = {"indices": np.asarray(ex.indices), "maps": ex.main.maps,
                              "classes": np.asarray(ex.main.classes)}
    if ex.other:
        arrays.update(compare_maps=ex.other.maps, compare_classes=np.asarray(ex.other.classes))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic.write_bytes(folder / "maps.npz", buf.getvalue())
    atomic.write_text(folder / "index.html", render_html(ex, pngs))
    return names


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
        raise UsageError(f"--method gradient needs a Keras model, and {role} '{path.name}' is a {artifact.format} "
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
