"""The main job: train the CNN offline, make fp32 and int8 artifacts in every format the installed converters make
(TFLite and ONNX with the built-in plugins), check each against its source, evaluate and benchmark each on every backend that can run it, and write results.json and report.md."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import __version__, atomic, operations, plugins
from .artifact import Artifact
from .benchmark.protocol import environment
from .benchmark.runner import capable_backends, run_pair
from .errors import ToolkitError
from .records import BenchRecord, BenchRequest, Record
from .cli.render import markdown_table
from .units import fmt_us, human_size

MODEL = "cnn"  # the main job is the CNN's; its plugin says which datasets suit it


@dataclass
class QuickstartResult:
    output_dir: Path
    dataset: str
    notes: list[str]
    training: dict[str, Any]
    artifacts: list[Artifact]
    records: list[Record]
    summary: list[dict[str, Any]] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)  # conversions or quantizations that did not pass
    seconds: float = 0.0


def choose_dataset(requested: str | None) -> tuple[str, list[str]]:
    """The requested dataset, else the model's default, else its first fallback that is on this machine."""
    return operations.dataset_for(MODEL, requested)


# A quantized artifact may lose at most this much top-1 accuracy against the fp32 one, on the same backend.
MAX_ACCURACY_DROP = 0.01
SUMMARY_COLUMNS = ("artifact", "backend", "size", "accuracy", "p50", "p90", "speed-up vs fp32")


def summarise(records: list[Record]) -> list[dict[str, Any]]:
    """One row per (artifact, backend), with the speed-up and accuracy change against the fp32 artifact of the
    same format on the same backend."""
    ok = [r for r in records if isinstance(r, BenchRecord)]
    fp32 = {(r.format, r.backend): r for r in ok if r.precision == "fp32"}
    rows = []
    for r in ok:
        base = fp32.get((r.format, r.backend))
        acc, base_acc = r.evaluation or {}, (base.evaluation if base else None) or {}
        same_samples = acc.get("samples") is not None and acc.get("samples") == base_acc.get("samples")
        rows.append({
            "artifact": Path(r.model).name,
            "backend": r.backend,
            "format": r.format,
            "precision": r.precision,
            "size_bytes": r.size_bytes,
            "accuracy": acc.get("top1"),
            "accuracy_samples": acc.get("samples"),
            "p50_us": r.latency_us["p50"],
            "p90_us": r.latency_us["p90"],
            "speedup_vs_fp32": round(base.latency_us["p50"] / r.latency_us["p50"], 2) if base else None,
            "accuracy_drop_vs_fp32": (round(base_acc["top1"] - acc["top1"], 5)
                                      if same_samples and acc.get("top1") is not None else None),
            "unstable": r.unstable,
        })
    return rows


def summary_cells(row: dict[str, Any]) -> list[str]:
    """A summary row as the text of SUMMARY_COLUMNS, for the terminal table and report.md alike; '~' marks
    unstable timings, as in `toolkit bench`."""
    acc = f"{row['accuracy'] * 100:.2f}%" if row["accuracy"] is not None else ""
    speed = f"{row['speedup_vs_fp32']:.2f}x" if row["speedup_vs_fp32"] else ""
    return [row["artifact"], row["backend"], human_size(row["size_bytes"]), acc,
            fmt_us(row["p50_us"]) + (" ~" if row["unstable"] else ""), fmt_us(row["p90_us"]), speed]


def failed_checks(result: "QuickstartResult") -> list[str]:
    """What makes the main job fail: a pair that did not run, or a quantized artifact that lost accuracy."""
    problems = list(result.failed_steps) + [r.error for r in result.records if not isinstance(r, BenchRecord)]
    for row in result.summary:
        drop = row["accuracy_drop_vs_fp32"]
        if drop is not None and drop > MAX_ACCURACY_DROP:
            problems.append(f"{row['artifact']} on {row['backend']} is {drop * 100:.2f} points less accurate than "
                            f"fp32 (at most {MAX_ACCURACY_DROP * 100:.0f} allowed)")
    return problems


def deployment_formats(source_format: str) -> list[str]:
    """Every format an installed converter makes from the trained model's format (tflite and onnx built in)."""
    return sorted({c.target_format for c in plugins.registries().converters if c.source_format == source_format})


def int8_source_for(trained: Artifact, converted: Artifact) -> Artifact | None:
    """What to quantize for an int8 file of `converted`'s format: the trained model when a quantizer goes
    straight there (TFLite's converter quantizes Keras models), else the converted fp32 file (ONNX QDQ)."""
    for source in (trained, converted):
        if any(source.format in q.source_formats and q.target_format == converted.format and "int8" in q.schemes
               for q in plugins.registries().quantizers):
            return source
    return None


class QuickstartInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, SIGHUP) during the quickstart, carrying what had finished (`partial`)."""

    def __init__(self, cause: KeyboardInterrupt, partial: QuickstartResult, during: str):
        super().__init__(*cause.args)
        self.exit_code = getattr(cause, "exit_code", 130)
        self.partial, self.during = partial, during


def previous_run_files(output_dir: Path) -> list[Path]:
    """What an earlier quickstart left in `output_dir`: its models (kept or failed) with their manifests,
    metrics.json, results.json and report.md. Nothing else in the folder is touched."""
    suffixes = {s for f in plugins.registries().formats for s in f.suffixes}
    names = {"metrics.json", "results.json", "report.md"}
    for stem in (MODEL, f"{MODEL}_int8", f"{MODEL}.failed", f"{MODEL}_int8.failed"):
        for suffix in suffixes:
            names |= {f"{stem}{suffix}", f"{stem}{suffix}.manifest.json"}
    return sorted(p for p in (output_dir / n for n in names) if p.is_file() or p.is_symlink())


def run_quickstart(output_dir: Path, dataset: str | None = None, epochs: int | None = None, limit: int | None = None,
                   runs: int = 200, max_seconds: float = 4.0, eval_seconds: float = 30.0, seed: int = 0,
                   keep_failed: bool = False,
                   step: Callable[..., None] = lambda description, total=None: None,
                   on_start: Callable[[int], None] | None = None,
                   on_batch: Callable[[int, int, dict], None] | None = None) -> QuickstartResult:
    """The main job. Interrupted, it raises QuickstartInterrupted with what had finished."""
    t0 = time.perf_counter()
    dataset, notes = choose_dataset(dataset)
    epochs = epochs or plugins.registries().datasets.get(dataset).suggested_epochs
    # An earlier run's files describe a model this run replaces: a run stopped half-way must not leave a new
    # cnn.keras beside old conversions of another, nor old results beside new files.
    for stale in previous_run_files(output_dir):
        stale.unlink()
    result = QuickstartResult(output_dir, dataset, notes, {}, [], [])
    during = f"training {MODEL} on {dataset}"

    def begin(description: str, **kwargs: Any) -> None:
        nonlocal during
        during = description
        step(description, **kwargs)

    try:
        _run(result, epochs, limit, runs, max_seconds, eval_seconds, seed, keep_failed, begin, on_start, on_batch)
    except KeyboardInterrupt as e:
        result.summary = summarise(result.records)
        raise QuickstartInterrupted(e, result, during) from None
    result.summary = summarise(result.records)
    result.seconds = round(time.perf_counter() - t0, 1)
    write_results(result)
    return result


def _run(result: QuickstartResult, epochs: int, limit: int | None, runs: int, max_seconds: float,
         eval_seconds: float, seed: int, keep_failed: bool, step: Callable[..., None],
         on_start: Callable[[int], None] | None, on_batch: Callable[[int, int, dict], None] | None) -> None:
    dataset = result.dataset
    step(f"training {MODEL} on {dataset}")
    trained, result.training = operations.train(MODEL, dataset, epochs, result.output_dir, on_start=on_start,
                                                on_batch=on_batch, limit=limit, seed=seed)
    for target in deployment_formats(trained.format):
        step(f"converting to {target} fp32")
        try:
            converted = operations.convert(trained.path, target, keep_failed=keep_failed)
        except ToolkitError as e:  # a step that fails is reported at the end; the others still run
            result.failed_steps.append(e.one_line())
            continue
        result.artifacts.append(converted)
        int8_source = int8_source_for(trained, converted)
        if int8_source is None:
            result.notes.append(f"no installed quantizer makes int8 {target} files; only fp32 {target} was made")
            continue
        step(f"quantizing to {target} int8")
        try:
            result.artifacts.append(operations.quantize(int8_source.path, "int8", dataset, to=target, seed=seed,
                                                        keep_failed=keep_failed))
        except ToolkitError as e:
            result.failed_steps.append(e.one_line())

    pairs = [(a, backend) for a in result.artifacts for backend in capable_backends(a)[0]]
    for i, (artifact, backend) in enumerate(pairs):
        step(f"benchmarking {artifact.path.name} on {backend}",
             **({"total": 1 + len(result.artifacts) + len(pairs)} if i == 0 else {}))
        result.records.append(run_pair(BenchRequest(model=str(artifact.path), backend=backend, runs=runs, warmup=20,
                                                    max_seconds=max_seconds, dataset=dataset, batch=1,
                                                    eval_seconds=eval_seconds, seed=seed)))


def write_results(result: QuickstartResult) -> None:
    atomic.write_json(result.output_dir / "results.json", {
        "dataset": result.dataset,
        "notes": result.notes,
        "problems": failed_checks(result),
        "seconds": result.seconds,
        "training": result.training,
        "artifacts": [a.manifest.to_dict() for a in result.artifacts if a.manifest],
        "summary": result.summary,
        "results": [r.to_dict() for r in result.records],
        "environment": environment(None, __version__),
    })
    atomic.write_text(result.output_dir / "report.md", report_markdown(result))


def report_markdown(result: QuickstartResult) -> str:
    env = environment(None, __version__)
    t = result.training
    lines = [
        "# edge toolkit quickstart report",
        "",
        f"CNN trained on **{result.dataset}** ({t['train_samples']} samples, {t['epochs']} epochs, "
        f"{t['train_seconds']:.0f} s): Keras test accuracy **{t['accuracy'] * 100:.2f}%** "
        f"on {t['test_samples']} held-out samples.",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['arch']}, ISA {' '.join(env['isa'])}. "
        f"Whole run: {result.seconds:.0f} s.",
        "",
        markdown_table(SUMMARY_COLUMNS, [summary_cells(row) for row in result.summary],
                       right=[col not in ("artifact", "backend") for col in SUMMARY_COLUMNS]).rstrip("\n"),
        "",
        "## Checks against the source",
        "",
    ]
    for a in result.artifacts:
        p = a.manifest.metrics.get("parity", {}) if a.manifest else {}
        if p:
            agreement = (f"top-1 agreement {p['top1_agreement'] * 100:.2f}%, "
                         if p.get("top1_agreement") is not None else "")
            lines.append(f"- `{a.path.name}` vs `{p['against']}` on {p['data']}: {agreement}max |diff| "
                         f"{p['max_abs_diff']:.3g} ({'passed' if p['passed'] else 'FAILED'}: {p['rule']})")
    problems = failed_checks(result)
    if problems or result.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in result.notes]
        lines += [f"- FAILED: {p}" for p in problems]
    if any(row["unstable"] for row in result.summary):
        lines += ["", "~ marks unstable timings (a robust spread or a disagreement of the windows over 10%, or fewer "
                      "than 10 runs)."]
    lines += ["", "Accuracy is top-1 on the held-out split (samples counted in results.json); latency is batch 1, "
              "timed around the runtime's own call after warm-up. results.json holds every record.", ""]
    return "\n".join(lines)
