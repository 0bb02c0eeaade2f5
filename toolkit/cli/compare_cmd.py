"""`toolkit compare RUN_A RUN_B`: each pair measured in both runs, B against A, with a verdict from a confidence
interval on the difference of the medians (toolkit/stats.py); exit 1 on a regression beyond --threshold, so a
CI pipeline can gate on it."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from .history_cmd import existing_history, history_option
from .options import stdout_console, traceback_option


def parse_threshold(value: str) -> float:
    """5%, 5 or 2.5% as a fraction (0.05, 0.05, 0.025)."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(%?)\s*", value)
    if not m:
        raise UsageError(f"--threshold {value} is not a percentage", "Give one like --threshold 5%")
    if not m.group(2) and 0 < float(m.group(1)) < 1:
        raise UsageError(f"--threshold {value} is ambiguous: a fraction, or that many percent?",
                         f"Write it with %: --threshold {float(m.group(1)) * 100:g}% (or {value}% if you mean it)")
    if not 0 <= float(m.group(1)) <= 100:
        raise UsageError(f"--threshold {value} is out of range", "Give a percentage from 0% to 100%, e.g. 5%")
    return float(m.group(1)) / 100.0


def pair_key(record: Any) -> tuple:
    """What makes two records the same measurement in two runs: the model's file name, backend, target, requested
    provider, threads, batch and scenario."""
    return (Path(record.model).name, record.backend, record.target, (record.provider or {}).get("requested"),
            record.threads, record.batch, record.scenario)


def describe_key(key: tuple) -> str:
    model, backend, target, provider, threads, batch, scenario = key
    text = f"{model} on {backend}" + (f" @ {target}" if target else "")
    if batch and batch != 1:
        text += f" x{batch}"
    extras = [f"provider {provider}" if provider and provider != "cpu" else "",
              f"{threads} thread{'s' if threads != 1 else ''}" if threads else "",
              scenario if scenario != "single-stream" else ""]
    return text + (f" ({', '.join(e for e in extras if e)})" if any(extras) else "")


def compare_runs(run_a: Any, run_b: Any, threshold: float) -> dict[str, Any]:
    """Every pair of records measured in both runs, with its statistics and verdict; the unmatched ones listed."""
    from ..metrics import headline
    from ..stats import difference, worst

    a = {pair_key(r): r for r in run_a.ok()}
    b = {pair_key(r): r for r in run_b.ok()}
    matched = [k for k in a if k in b]
    loose = None
    if not matched and len(a) == 1 and len(b) == 1:  # one record each (cnn.onnx against cnn_int8.onnx): compare them
        loose = (next(iter(a)), next(iter(b)))
    pairs = []
    for ka, kb in ([(k, k) for k in matched] if loose is None else [loose]):
        ra, rb = a[ka], b[kb]
        notes = []
        sa, sb = ra.samples_us or [ra.latency_us["p50"]], rb.samples_us or [rb.latency_us["p50"]]
        ma, mb = ra.block_means_us or [ra.latency_us["mean"]], rb.block_means_us or [rb.latency_us["mean"]]
        if len(sa) < 10 or len(sb) < 10:
            notes.append("a run kept fewer than 10 samples: the interval is rough")
        if (ra.batch or 1) != (rb.batch or 1):  # a call of 8 samples against a call of 1: compare per sample
            sa, ma = [x / (ra.batch or 1) for x in sa], [x / (ra.batch or 1) for x in ma]
            sb, mb = [x / (rb.batch or 1) for x in sb], [x / (rb.batch or 1) for x in mb]
            notes.append(f"batches {ra.batch} and {rb.batch}: compared per sample (a call's time over its batch)")
        diff = difference(sa, sb, "median")
        sustained = difference(ma, mb, "mean")
        verdict = worst(diff.verdict(threshold), sustained.verdict(threshold))
        if run_a.run_id == run_b.run_id:
            verdict = "no change"  # the same samples: the interval is only the bootstrap's own spread
        if sustained.verdict(threshold) == "regression" and diff.verdict(threshold) != "regression":
            notes.append(f"the typical call is unchanged ({_pct(diff.change)}) but the sustained time per call "
                         f"rose {_pct(sustained.change)}: something else took the CPU (a busy neighbour, "
                         "throttling) or the runtime stalls between calls")
        for name, r in (("A", ra), ("B", rb)):
            if r.unstable:
                notes.append(f"{name} was unstable ({'; '.join(r.stability.get('reasons') or []) or 'too few runs'})")
        if loose is not None:
            for what, x, y in (("models", Path(ra.model).name, Path(rb.model).name), ("backends", ra.backend, rb.backend),
                               ("scenarios", ra.scenario, rb.scenario), ("threads", ra.threads, rb.threads)):
                if x != y:
                    notes.append(f"different {what} ({x} and {y}): the only record of each run, compared as asked")
        if ra.processes != rb.processes:
            notes.append(f"measured in {ra.processes} and {rb.processes} process(es): the spread between processes "
                         "is only in the pooled one")
        if loose is None and run_a.sha256.get(ra.model) and run_b.sha256.get(rb.model) and \
                run_a.sha256[ra.model] != run_b.sha256[rb.model]:
            notes.append("the model file changed between the runs")
        cpu_a, cpu_b = (ra.environment or {}).get("cpu"), (rb.environment or {}).get("cpu")
        if cpu_a != cpu_b:
            notes.append(f"measured on different CPUs ({cpu_a} and {cpu_b})")
        acc = None
        ha, hb = headline(ra.task, ra.evaluation), headline(rb.task, rb.evaluation)
        if ha and hb and ha[0] == hb[0]:
            acc = {"metric": ha[0], "a": ha[1], "b": hb[1], "change": hb[1] - ha[1]}
        pairs.append({
            "pair": describe_key(ka) if loose is None else f"{describe_key(ka)} -> {describe_key(kb)}",
            "model_a": ra.model, "model_b": rb.model, "backend": ra.backend, "target": ra.target, "batch": ra.batch,
            "p50_a_us": round(diff.a, 3), "p50_b_us": round(diff.b, 3),
            "change": round(diff.change, 4), "ci_low": round(diff.low, 4), "ci_high": round(diff.high, 4),
            "mean_a_us": round(sustained.a, 3), "mean_b_us": round(sustained.b, 3),
            "mean_change": round(sustained.change, 4), "mean_ci_low": round(sustained.low, 4),
            "mean_ci_high": round(sustained.high, 4), "confidence": diff.confidence, "verdict": verdict,
            "evaluation": acc, "notes": notes,
        })
    if run_a.run_id == run_b.run_id:
        for p in pairs:
            p["notes"].insert(0, "a run compared with itself: the interval shows the bootstrap's own spread")
    only_a = [describe_key(k) for k in a if k not in b] if loose is None else []
    only_b = [describe_key(k) for k in b if k not in a] if loose is None else []
    return {"run_a": run_a.run_id, "run_b": run_b.run_id, "threshold": threshold, "pairs": pairs,
            "only_in_a": only_a, "only_in_b": only_b,
            "regressions": sum(p["verdict"] == "regression" for p in pairs)}


def _notes(pair: dict[str, Any]) -> list[str]:
    """A pair's notes, with its change of accuracy when both runs evaluated it."""
    e = pair["evaluation"]
    return pair["notes"] + ([f"{e['metric']} {e['a']:.4g} -> {e['b']:.4g}"] if e else [])


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _rows(result: dict[str, Any]) -> list[list[str]]:
    from ..units import fmt_us

    return [[p["pair"], f"{fmt_us(p['p50_a_us'])} -> {fmt_us(p['p50_b_us'])}",
             f"{_pct(p['change'])} ({_pct(p['ci_low'])} .. {_pct(p['ci_high'])})",
             f"{fmt_us(p['mean_a_us'])} -> {fmt_us(p['mean_b_us'])}",
             f"{_pct(p['mean_change'])} ({_pct(p['mean_ci_low'])} .. {_pct(p['mean_ci_high'])})", p["verdict"]]
            for p in result["pairs"]]


# The changes are B against A, each with its 95% confidence interval.
HEADER = ["pair", "p50 A -> B", "p50 change (95% CI)", "mean A -> B", "mean change (95% CI)", "verdict"]


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--threshold", default="5%", show_default=True, metavar="PCT",
              help="A slowdown beyond this (with 95% confidence) is a regression and exits 1.")
@history_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table",
              show_default=True, help="Output format; json and csv are for scripts, markdown for pull requests.")
@traceback_option
def compare(run_a, run_b, threshold, history_path, fmt) -> None:
    """Compare saved run RUN_B against RUN_A (ids, latest, latest~1): a verdict per pair measured in both.

    For each pair, two changes with 95% confidence intervals (a block bootstrap, so a machine's slow phases widen
    them): the median latency (the typical call) and the mean time per call (the sustained rate, which a busy
    neighbour on the core halves while the median stays). Verdicts, the worse of the two: regression (slower by
    more than --threshold even at the interval's low end: exit 1), improvement, no change (the whole interval
    within +-threshold), or inconclusive (measure longer or on a quieter machine). Pairs match by model file name, backend, target,
    provider, threads, batch and scenario; two runs of one record each are compared whatever their models.

    \b
    Examples:
      toolkit bench cnn.tflite --save && toolkit bench cnn.tflite --save && toolkit compare latest~1 latest
      toolkit compare 12 15 --threshold 3% --format markdown
    """
    limit = parse_threshold(threshold)
    with existing_history(history_path) as db:
        a, b = db.run(run_a), db.run(run_b)
    if not a.ok() or not b.ok():
        empty = a.run_id if not a.ok() else b.run_id
        raise UsageError(f"run {empty} has no measured results to compare", "Pick runs listed by toolkit history")
    result = compare_runs(a, b, limit)
    if not result["pairs"]:
        raise UsageError(f"runs {a.run_id} and {b.run_id} have no measurement in common (A: "
                         f"{', '.join(result['only_in_a'])}; B: {', '.join(result['only_in_b'])})",
                         "Compare runs of the same model and backend, or two runs of one model each")
    if fmt == "json":
        from ..atomic import json_text

        sys.stdout.write(json_text(result))
    elif fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        fields = ["pair", "p50_a_us", "p50_b_us", "change", "ci_low", "ci_high", "mean_a_us", "mean_b_us",
                  "mean_change", "mean_ci_low", "mean_ci_high", "verdict", "notes"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{**p, "notes": "; ".join(_notes(p))} for p in result["pairs"]])
        sys.stdout.write(buf.getvalue())
    elif fmt == "markdown":
        from .render import markdown_table, md_escape

        notes = [f"- {md_escape(p['pair'])}: {md_escape(text)}" for p in result["pairs"] for text in _notes(p)]
        notes += [f"- only in run {run}: {md_escape(', '.join(keys))}"
                  for run, keys in ((a.run_id, result["only_in_a"]), (b.run_id, result["only_in_b"])) if keys]
        sys.stdout.write(f"## Run {b.run_id} against run {a.run_id} (threshold {limit * 100:g}%)\n\n"
                         + markdown_table(HEADER, _rows(result)) + ("\n" + "\n".join(notes) + "\n" if notes else ""))
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"Run {b.run_id} against run {a.run_id}, threshold {limit * 100:g}%",
                      title_justify="left")
        for col in HEADER:
            table.add_column(col, justify="left" if col in ("pair", "verdict") else "right")
        styles = {"regression": "bold red", "improvement": "green", "inconclusive": "yellow"}
        for p, row in zip(result["pairs"], _rows(result)):
            table.add_row(*(escape(c) for c in row[:-1]), f"[{styles.get(p['verdict'], '')}]{row[-1]}[/]"
                          if p["verdict"] in styles else row[-1])
        stdout_console().print(table)
    if fmt == "table":
        from .options import note

        for p in result["pairs"]:
            for text in _notes(p):
                note(f"{p['pair']}: {text}")
        for side, keys in (("A", result["only_in_a"]), ("B", result["only_in_b"])):
            if keys:
                note(f"only in run {a.run_id if side == 'A' else b.run_id}: {', '.join(keys)}")
    if result["regressions"]:
        sys.exit(1)
