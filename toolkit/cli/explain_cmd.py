"""`toolkit explain`: saliency heat maps of an image classifier on real samples, as PNGs and one HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..explain import FILLS, METHODS, PICKS, SEARCH
from .options import echo_json, format_option, memory_limit_option, note, stdout_console, traceback_option


@click.command("explain")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--dataset", metavar="NAME",
              help="Samples from this dataset's test split, the first ones (default: the dataset in MODEL's "
                   "manifest). A name, or your own .npz file.")
@click.option("--compare", type=click.Path(path_type=Path), metavar="OTHER",
              help="A second model (e.g. the int8 file): its maps beside MODEL's, with their correlation.")
@click.option("--backend", metavar="NAME", help="The backend that runs MODEL (and OTHER, when it runs both); "
                                                 "default: the best installed one for the file.")
@click.option("--compare-backend", metavar="NAME", help="The backend that runs OTHER (default: its best one).")
@click.option("--samples", type=click.IntRange(min=1, max=1000), default=8, show_default=True,
              help="How many test samples to explain.")
@click.option("--pick", type=click.Choice(PICKS), default="first", show_default=True,
              help="Which test samples: the first ones, the first MODEL gets wrong, or the first on which MODEL and "
                   f"OTHER disagree (wrong and disagree search the first {SEARCH}).")
@click.option("--method", type=click.Choice(METHODS), default="occlusion", show_default=True,
              help="occlusion: through any backend (int8 files too); gradient: Keras models only.")
@click.option("--patch", type=click.IntRange(min=1), help="Occlusion patch side in pixels (default: about a "
                                                            "seventh of the image's smaller side).")
@click.option("--stride", type=click.IntRange(min=1), help="Occlusion patch step in pixels (default: half the patch).")
@click.option("--fill", type=click.Choice(FILLS), default="mean", show_default=True,
              help="What an occluding patch holds: the training images' mean per channel, or zero.")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads of the runtime.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="The folder for the PNGs, maps.npz and index.html (default: ./explain-NAME, NAME being MODEL's "
                   "file name without its suffix).")
@format_option
@memory_limit_option
@traceback_option
def explain(model: Path, dataset: str | None, compare: Path | None, backend: str | None,
            compare_backend: str | None, samples: int, pick: str, method: str, patch: int | None, stride: int | None,
            fill: str, threads: int | None, output: Path | None, fmt: str) -> None:
    """Saliency heat maps of image classifier MODEL on real samples: which pixels its prediction rests on.

    Occlusion slides a patch over each image, runs the occluded images through the backend (in a child
    process) and maps how much the predicted class's probability drops (the softmax of logits, when the
    model outputs logits; the output says which). With --compare OTHER (e.g. the int8 file), both maps of
    each sample explain the class MODEL predicts, side by side, with their Pearson correlation and both
    predictions: where int8 looks elsewhere. Writes one PNG per sample, maps.npz and a self-contained
    index.html (images embedded) that opens in any browser.

    \b
    Examples:
      toolkit explain out/cnn.onnx --compare out/cnn_int8.tflite --dataset fashion-mnist
      toolkit explain out/cnn.onnx --compare out/cnn_int8.onnx --pick disagree
      toolkit explain out/cnn.keras --method gradient --samples 4 --output maps/
      toolkit explain model.onnx --dataset my_images.npz --patch 4 --stride 2 --fill zero --format json
    """
    from .. import explain as ex_mod
    from .. import explain_page as page
    from ..errors import UsageError

    if compare_backend and compare is None:
        raise UsageError("--compare-backend is for the model of --compare", "Add --compare OTHER, or drop it")
    if method == "gradient" and (patch or stride):
        raise UsageError("--patch and --stride are for --method occlusion", "Drop them, or use --method occlusion")
    page.need_matplotlib()
    folder = output or Path(f"explain-{model.stem}")
    _check_folder(folder)
    from rich.console import Console

    from .progress import steps_progress

    err_console = Console(stderr=True)
    with steps_progress(err_console, samples) as step:
        found = ex_mod.explain(model, dataset, compare, backend, compare_backend, samples, method, patch, stride,
                               fill, threads, pick, on_start=lambda total: step("loading", total=total),
                               on_sample=lambda name, i: step(f"{name}: sample {i + 1}"))
    folder.mkdir(parents=True, exist_ok=True)
    files = page.write_outputs(found, folder)
    result = found.to_dict(folder, files)
    for text in found.notes:
        note(text)
    if fmt == "json":
        echo_json(result)
        return
    show(result)
    click.echo(f"Wrote {folder / 'index.html'} and {len(files)} PNG(s) in {folder}.", err=True)


def _check_folder(folder: Path) -> None:
    """An output folder that cannot be made or written is refused before any model runs."""
    import os

    from ..errors import UsageError

    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output '{folder}' is a file", "Name a folder for the maps")
    parent = folder if folder.exists() else next((p for p in folder.absolute().parents if p.exists()), Path("/"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write in '{parent}' (permission denied)", "Pick another --output")


def show(result: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    model = result["model"]
    what = (f"occlusion: patch {result['patch']}, stride {result['stride']}, {result['positions']} positions per "
            f"sample; fill: {result['fill_text']}" if result["method"] == "occlusion"
            else "gradient: |d probability / d pixel|, the largest over channels")
    from ..explain import PICKED

    console.print(f"{Path(model['file']).name} on {model['backend']} ({model['scores']}), {result['dataset']} "
                  f"test split, {PICKED[result['pick']]}", markup=False, highlight=False)
    console.print(what, markup=False, highlight=False)
    compare = result.get("compare")
    table = Table()
    for col in ("sample", "label", Path(model["file"]).name) + ((Path(compare["file"]).name, "correlation")
                                                               if compare else ()):
        table.add_column(col, justify="right" if col == "correlation" else "left")
    for row in result["samples"]:
        cells = [f"test[{row['index']}]", row["label_name"], _pred(row["model"], row["label"])]
        if compare:
            r = row["correlation"]
            cells += [_pred(row["compare"], row["label"]), "undefined" if r is None else f"{r:.3f}"]
        table.add_row(*cells)
    console.print(table)
    if compare:
        mean = result["mean_correlation"]
        console.print(f"{Path(compare['file']).name} on {compare['backend']} ({compare['scores']}): mean correlation "
                      f"{'undefined' if mean is None else f'{mean:.3f}'}, predictions agree on "
                      f"{result['agreement']:.0%}", markup=False, highlight=False)


def _pred(pred: dict[str, Any], label: int) -> str:
    mark = "" if pred["predicted"] == label else " (wrong)"
    return f"{pred['predicted_name']} {pred['probability']:.0%}{mark}"
