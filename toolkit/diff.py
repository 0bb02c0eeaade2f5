"""`toolkit diff`: where two models, or one model on two backends, part ways, layer by layer, on real inputs.

Each side runs in its own child process (as a benchmark does): it loads the model with its backend, feeds it the
first samples of a dataset's held-out split and writes every tensor `Session.trace` gives to a file. The parent
maps tensor names to layers (toolkit.layers), pairs each layer's output across the two sides and measures how far
B is from A: max abs error, RMSE, cosine similarity and SQNR (10 log10 of A's power over the error's power).
Layers that cannot be paired are listed, never guessed.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import formats, janitor, plugins
from .artifact import Artifact
from .errors import ToolkitError, UsageError
from .layers import layer_outputs

DEFAULT_SAMPLES = 100
SCHEMA = 1


# ---------------------------------------------------------------------------------------------- child side
def trace_in_child(model: str, backend: str, dataset: str, samples: int, output: str,
                   options: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Child entry point: trace `model` on `backend` over the first `samples` of `dataset`'s test split; the
    tensors go to the .npz `output` (t0, t1... in execution order), their names and the model's specs come back."""
    from .benchmark.measure import fitting_inputs, load_session
    from .interfaces import Session

    artifact = Artifact.open(model)
    be, session = load_session(artifact, backend, None, None, options or {})
    if type(session).trace is Session.trace:
        able = [b.name for b in plugins.registries().backends if b.name != be.name and artifact.format in b.formats]
        raise UsageError(f"backend {be.name} cannot give per-layer tensors",
                         f"Use --backend {able[0]}" if able else "No installed backend for this format can")
    data = plugins.registries().datasets.get(dataset)
    data.require_available()
    x, _ = data.load("test")
    x = {k: v[:samples] for k, v in x.items()} if isinstance(x, Mapping) else x[:samples]
    fed = fitting_inputs(session, Path(dataset).name, x, "Pick the dataset the model was trained on with --dataset")
    fed = {s.name: s.quantize(fed[s.name]) for s in session.input_specs}
    names, arrays = _trace_all(session, fed)
    np.savez(output, **{f"t{i}": a for i, a in enumerate(arrays)})
    return {"names": names, "outputs": [s.name for s in session.output_specs],
            "inputs": [s.to_dict() for s in session.input_specs], "backend": be.name, "format": artifact.format,
            "precision": artifact.precision, "samples": int(len(next(iter(fed.values())))) if fed else 0,
            "runs_on": session.describe()}


def _trace_all(session: Any, fed: dict[str, np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    """Trace all samples at once, or batch by batch for a model made for a fixed batch (the last batch padded
    with its own first sample, the padding cut off again)."""
    first = session.input_specs[0] if session.input_specs else None
    fixed = first.shape[0] if first is not None and first.shape and first.shape[0] is not None else None
    n = len(next(iter(fed.values()))) if fed else 0
    step = fixed or n or 1
    parts: dict[str, list[np.ndarray]] = {}
    for lo in range(0, max(n, 1), step):
        chunk = {k: v[lo:lo + step] for k, v in fed.items()}
        size = len(next(iter(chunk.values()))) if chunk else 0
        if fixed and size < fixed:
            chunk = {k: np.concatenate([v, np.repeat(v[:1], fixed - size, axis=0)]) for k, v in chunk.items()}
        session.resize({k: tuple(v.shape) for k, v in chunk.items()})
        for name, value in session.trace(chunk).items():
            value = np.asarray(value)
            follows_batch = value.ndim > 0 and value.shape[0] == len(next(iter(chunk.values())))
            parts.setdefault(name, []).append(value[:size] if follows_batch else value)
    names = list(parts)
    return names, [np.concatenate(v) if len(v) > 1 and v[0].ndim > 0 and all(
        p.shape[1:] == v[0].shape[1:] for p in v) else v[0] for v in parts.values()]


# ---------------------------------------------------------------------------------------------- metrics
def compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """How far `b` is from `a` (the reference): max abs error, RMSE, cosine similarity and SQNR in dB (+inf when
    they are equal, -inf when `a` is all zeros and `b` is not)."""
    a64, b64 = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    err = b64 - a64
    signal, noise = float(np.dot(a64, a64)), float(np.dot(err, err))
    na, nb = math.sqrt(signal), float(np.linalg.norm(b64))
    cosine = 1.0 if na == nb == 0 else (float(np.dot(a64, b64)) / (na * nb) if na and nb else 0.0)
    if noise == 0:
        sqnr = math.inf
    elif signal == 0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(signal / noise)
    return {"max_abs": float(np.max(np.abs(err))) if err.size else 0.0,
            "rmse": math.sqrt(noise / err.size) if err.size else 0.0, "cosine": cosine, "sqnr_db": sqnr}


def align(a: np.ndarray, b: np.ndarray, same_format: bool) -> tuple[np.ndarray | None, str | None]:
    """`b` laid out as `a`, or (None, why not). Across formats a tensor may be channels-first on one side
    (tf2onnx's NCHW) and channels-last on the other (TFLite's NHWC): that transposition is made when it is the
    only one that fits; when the shapes fit both ways, the pair is refused as ambiguous."""
    if a.shape == b.shape and (same_format or a.ndim != 4 or not _transposed(a, b)):
        return b, None
    if a.shape == b.shape:
        return None, f"layout ambiguous: shape {list(a.shape)} fits channels-first and channels-last"
    fits = _transposed(a, b)
    if len(fits) == 1:
        return np.transpose(b, fits[0]), None
    return None, f"shapes differ: {list(a.shape)} and {list(b.shape)}"


def _transposed(a: np.ndarray, b: np.ndarray) -> list[tuple[int, ...]]:
    """The channels-first/last transpositions of `b` that give `a`'s shape."""
    perms = {4: [(0, 2, 3, 1), (0, 3, 1, 2)], 3: [(0, 2, 1)]}.get(b.ndim, [])
    return [p for p in perms if tuple(b.shape[i] for i in p) == a.shape and p != tuple(range(b.ndim))]


def _sort_key(row: Mapping[str, Any]) -> tuple[float, int]:
    return (row["sqnr_db"], row["order"])


def compare_traces(side_a: Mapping[str, Any], trace_a: Mapping[str, np.ndarray], side_b: Mapping[str, Any],
                   trace_b: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Rows (one per layer both sides have, and one per output, paired by position) sorted worst SQNR first, and
    what could not be paired."""
    layers_a, orphans_a = layer_outputs(trace_a, side_a["outputs"])
    layers_b, orphans_b = layer_outputs(trace_b, side_b["outputs"])
    same_format = side_a["format"] == side_b["format"]
    rows: list[dict[str, Any]] = []
    mismatched: list[dict[str, str]] = []
    pairs = [(layer, "layer", layers_a[layer], layers_b[layer]) for layer in layers_a if layer in layers_b]
    # Tensors no layer owns (a converter's own, or a file whose names carry no layer, as Caffe2's `r62`): paired
    # when both traces have a real-valued tensor of that very name (one file on two backends: all of them).
    named = [t for t in orphans_a if t in orphans_b and np.issubdtype(np.asarray(trace_a[t]).dtype, np.floating)
             and np.issubdtype(np.asarray(trace_b[t]).dtype, np.floating)]
    pairs += [(t, "tensor", (t, trace_a[t]), (t, trace_b[t])) for t in named]
    orphans_a = [t for t in orphans_a if t not in named]
    orphans_b = [t for t in orphans_b if t not in named]
    pairs += [(f"{oa} (output)" if oa == ob else f"{oa} / {ob} (output)", "output", (oa, trace_a[oa]), (ob, trace_b[ob]))
              for oa, ob in zip(side_a["outputs"], side_b["outputs"]) if oa in trace_a and ob in trace_b]
    for order, (layer, kind, (ta, va), (tb, vb)) in enumerate(pairs):
        va, vb = np.asarray(va), np.asarray(vb)
        if not (np.issubdtype(va.dtype, np.number) and np.issubdtype(vb.dtype, np.number)):
            mismatched.append({"layer": layer, "why": f"not numbers ({va.dtype}, {vb.dtype})"})
            continue
        fitted, why = align(va, vb, same_format)
        if fitted is None:
            mismatched.append({"layer": layer, "why": why or ""})
            continue
        rows.append({"layer": layer, "kind": kind, "order": order, "tensor_a": ta, "tensor_b": tb,
                     "shape": list(va.shape), **compare(va, fitted)})
    rows.sort(key=_sort_key)
    return {
        "rows": rows,
        "unmatched": {"only_a": [layer for layer in layers_a if layer not in layers_b],
                      "only_b": [layer for layer in layers_b if layer not in layers_a],
                      "mismatched": mismatched,
                      # outputs one side has beyond the other's: nothing to pair them with
                      "outputs": side_a["outputs"][len(side_b["outputs"]):] + side_b["outputs"][len(side_a["outputs"]):]},
        "no_layer": {"a": orphans_a, "b": orphans_b},
    }


# ---------------------------------------------------------------------------------------------- parent side
def plan(a: str | Path, b: str | Path | None, backends: Sequence[str]) -> list[tuple[Artifact, str]]:
    """The two (artifact, backend) sides, checked: files exist and are models, backends exist and run them."""
    from .benchmark.runner import default_backend

    if len(backends) > 2:
        raise UsageError(f"--backend names {len(backends)} backends; diff compares two sides",
                         "Give one backend for both files, or two: --backend onnxruntime,reference")
    art_a = Artifact.open(a)
    if b is None:
        if len(backends) != 2:
            raise UsageError("one model needs two backends to compare",
                             "Give a second model (toolkit diff A B), or two backends: --backend onnxruntime,reference")
        sides = [(art_a, backends[0]), (art_a, backends[1])]
    else:
        art_b = Artifact.open(b)
        names = list(backends) or [default_backend(art_a), default_backend(art_b)]
        sides = [(art_a, names[0]), (art_b, names[-1])]
    regs = plugins.registries()
    for artifact, name in sides:
        backend = regs.backends.get(name)  # an unknown name fails here, with the nearest one
        why = backend.supports(artifact)
        if why:
            raise UsageError(f"backend {name} cannot run '{artifact.path.name}': {why}",
                             "Pick a backend for each file: --backend A_BACKEND,B_BACKEND")
        av = backend.available()
        if not av.ok:
            from .errors import MissingRuntimeError

            raise MissingRuntimeError(f"the {name} runtime", av.extra or backend.extra, av.reason)
    return sides


def pick_dataset(sides: Sequence[tuple[Artifact, str]], dataset: str | None) -> str:
    """--dataset, else the one the first side's (then the second's) manifest was trained on."""
    for artifact, _ in sides:
        if dataset:
            break
        dataset = artifact.manifest.extra.get("dataset") if artifact.manifest else None
    if not dataset:
        raise UsageError("no dataset to feed the models: neither has a manifest that names one",
                         "Pass --dataset NAME (a registered dataset, or your .csv or .npz file)")
    data = plugins.registries().datasets.get(dataset)
    av = data.available()
    if not av.ok:
        from .errors import DataUnavailableError

        raise DataUnavailableError(f"dataset '{dataset}' is not available here: {av.reason}",
                                   "Pass another with --dataset NAME")
    return data.name


def check_inputs_agree(sides: Sequence[tuple[Artifact, str]]) -> None:
    """Two models that do not take the same inputs cannot be compared: their manifests say so before anything
    runs (the traced specs say so again afterwards, for files without one)."""
    specs = [a.manifest.inputs if a.manifest else None for a, _ in sides]
    if specs[0] is not None and specs[1] is not None:
        _same_inputs(sides, [[s.to_dict() for s in one] for one in specs])  # type: ignore[union-attr]


def _same_inputs(sides: Sequence[tuple[Artifact, str]], specs: Sequence[Sequence[Mapping[str, Any]]]) -> None:
    """Refuse two sides whose inputs differ in number or per-sample shape (a dynamic dimension fits any size;
    formats may order several inputs differently, so each input of A needs a fitting one of B)."""
    a, b = ([tuple(s["shape"][1:]) for s in one] for one in specs)
    left = list(b)
    for shape in a:
        match = next((i for i, other in enumerate(left) if _fits(shape, other)), None)
        if match is None:
            break
        left.pop(match)
    else:
        if not left:
            return

    def text(shapes: Sequence[tuple[Any, ...]]) -> str:
        return ", ".join(str(["?" if d is None else d for d in shape]) for shape in shapes)

    raise UsageError(f"'{sides[0][0].path.name}' takes inputs of {text(a)} per sample and "
                     f"'{sides[1][0].path.name}' of {text(b)}: they cannot run on the same inputs",
                     "Compare two versions of the same model (e.g. its fp32 and int8 files)")


def _fits(x: Sequence[int | None], y: Sequence[int | None]) -> bool:
    return len(x) == len(y) and all(p is None or q is None or p == q for p, q in zip(x, y))


def diff(a: str | Path, b: str | Path | None = None, backends: Sequence[str] = (), dataset: str | None = None,
         samples: int = DEFAULT_SAMPLES, options: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Compare A with B (or A on two backends) layer by layer on real held-out samples; the report `toolkit diff`
    prints, as plain JSON values (an infinite SQNR as None, with `identical` telling +inf from -inf). `options`
    are backend options as `-o` gives them (`tflite.reference_kernels=true`, or a key every backend declares)."""
    from .child import run_in_child
    from .options import split_backend_options

    if samples < 1:
        raise UsageError(f"--samples {samples} is not a number of samples", "Give 1 or more")
    formats.detect(a)
    if b is not None:
        formats.detect(b)
    sides = plan(a, b, backends)
    per_backend = split_backend_options(dict(options or {}), sorted({be for _, be in sides})) if options else {}
    check_inputs_agree(sides)
    data = pick_dataset(sides, dataset)
    folder = tempfile.mkdtemp(prefix="toolkit-diff-")
    janitor.track_path(folder)
    try:
        meta, traces = [], []
        for i, (artifact, backend) in enumerate(sides):
            out = str(Path(folder) / f"side{i}.npz")
            try:
                got = run_in_child("toolkit.diff:trace_in_child", model=str(artifact.path), backend=backend,
                                   dataset=data, samples=samples, output=out, options=per_backend.get(backend, {}))
            except ToolkitError as e:
                e.message = f"{artifact.path.name} on {backend}: {e.message}"
                raise
            with np.load(out, allow_pickle=False) as arrays:
                traces.append({name: arrays[f"t{j}"] for j, name in enumerate(got["names"])})
            meta.append(got)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        janitor.untrack_path(folder)
    _same_inputs(sides, [m["inputs"] for m in meta])
    result = compare_traces(meta[0], traces[0], meta[1], traces[1])
    return {
        "schema": SCHEMA,
        "a": _side(sides[0], meta[0], len(traces[0])),
        "b": _side(sides[1], meta[1], len(traces[1])),
        "dataset": data, "split": "test", "samples": meta[0]["samples"],
        "rows": [_plain(r) for r in result["rows"]],
        "unmatched": result["unmatched"],
        "no_layer": result["no_layer"],
    }


def _side(side: tuple[Artifact, str], meta: Mapping[str, Any], tensors: int) -> dict[str, Any]:
    artifact, backend = side
    return {"file": str(artifact.path), "backend": backend, "format": meta["format"], "precision": meta["precision"],
            "tensors": tensors, "runs_on": meta.get("runs_on", {})}


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as strict JSON: an infinite SQNR is None, `identical` says whether it was +inf."""
    sqnr = row["sqnr_db"]
    return {**row, "sqnr_db": sqnr if math.isfinite(sqnr) else None, "identical": sqnr == math.inf}


def sqnr_of(row: Mapping[str, Any]) -> float:
    """A JSON row's SQNR as a number again (+inf or -inf for None)."""
    if row["sqnr_db"] is not None:
        return float(row["sqnr_db"])
    return math.inf if row["identical"] else -math.inf


# ---------------------------------------------------------------------------------------------- HTML
def render_html(result: Mapping[str, Any]) -> str:
    """One self-contained page: SQNR by layer in execution order as a bar chart (an SVG image inside the page),
    and the table, worst first."""
    import base64
    import html

    esc = html.escape
    a, b = result["a"], result["b"]
    title = f"{Path(a['file']).name} ({a['backend']}) vs {Path(b['file']).name} ({b['backend']})"
    svg = base64.b64encode(_sqnr_chart(result["rows"]).encode("utf-8")).decode("ascii")
    cells = "".join(
        f"<tr><td>{esc(r['layer'])}</td><td>{_db(r)}</td><td>{r['cosine']:.6f}</td><td>{r['rmse']:.4g}</td>"
        f"<td>{r['max_abs']:.4g}</td><td>{esc(str(r['shape']))}</td></tr>" for r in result["rows"])
    unmatched = result["unmatched"]
    notes = [f"only in A: {', '.join(unmatched['only_a'])}" if unmatched["only_a"] else "",
             f"only in B: {', '.join(unmatched['only_b'])}" if unmatched["only_b"] else "",
             *(f"{m['layer']}: {m['why']}" for m in unmatched["mismatched"])]
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes if n)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style>
</head><body>
<h1>{esc(title)}</h1>
<p>{esc(result['dataset'])}: {result['split']} split, {result['samples']} samples. A is the reference: SQNR is
10&nbsp;log10(power of A / power of B&minus;A) in dB, higher is closer; &infin; means equal.</p>
<img class="plot" data-plot="sqnr" alt="SQNR by layer" src="data:image/svg+xml;base64,{svg}">
<h2>Layers, worst first</h2>
<table><tr><th>layer</th><th>SQNR dB</th><th>cosine</th><th>RMSE</th><th>max abs</th><th>shape</th></tr>
{cells}</table>
{f"<h2>Not compared</h2><ul>{notes_html}</ul>" if notes_html else ""}
</body></html>
"""


def _db(row: Mapping[str, Any]) -> str:
    value = sqnr_of(row)
    return "&infin;" if value == math.inf else "-&infin;" if value == -math.inf else f"{value:.1f}"


def _sqnr_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """Bars of SQNR per layer in execution order; an equal layer (+inf) reaches the top, marked with its sign."""
    from html import escape

    ordered = sorted(rows, key=lambda r: r["order"])
    finite = [sqnr_of(r) for r in ordered if math.isfinite(sqnr_of(r))]
    top = max(10.0, math.ceil(max(finite + [0.0]) / 10) * 10)
    worst = {id(r) for r in sorted(ordered, key=sqnr_of)[:3]}
    bar, gap, left, height, base = 36, 12, 50, 260, 300
    width = left + len(ordered) * (bar + gap) + 160  # room for the last rotated label
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{base + 170}" '
             f'font-family="sans-serif" font-size="11">',
             f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#444"/>']
    for tick in range(0, int(top) + 1, max(10, int(top) // 5 // 10 * 10)):
        y = base - height * tick / top
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
                     f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#eee"/>')
    parts.append(f'<text x="12" y="{base - height / 2}" transform="rotate(-90 12 {base - height / 2})" '
                 'text-anchor="middle">SQNR (dB)</text>')
    for i, row in enumerate(ordered):
        value = sqnr_of(row)
        shown = top if value == math.inf else min(max(value, 0.0), top)
        h = height * shown / top
        x = left + gap / 2 + i * (bar + gap)
        colour = "#c0392b" if id(row) in worst and value != math.inf else "#2e86c1"
        label = "inf" if value == math.inf else "-inf" if value == -math.inf else f"{value:.1f}"
        parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar}" height="{h:.1f}" fill="{colour}"/>'
                     f'<text x="{x + bar / 2:.1f}" y="{base - h - 4:.1f}" text-anchor="middle">{label}</text>'
                     f'<text x="{x + bar / 2:.1f}" y="{base + 12}" transform="rotate(45 {x + bar / 2:.1f} '
                     f'{base + 12})">{escape(str(row["layer"])[-40:])}</text>')
    parts.append("</svg>")
    return "".join(parts)
