"""`toolkit explain`'s output: one PNG per sample (matplotlib's Agg canvas, the `report` extra), maps.npz, and one
self-contained index.html (no script, images as data: URIs), each written atomically."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import figures

if TYPE_CHECKING:
    from .explain import Explanation


def need_matplotlib() -> None:
    figures.need_matplotlib("the heat maps")


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
    ax.set_title(figures.mpl_text(title), fontsize=8)
    ax.set_axis_off()
    return im


def sample_png(ex: Explanation, i: int) -> bytes:
    """One sample: the image, then each model's map over it, titled with its prediction (and the correlation)."""
    sides = [ex.main] + ([ex.other] if ex.other else [])
    fig = figures.figure(2.6 * (1 + len(sides)), 2.9)
    axes = fig.subplots(1, 1 + len(sides))
    shown, cmap = _shown(ex.images[i])
    axes[0].imshow(shown, cmap=cmap, interpolation="nearest")
    axes[0].set_title(figures.mpl_text(f"test[{ex.indices[i]}]: {ex.name_of(ex.labels[i])}"), fontsize=8)
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
    return figures.png(fig)


def png_files(ex: Explanation) -> list[str]:
    return [f"sample-{index:05d}.png" for index in ex.indices]


# ---------------------------------------------------------------------------------------------- the page
CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
img.map{max-width:100%;height:auto}.bad{color:#c0392b;font-weight:bold}p.note{color:#555;max-width:60em}"""


def render_html(ex: Explanation, pngs: Sequence[bytes]) -> str:
    """One self-contained page: settings, then per sample its figure (a data: URI), label, predictions and the
    correlation. No script, nothing loaded from elsewhere."""
    from .explain import PICKED

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
