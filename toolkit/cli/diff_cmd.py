"""`toolkit diff`: per-layer error between two models (fp32 and int8) or one model on two backends."""

from __future__ import annotations

from pathlib import Path

import click

from .options import (OutputFile, echo_json, format_option, memory_limit_option, note, plugin_option, stdout_console,
                      traceback_option)

SHOWN_NAMES = 6  # unpaired layers named in a note before "and N more"


@click.command("diff")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path), required=False)
@click.option("--backend", "backend_text", metavar="NAME[,NAME2]",
              help="The backend of both files, or one per side (A's,B's); with one file, the two to compare. "
                   "Default: each file's default backend.")
@click.option("--dataset", metavar="NAME",
              help="Feed the first --samples of this dataset's held-out split (default: the dataset in A's "
                   "manifest, else B's); a .csv or .npz file works too.")
@click.option("--samples", type=click.IntRange(min=1, max=100_000), default=100, show_default=True,
              help="How many held-out samples to run.")
@plugin_option
@format_option
@click.option("--html", "html_path", type=OutputFile("diff.html"), help="Also write an HTML view: SQNR by layer.")
@memory_limit_option
@traceback_option
def diff(a: Path, b: Path | None, backend_text: str | None, dataset: str | None, samples: int,
         plugin_options: tuple[str, ...], fmt: str, html_path: Path | None) -> None:
    """Compare B with A layer by layer on real inputs: each layer's output error (max abs, RMSE, cosine
    similarity, SQNR in dB), worst layer first, then the outputs. A is the reference. Give two files (an fp32
    model and its int8 version, on their default backend or --backend NAME), or one file and two backends
    (--backend onnxruntime,reference). Layers are named from the files' tensor names, the same for a .tflite and
    an .onnx made from one Keras model; layers one side lacks are listed, not guessed. Each side runs in its own
    child process, on a backend that can give per-layer tensors (tflite, onnxruntime, reference).

    \b
    Examples:
      toolkit diff out/cnn.onnx out/cnn_int8.onnx
      toolkit diff out/cnn.tflite out/cnn_int8.tflite --format json
      toolkit diff out/cnn_int8.onnx --backend onnxruntime,reference --html diff.html
      toolkit diff out/cnn_int8.tflite --backend tflite,reference -o tflite.reference_kernels=true
    """
    from ..diff import diff as run_diff
    from ..diff import render_html

    from ..options import parse_pairs

    backends = [n.strip() for n in (backend_text or "").split(",") if n.strip()]
    result = run_diff(a, b, backends, dataset, samples, parse_pairs(plugin_options))
    if html_path is not None:
        from ..atomic import write_text

        write_text(html_path, render_html(result))
    if fmt == "json":
        echo_json(result)
    else:
        show(result)
    if html_path is not None:
        click.echo(f"Wrote {html_path}.", err=True)


def show(result: dict) -> None:
    from rich.table import Table

    from ..diff import sqnr_of

    a, b = result["a"], result["b"]
    console = stdout_console()
    title = (f"{Path(a['file']).name} ({_ran_on(a)}) vs {Path(b['file']).name} ({_ran_on(b)}) on "
             f"{Path(result['dataset']).name}:test[:{result['samples']}], worst first")
    console.print(title, markup=False, highlight=False)
    table = Table()
    for col, justify in (("layer", "left"), ("SQNR dB", "right"), ("cosine", "right"), ("RMSE", "right"),
                         ("max abs", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in result["rows"]:
        value = sqnr_of(row)
        sqnr = "inf" if value == float("inf") else "-inf" if value == float("-inf") else f"{value:.1f}"
        table.add_row(row["layer"], sqnr, f"{row['cosine']:.6f}", f"{row['rmse']:.4g}", f"{row['max_abs']:.4g}")
    console.print(table, markup=False, highlight=False)
    unmatched = result["unmatched"]
    for side, key in (("A", "only_a"), ("B", "only_b")):
        if unmatched[key]:
            note(f"only in {side} ({Path(result[side.lower()]['file']).name}), not compared: {_names(unmatched[key])}")
    for item in unmatched["mismatched"]:
        note(f"{item['layer']} not compared: {item['why']}")
    left = {side: len(names) for side, names in result["no_layer"].items() if names}
    if left:
        note(f"tensors of no layer, with no partner of the same name, not compared: "
             f"{', '.join(f'{n} in {side.upper()}' for side, n in left.items())} (--format json lists them)")
    if unmatched["outputs"]:
        note(f"outputs without a partner, not compared: {_names(unmatched['outputs'])}")
    if not result["rows"]:
        note("no layer could be paired: the two files name their tensors differently")


def _ran_on(side: dict) -> str:
    """The backend, and its kernels when they are not its default (LiteRT's reference kernels)."""
    delegate = (side.get("runs_on") or {}).get("delegate")
    return f"{side['backend']}, {delegate}" if delegate == "reference kernels" else side["backend"]


def _names(names: list[str]) -> str:
    more = len(names) - SHOWN_NAMES
    return ", ".join(names[:SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")
