"""`toolkit quickstart`: the main job, offline, in one command."""

from __future__ import annotations

from pathlib import Path

import click

from .options import (echo_json, format_option, keep_failed_option, memory_limit_option, stdout_console,
                      traceback_option)


@click.command("quickstart")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("quickstart-out"), show_default=True, help="Folder for artifacts, results.json, report.md.")
@click.option("--dataset", metavar="NAME", help="Image dataset (default: fashion-mnist, else digits).")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Training epochs (default: what suits the dataset, 2 for fashion-mnist, 12 for digits).")
@click.option("--limit", type=click.IntRange(min=1), help="Train on only the first N training samples.")
@click.option("--runs", type=click.IntRange(min=10), default=200, show_default=True,
              help="Timed runs per (artifact, backend) pair, after 20 warm-up runs.")
@format_option
@keep_failed_option
@memory_limit_option
@traceback_option
def quickstart(output_dir, dataset, epochs, limit, runs, fmt, keep_failed) -> None:
    """Train the CNN, make fp32 and int8 TFLite and ONNX artifacts, check each against its source, then
    evaluate and benchmark every artifact on every backend that can run it. Works offline. The files of an
    earlier quickstart in the output folder are replaced (removed as the run starts); nothing else there is
    touched. Interrupted, it prints what finished and writes no results.json.

    \b
    Example:
      toolkit quickstart --output quickstart-out
    """
    from rich.console import Console

    from ..quickstart import QuickstartInterrupted, failed_checks, run_quickstart
    from .progress import steps_progress, training_progress

    err = Console(stderr=True)
    try:
        with steps_progress(err, total=15) as step, training_progress(err, "  epochs") as (on_start, on_batch):
            result = run_quickstart(output_dir, dataset=dataset, epochs=epochs, limit=limit, runs=runs,
                                    keep_failed=keep_failed, step=step, on_start=on_start, on_batch=on_batch)
    except QuickstartInterrupted as stopped:  # what finished, in the chosen format; then exit 128 + signal
        show(stopped.partial, fmt, output_dir, err, stopped_during=stopped.during)
        raise
    show(result, fmt, output_dir, err)
    problems = failed_checks(result)
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        raise SystemExit(1)


def show(result, fmt: str, output_dir: Path, err, stopped_during: str | None = None) -> None:
    from ..quickstart import SUMMARY_COLUMNS, failed_checks, summary_cells

    for note in result.notes:
        err.print(f"[yellow]Note:[/] {note}", soft_wrap=True)
    made = [a.path.name for a in result.artifacts]
    if fmt == "json":
        echo_json({"dataset": result.dataset, "summary": result.summary, "problems": failed_checks(result),
                   "results": [r.to_dict() for r in result.records],
                   **({"stopped_during": stopped_during, "artifacts": made} if stopped_during else {})})
        return
    if result.summary:
        from rich.table import Table

        t = result.training
        table = Table(title=f"CNN on {result.dataset}: Keras test accuracy {t['accuracy'] * 100:.2f}%",
                      title_justify="left")
        for col in SUMMARY_COLUMNS:
            table.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
        for row in result.summary:
            table.add_row(*summary_cells(row))
        stdout_console().print(table)
    if stopped_during:
        trained = "trained the model, " if result.training else ""
        click.echo(f"Stopped while {stopped_during}: {trained}made {', '.join(made) or 'no artifact'}; "
                   f"{len(result.records)} benchmark(s) finished; no results.json or report.md written", err=True)
    else:
        click.echo(f"Wrote {output_dir}/results.json and {output_dir}/report.md ({result.seconds:.0f} s in all)")
