"""`toolkit bench`: each (model, backend) pair through a runner (a child process here); typed records out."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from ..errors import UsageError
from .options import memory_limit_option, note, plugin_command, plugin_option, stdout_console, traceback_option


def target_templates(template, names, ssh_config, remote_python):
    """One request template per --target: its runner (the connection's kind), its name and its connection."""
    from dataclasses import replace

    from .. import plugins

    regs = plugins.registries()
    regs.targets.check_user_profiles()
    out, seen = [], set()
    for name in names:
        target = regs.targets.get(name)  # a profile, or a URL made into one; unknown names get a "did you mean"
        if target.name in seen:
            raise UsageError(f"--target {name} is given twice", "Give each target once")
        seen.add(target.name)
        conn = dict(target.connection)
        kind = conn.get("kind", "local")
        if kind != "local":
            python = remote_python or target.python
            runs_no_python = f"{target.name} runs no Python" if not python else ""
            if kind not in regs.runners:
                raise UsageError(f"target {target.name} is reached over '{kind}', and no runner for it is installed"
                                 + (f" ({runs_no_python})" if runs_no_python else ""),
                                 f"Install a runner plugin for {kind} (docs/writing-a-runner-plugin.md), or check a "
                                 f"model against it without running it: toolkit targets check MODEL --target "
                                 f"{target.name}")
            if not python and kind == "ssh":  # the ssh runner's agent is Python; another runner may need none
                raise UsageError(f"target {runs_no_python}, so the {kind} runner cannot measure on it",
                                 f"Check a model against it instead: toolkit targets check MODEL --target {target.name}")
            conn["python"] = python
            usable = regs.runners.get(kind).available()
            if not usable.ok:
                raise UsageError(f"the {kind} runner for target {target.name} is not available: {usable.reason}",
                                 "Install what it needs on this machine")
            if ssh_config:
                conn["ssh_config"] = str(ssh_config.resolve())
            elif conn.get("ssh_config"):
                conn["ssh_config"] = str(Path(conn["ssh_config"]).expanduser())
        out.append(replace(template, runner=kind, target=target.name, connection=conn))
    return out


def parse_batches(value: str) -> list[int]:
    """--batch 1,8,32 as [1, 8, 32]: a sweep; each size measured as its own pair."""
    sizes = []
    for part in str(value).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise UsageError(f"--batch {value}: '{part}' is not a batch size (a whole number from 1)",
                             "Give one size or a list, e.g. --batch 1,8,32")
        if int(part) in sizes:
            raise UsageError(f"--batch {value} names {part} twice", "Give each size once")
        sizes.append(int(part))
    return sizes


def parse_cpus(value: str) -> list[int]:
    """--pin 0-3,6 as [0, 1, 2, 3, 6]."""
    import re

    cpus: list[int] = []
    if not value.strip():
        raise UsageError("--pin is empty", "Give CPUs like 0, 0-3 or 0,2")
    for part in value.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f"--pin {value}: '{part}' is not a CPU or a range", "Give CPUs like 0, 0-3 or 0,2")
        cpus += range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1)
    return sorted(set(cpus))


OFFLINE_BATCH = 32


def fixed_batch(model: str) -> int | None:
    """The batch a model's file fixes (its first input's first dimension), or None when it is dynamic or unknown."""
    from ..artifact import Artifact
    from ..benchmark.measure import declared_specs

    try:
        specs = declared_specs(Artifact.open(model))
    except Exception:  # noqa: BLE001 - the pair's own child says what is wrong with the file
        return None
    first = specs[0][0] if specs and specs[0] else None
    return first.shape[0] if first is not None and first.shape and first.shape[0] is not None else None


def batch_sizes(model: str, batches: list[int], offline_default: bool) -> list[int]:
    """The batch sizes to measure `model` at: the offline scenario's 32 by default; a fixed batch runs as it is
    (batch 1 means "as the file says"), so a sweep that names it too measures it once."""
    fixed = fixed_batch(model)
    if offline_default:
        return [1 if fixed else OFFLINE_BATCH]
    if not fixed:
        return batches
    sizes = list(dict.fromkeys(fixed if b == 1 else b for b in batches))
    return [1 if b == fixed else b for b in sizes]  # the other sizes fail in the child, with the fix


def save_run(records, history_path, label):
    """Store the run in the history; its run id."""
    import shlex

    from ..history import model_hashes, open_history

    with open_history(history_path) as history:
        return history.save_run(records, command=shlex.join(["toolkit", *sys.argv[1:]]), label=label,
                                sha256=model_hashes(records))


@plugin_command("bench", kinds=("backends",))
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", "backends", multiple=True, metavar="NAME",
              help="Backend to run on; repeat for several. Default: the best installed one per model.")
@click.option("--all-backends", is_flag=True, help="Run on every installed backend that can run each model.")
@click.option("--provider", metavar="NAME", help="Execution provider, e.g. cpu, cuda, tensorrt (onnxruntime).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Intra-op threads (default: the runtime's; with --pin, one per pinned CPU).")
@click.option("--batch", "batch_text", metavar="N[,N...]",
              help="Batch size for a dynamic batch dimension; a list (1,8,32) sweeps, one pair per size. "
                   "Default: 1, or 32 with --scenario offline (a model's fixed batch stays as it is).")
@click.option("--scenario", type=click.Choice(["single-stream", "offline"]), default="single-stream",
              show_default=True,
              help="MLPerf's scenarios: single-stream (one query at a time; p90 latency is the headline) or offline "
                   "(all samples at once, batched; samples per second is the headline).")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=DIMS",
              help="Full shape of an input with other dynamic dimensions, e.g. input_ids=1x128.")
@click.option("--inputs", "inputs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An .npz of real inputs, keyed by input name (instead of generated ones).")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True,
              help="Timed runs: at least this many, and at least --min-seconds long.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=1.0, show_default=True,
              envvar="TOOLKIT_BENCH_MIN_SECONDS", help="Time runs for at least this long [$TOOLKIT_BENCH_MIN_SECONDS].")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Untimed runs first: at least this many, and at least --warmup-seconds long.")
@click.option("--warmup-seconds", type=click.FloatRange(min=0), default=0.5, show_default=True,
              envvar="TOOLKIT_BENCH_WARMUP_SECONDS", help="Warm up for at least this long [$TOOLKIT_BENCH_WARMUP_SECONDS].")
@click.option("--windows", type=click.IntRange(min=1, max=100), default=5, show_default=True,
              help="Split the timed runs in this many windows; windows whose medians differ by over 10% mark the "
                   "result unstable.")
@click.option("--max-seconds", type=click.FloatRange(min=0.1), help="Stop timing after this long (>= 10 runs).")
@click.option("--processes", type=click.IntRange(min=1, max=100), default=1, show_default=True,
              help="Measure each pair in this many fresh processes, one after another, and pool them: the "
                   "spread between processes enters the statistics and `toolkit compare`. Use 5 or more for runs "
                   "you will compare.")
@click.option("--pin", "pin_text", metavar="CPUS",
              help="Pin the measuring process to these CPUs, e.g. 0 or 2-3 (Linux; on a --target, the device's).")
@click.option("--dataset", metavar="NAME",
              help="Also evaluate on this dataset's held-out split (top-1 for classifiers, MAE/RMSE for regression).")
@click.option("--target", "target_names", multiple=True, metavar="NAME_OR_URL",
              help="Run on a device: a profile's name (`toolkit targets`) or ssh://[user@]host[:port] (a Host alias "
                   "from your ssh config works too). Repeat for several; they run in parallel.")
@click.option("--ssh-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The ssh config file for --target over ssh (default: ~/.ssh/config).")
@click.option("--remote-python", metavar="PATH",
              help="The device's Python (default: the profile's `python`, else python3); it needs numpy and the "
                   "runtime, not the toolkit.")
@click.option("--strict-provider", is_flag=True,
              help="A provider that falls back to another (no GPU, missing libraries) is an error, not a flagged "
                   "result.")
@click.option("--save", is_flag=True, help="Keep the run in the history (see `toolkit history`); JSON gets its run_id.")
@click.option("--history", "history_path", type=click.Path(dir_okay=False, path_type=Path), envvar="TOOLKIT_HISTORY",
              help="The history database for --save [$TOOLKIT_HISTORY; default ~/.local/share/edge-toolkit/"
                   "history.sqlite].")
@click.option("--label", metavar="TEXT", help="A label for the saved run (e.g. a commit), shown by `toolkit history`.")
@click.option("--runner", default=None, metavar="NAME",
              help="Where the benchmark runs without --target: local (the default), or one a plugin adds.")
@plugin_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table",
              show_default=True, help="Output format: json ({\"results\": [...]}) and csv are for scripts.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results to a file: .json, .csv, .md, or anything else for the plain table.")
@memory_limit_option
@traceback_option
def bench(models, backends, all_backends, provider, threads, batch_text, scenario, shapes, inputs_file, runs,
          min_seconds, warmup, warmup_seconds, windows, max_seconds, processes, pin_text, dataset, target_names,
          ssh_config, remote_python, strict_provider, save, history_path, label, runner, plugin_options, fmt,
          output) -> None:
    """Benchmark MODELS (.tflite, .onnx, .keras, or a format a plugin adds) on one or more backends.

    Each (model, backend) pair runs in a child process that preloads its inputs and times only the
    runtime's own call (invoke() or run()), after warm-up runs. Outputs are checked against the model's
    declared names, dtypes and shapes: a wrong answer is an error, never a number. Inputs are made per
    declared dtype and shape; a dynamic batch dimension takes --batch, other dynamic dimensions take --shape.
    With several --backend, each model runs on those that can run it; the others are listed as skipped.

    \b
    Examples:
      toolkit bench model.tflite
      toolkit bench cnn.onnx cnn_int8.tflite --backend onnxruntime --backend tflite --dataset fashion-mnist
      toolkit bench bert.onnx --shape input_ids=1x128 --shape attention_mask=1x128 --format json
      toolkit bench cnn_int8.tflite -o xnnpack=false
      toolkit bench cnn_int8.tflite --target raspberry-pi-4 --target ssh://pi@10.0.0.7 --dataset fashion-mnist
      toolkit bench cnn.onnx --batch 1,8,32 --scenario offline --pin 1 --save --label "$(git rev-parse --short HEAD)"
      toolkit bench cnn.onnx --provider cuda --strict-provider

    The protocol: warm-up of at least --warmup runs and --warmup-seconds, then at least --runs timed runs and
    --min-seconds, in --windows windows; p50/p90/p99, mean, std, min, max, MAD and CV; a result is marked
    unstable (~) when its robust spread (1.4826 x MAD / median) or its windows' disagreement passes 10%, or its
    mean is over 25% above its median. --processes N pools N fresh processes (use it for runs you compare).
    """
    from rich.console import Console

    from .. import plugins
    from ..benchmark.runner import ok_records, plan, run_all
    from ..inputs import parse_shape_overrides
    from ..options import parse_pairs, resolve_options
    from ..records import BenchRequest
    from . import render

    ctx = click.get_current_context()
    typed = lambda name: ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE  # noqa: E731
    if (label or (history_path and typed("history_path"))) and not save:  # $TOOLKIT_HISTORY alone asks nothing
        raise UsageError("--label and --history are for saved runs", "Add --save")
    if scenario == "offline" and inputs_file:
        raise UsageError("--scenario offline batches generated inputs, and --inputs fixes them",
                         "Drop --inputs, or use --scenario single-stream")
    if max_seconds is not None and max_seconds < min_seconds and not typed("min_seconds"):
        min_seconds = max_seconds  # only the cap was given: it wins over the default minimum
    if max_seconds is not None and max_seconds < min_seconds:
        raise UsageError(f"--max-seconds {max_seconds:g} is shorter than --min-seconds {min_seconds:g}",
                         "Lower --min-seconds, or raise --max-seconds")
    batches = parse_batches(batch_text) if batch_text else [1]
    if inputs_file and (shapes or batch_text):
        raise UsageError("--inputs fixes the input shapes, so --shape and --batch cannot be used with it",
                         "Drop --shape/--batch, or drop --inputs")
    if all_backends and backends:
        raise UsageError("--all-backends and --backend contradict each other", "Use one of them")
    if output:  # fail before the benchmark, not after it
        output.parent.mkdir(parents=True, exist_ok=True)
        try:  # the real test, as root too: can a file be made beside it?
            tempfile.TemporaryFile(dir=output.parent).close()
        except OSError as e:
            raise UsageError(f"--output '{output}' cannot be written ({e.strerror})",
                             "Pick a file in a folder you can write to") from None
    regs = plugins.registries()
    if dataset:
        regs.datasets.get(dataset)
    if target_names and runner:
        raise UsageError("--runner and --target contradict each other: a target's connection picks its runner",
                         "Drop --runner")
    if (ssh_config or remote_python) and not target_names:
        raise UsageError("--ssh-config and --remote-python are for benchmarks on a device", "Add --target NAME_OR_URL")
    regs.runners.get(runner or "local")
    if save:  # a history that cannot be used is refused before anything is measured
        from ..history import open_history

        open_history(history_path).close()
    pin = parse_cpus(pin_text) if pin_text is not None else None
    if pin and not target_names:  # a device's CPUs are checked on the device
        from ..benchmark.protocol import ProtocolError, check_cpus

        try:
            check_cpus(pin)
        except ProtocolError as e:
            raise UsageError(str(e), "Pick CPUs from that list") from None
    if pin and threads is None:
        # One runtime thread per pinned CPU. Left to itself, ONNX Runtime starts a thread per core of the machine
        # and sets each one's affinity itself, so a worker would run outside the pinned CPUs.
        threads = len(pin)
    for name in backends:
        regs.backends.get(name)
    pairs = parse_pairs(plugin_options)
    template = BenchRequest(model="", backend="", provider=provider, threads=threads, batch=batches[0],
                            shapes={k: list(v) for k, v in parse_shape_overrides(shapes).items()},
                            inputs=str(inputs_file) if inputs_file else None, runs=runs, warmup=warmup,
                            min_seconds=min_seconds, warmup_seconds=warmup_seconds, windows=windows,
                            max_seconds=max_seconds, dataset=dataset, runner=runner or "local", scenario=scenario,
                            pin=pin, strict_provider=strict_provider, processes=processes)
    requests, problems = [], []
    for where in target_templates(template, target_names, ssh_config, remote_python) if target_names else [template]:
        some, bad = plan([str(m) for m in models], list(backends), where, every_capable=all_backends)
        offline_default = scenario == "offline" and not batch_text
        sizes = {m: batch_sizes(m, batches, offline_default) for m in dict.fromkeys(req.model for req in some)}
        requests += [replace(req, batch=size) for req in some for size in sizes[req.model]]
        problems += bad
    from ..options import split_backend_options

    per_backend = split_backend_options(pairs, sorted({req.backend for req in requests})) if pairs else {}
    for name, given in per_backend.items():
        resolve_options(regs.backends.get(name), given)  # refuse a bad value before any child starts
    for req in requests:
        req.options = per_backend.get(req.backend, {})
    err_console = Console(stderr=True)
    records = list(problems)
    interrupted: KeyboardInterrupt | None = None
    if requests:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
            task = progress.add_task("benchmarking", total=len(requests))
            try:
                run_all(requests, on_done=lambda record: progress.advance(task), records=records)
            except KeyboardInterrupt as e:  # report what finished, in the chosen format, then stop
                interrupted = e

    ok = ok_records(records)
    failed = [r for r in records if r.status == "error"]
    skipped = [r for r in records if r.status == "skipped"]
    run_id, save_error = None, None
    if save and records and interrupted is None:
        from ..errors import ToolkitError

        try:
            run_id = save_run(records, history_path, label)
        except ToolkitError as e:  # the results are shown and written all the same, then the error
            save_error = e
    extra = {"run_id": run_id} if save else {}
    if fmt == "json":
        sys.stdout.write(render.to_json(records, **extra))
    elif fmt == "csv":
        sys.stdout.write(render.to_csv(records))
    elif fmt == "markdown":
        sys.stdout.write(render.to_markdown(records))
    elif ok:
        stdout_console().print(render.rich_table(ok))
    if output:
        from ..atomic import write_text

        write_text(output, render.for_file(records, output, **extra))
    for r in ok:
        where = (f"{Path(r.model).name}" + (f" x{r.batch}" if r.batch and r.batch != 1 else "") + f" on {r.backend}"
                 + (f" at {r.target}" if r.target else ""))
        for text in r.notes:
            note(f"{Path(r.model).name}: {text}")
        fallback = r.provider.get("fallback")
        if fallback:
            note(f"{where}: {fallback}", "Warning")
        if r.unstable and fmt in ("table", "markdown"):
            why = "; ".join(r.stability.get("reasons") or []) or "too few runs"
            note(f"{where}: timings are unstable (~: {why}); measure longer (--min-seconds) on a quiet machine, "
                 "or pin it (--pin)")
    for r in skipped:
        note(r.error, "Skipped")
    if run_id is not None and fmt != "json":
        where_saved = f" --history {history_path}" if history_path and typed("history_path") else ""
        compare = f"; compare it with the one before: toolkit compare latest~1 latest{where_saved}" if run_id > 1 else ""
        note(f"saved as run {run_id}{compare}")
    for r in failed:
        if r.details:  # --traceback: the child's stack or the crashed runtime's own output
            click.echo(r.details.rstrip(), err=True)
        click.echo(f"Error: {r.error}", err=True)
    if interrupted is not None:
        done = len(records) - len(problems)
        finished = "the results above are the finished ones" if done else "none had finished"
        unsaved = " The run was not saved (--save keeps whole runs only)." if save else ""
        click.echo(f"Stopped after {done} of {len(requests)} pairs; {finished}.{unsaved}", err=True)
        raise interrupted
    if save_error is not None:
        raise save_error
    if failed:
        sys.exit(max(r.exit_code for r in failed))
    if not ok:  # everything was skipped: nothing was measured, which a script must not take for success
        sys.exit(max((r.exit_code for r in skipped), default=2))
