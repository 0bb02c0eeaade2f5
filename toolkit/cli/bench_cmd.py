"""`toolkit bench`: each (model, backend) pair in its own child process; records in one schema."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import stdout_console

from ..errors import UsageError


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", "backends", multiple=True, metavar="NAME",
              help="Backend to run on; repeat for several. Default: the best installed one per model.")
@click.option("--all-backends", is_flag=True, help="Run on every installed backend that can run each model.")
@click.option("--provider", metavar="NAME", help="Execution provider, e.g. cpu, cuda, tensorrt (onnxruntime).")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads (default: the runtime's).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size for a dynamic batch dimension.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=DIMS",
              help="Full shape of an input with other dynamic dimensions, e.g. input_ids=1x128.")
@click.option("--inputs", "inputs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An .npz of real inputs, keyed by input name (instead of generated ones).")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed runs.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed runs first.")
@click.option("--max-seconds", type=click.FloatRange(min=0.1), help="Stop timing after this long (>= 10 runs).")
@click.option("--dataset", metavar="NAME", help="Also measure top-1 accuracy on this dataset's held-out split.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="Output format: json ({\"results\": [...]}) and csv are for scripts.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results to a file: .json, .csv, or anything else for the table.")
def bench(models, backends, all_backends, provider, threads, batch, shapes, inputs_file, runs, warmup,
          max_seconds, dataset, fmt, output) -> None:
    """Benchmark MODELS (.tflite, .onnx, .keras) on one or more backends.

    Each (model, backend) pair runs in a child process that preloads its inputs and times only the
    runtime's own call (invoke() or run()), after warm-up runs. Inputs are made per declared dtype and
    shape; a dynamic batch dimension takes --batch, other dynamic dimensions take --shape. A crash or error
    in one pair is reported and the others carry on.

    \b
    Examples:
      toolkit bench model.tflite
      toolkit bench cnn.onnx cnn_int8.onnx --backend onnxruntime --backend reference --dataset fashion-mnist
      toolkit bench bert.onnx --shape input_ids=1x128 --shape attention_mask=1x128 --format json
    """
    from rich.console import Console

    from .. import plugins
    from ..benchmark.measure import BenchRequest
    from ..benchmark.runner import plan, run_all
    from ..inputs import parse_shape_overrides
    from . import render

    if inputs_file and (shapes or batch != 1):
        raise UsageError("--inputs fixes the input shapes, so --shape and --batch cannot be used with it",
                         "Drop --shape/--batch, or drop --inputs")
    if all_backends and backends:
        raise UsageError("--all-backends and --backend contradict each other", "Use one of them")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)  # fail before the benchmark, not after it
    if dataset:
        plugins.registries().datasets.get(dataset)
    for name in backends:
        plugins.registries().backends.get(name)
    template = BenchRequest(model="", backend="", provider=provider, threads=threads, batch=batch,
                            shapes={k: list(v) for k, v in parse_shape_overrides(shapes).items()},
                            inputs=str(inputs_file) if inputs_file else None, runs=runs, warmup=warmup,
                            max_seconds=max_seconds, dataset=dataset)
    requests, errors = plan([str(m) for m in models], list(backends), template, every_capable=all_backends)
    err_console = Console(stderr=True)
    records = list(errors)
    if requests:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
            task = progress.add_task("benchmarking", total=len(requests))

            def done(record: dict) -> None:
                progress.advance(task)

            records += run_all(requests, on_done=done)

    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    if fmt == "json":
        sys.stdout.write(render.to_json(records))
    elif fmt == "csv":
        sys.stdout.write(render.to_csv(records))
    elif ok:
        stdout_console().print(render.bench_table(ok))
    if output:
        from ..atomic import write_text

        suffix = output.suffix.lower()
        text = (render.to_json(records) if suffix == ".json" else render.to_csv(records) if suffix == ".csv"
                else render.plain_table(ok))
        write_text(output, text)
    for r in ok:
        for note in r.get("notes") or []:
            err_console.print(f"[yellow]Note:[/] {Path(r['model']).name}: {note}", soft_wrap=True, highlight=False)
        fallback = (r.get("provider") or {}).get("fallback")
        if fallback:
            err_console.print(f"[yellow]Warning:[/] {Path(r['model']).name} on {r['backend']}: {fallback}",
                              soft_wrap=True, highlight=False)
        if r.get("unstable") and fmt == "table":
            err_console.print(f"[yellow]Note:[/] {Path(r['model']).name} on {r['backend']}: timings are unstable "
                              "(p90 > 1.3 x p50 or < 10 runs); use more --runs on a quiet machine",
                              soft_wrap=True, highlight=False)
    for r in failed:
        if r.get("details"):  # --traceback: the child's stack or the crashed runtime's own output
            click.echo(r["details"].rstrip(), err=True)
        click.echo(f"Error: {r['error']}", err=True)
    if failed:
        sys.exit(max(r.get("exit_code", 1) for r in failed))
