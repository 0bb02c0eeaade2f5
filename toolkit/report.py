"""Reports of saved benchmark runs: one self-contained HTML file with plots (PNG, embedded as data: URIs; no
script, no external URL) or a Markdown summary for pull requests.

The plots: the latency distribution of each measured group (record.samples_us), accuracy against latency with
the Pareto front (or file size against latency when nothing was evaluated), and throughput against batch size
when a run swept batches. matplotlib is imported only when a plot is drawn, with the Agg canvas (no display).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import UsageError
from .figures import figure, mpl_text, need_matplotlib, png
from .history import History, Run
from .metrics import headline
from .records import BenchFailure, BenchRecord
from .units import fmt_us, human_size

# A latency plot spans at least this max/min ratio before its axis turns logarithmic.
LOG_RATIO = 20.0
NO_SWEEP_NOTE = "no batch sweep in these runs (toolkit bench --batch 1,8,32)"
# Headline metrics where higher is better; the others (rmse, mae) are errors, lower is better.
HIGHER_IS_BETTER = {"top1"}


class ReportError(UsageError):
    """Runs that cannot make a report: none measured anything."""


@dataclass
class Entry:
    """One measured record of one run, with the label the report gives it."""

    run: Run
    record: BenchRecord
    label: str  # model label, " xB" for a batch other than 1, " (#run)" when the report has several runs

    @property
    def where(self) -> str:
        r = self.record
        return f"{r.backend} @ {r.target}" if r.target else r.backend

    @property
    def group(self) -> tuple:
        """What a batch sweep varies the batch of: one model on one backend and target in one run."""
        r = self.record
        return (self.run.run_id, r.model, r.backend, r.target, r.precision, r.scenario)


# ---------------------------------------------------------------------------------------------- loading
def load_runs(history: History, refs: Sequence[str]) -> list[Run]:
    """The runs named by `refs` (12, latest, latest~1), each once, in the order given. A run with no measured
    record is refused: there is nothing to report."""
    runs: list[Run] = []
    seen: set[int] = set()
    for ref in refs:
        run_id = history.resolve(ref)
        if run_id in seen:
            continue
        seen.add(run_id)
        run = history.run(run_id)
        if not run.ok():
            failed = len(run.records)
            raise ReportError(f"run {run_id} has no successful records ({failed} failed or skipped)"
                              if failed else f"run {run_id} has no records",
                              "Report runs that measured something; list them with toolkit history")
        runs.append(run)
    return runs


def entries(runs: Sequence[Run]) -> list[Entry]:
    """Every measured record of `runs`, labelled: the file name (the path when two models share a name), the
    batch, and the run id when the report covers several runs."""
    from .cli.render import model_labels

    ok = [(run, r) for run in runs for r in run.ok()]
    labels = model_labels([r for _, r in ok])
    several = len(runs) > 1
    out = []
    for run, r in ok:
        label = labels[r.model] + (f" x{r.batch}" if r.batch and r.batch != 1 else "")
        out.append(Entry(run, r, label + (f" (#{run.run_id})" if several else "")))
    return out


def failures(runs: Sequence[Run]) -> list[tuple[Run, BenchFailure]]:
    return [(run, r) for run in runs for r in run.records if isinstance(r, BenchFailure)]


# ---------------------------------------------------------------------------------------------- the table
COLUMNS = ("model", "backend", "provider", "prec.", "batch", "scenario", "size", "metric", "p50", "p90", "p99",
           "spread", "per s", "GFLOP/s", "stable")
RIGHT = {"batch", "size", "metric", "p50", "p90", "p99", "spread", "per s", "GFLOP/s"}


def summary_cells(entry: Entry) -> list[str]:
    """One record as the text of COLUMNS (unescaped)."""
    from .cli.render import metric_text, provider_label

    r = entry.record
    lat = r.latency_us or {}
    spread = (r.stability or {}).get("robust_cv")
    gflops = (r.cost or {}).get("gflops_per_s")
    return [entry.label, entry.where, provider_label(r.provider), r.precision, str(r.batch), r.scenario,
            human_size(r.size_bytes), metric_text(r), fmt_us(lat.get("p50")), fmt_us(lat.get("p90")),
            fmt_us(lat.get("p99")), f"{spread * 100:.1f}%" if spread is not None else "",
            f"{r.throughput_per_s:,.0f}" if r.throughput_per_s else "",
            f"{gflops:.2f}" if gflops is not None else "", "unstable" if r.unstable else "ok"]


def unstable_notes(items: Sequence[Entry]) -> list[tuple[str, str]]:
    """(label, why) for each unstable record."""
    out = []
    for e in items:
        if e.record.unstable:
            reasons = (e.record.stability or {}).get("reasons") or []
            out.append((e.label, "; ".join(map(str, reasons)) or "marked unstable"))
    return out


def run_line(run: Run) -> str:
    """One run as text: id, date, label, host, CPU, toolkit version."""
    cpus = sorted({str(r.environment.get("cpu")) for r in run.ok() if r.environment.get("cpu")})
    cpu = ", ".join(cpus) or str(run.environment.get("cpu") or "")
    parts = [f"run {run.run_id}", run.created.replace("T", " ")]
    if run.label:
        parts.append(f"label {run.label}")
    if run.host:
        parts.append(f"host {run.host}")
    if cpu:
        parts.append(f"CPU {cpu}")
    if run.toolkit:
        parts.append(f"toolkit {run.toolkit}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- Pareto front
def pareto_front(points: Sequence[tuple[float, float]], higher_y_is_better: bool = True) -> list[int]:
    """The indices of the points no other point beats: lower x (latency) and better y, at least as good in both
    and better in one. Ordered by x."""
    front = []
    for i, (x, y) in enumerate(points):
        beaten = False
        for j, (x2, y2) in enumerate(points):
            if j == i:
                continue
            better_y = y2 > y if higher_y_is_better else y2 < y
            same_y = y2 == y
            if x2 <= x and (better_y or same_y) and (x2 < x or better_y):
                beaten = True
                break
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], i))


# ---------------------------------------------------------------------------------------------- plots
@dataclass
class Plot:
    """A figure as PNG bytes and its caption, or, without a figure, a note saying why."""

    name: str
    title: str
    caption: str
    png: bytes | None = None
    front: list[str] | None = None  # the labels on the Pareto front


def latency_plot(items: Sequence[Entry]) -> Plot:
    """Box plots of each record's kept samples: one row per (model, backend, target, batch)."""
    title = "Latency distribution"
    with_samples = [e for e in items if e.record.samples_us]
    missing = len(items) - len(with_samples)
    if not with_samples:
        return Plot("latency", title, "no record kept its timed samples (saved by an older toolkit), so there is "
                                      "no distribution to plot; the table has the percentiles")
    data = [[float(v) for v in e.record.samples_us] for e in with_samples]
    low = min(min(d) for d in data)
    high = max(max(d) for d in data)
    log = low > 0 and high / low > LOG_RATIO
    fig = figure(9, 1.2 + 0.45 * len(data))
    ax = fig.add_subplot()
    style = {"whis": (1, 99), "widths": 0.6, "flierprops": {"marker": ".", "markersize": 2, "alpha": 0.3},
             "medianprops": {"color": "#c0392b"}}
    try:
        ax.boxplot(data[::-1], orientation="horizontal", **style)
    except TypeError:  # matplotlib before 3.10
        ax.boxplot(data[::-1], vert=False, **style)
    ax.set_yticks(range(1, len(data) + 1), [mpl_text(f"{e.label} · {e.where}") for e in with_samples[::-1]])
    p90 = [e.record.latency_us.get("p90") for e in with_samples[::-1]]
    ys = [i + 1 for i, v in enumerate(p90) if v is not None]
    ax.plot([v for v in p90 if v is not None], ys, "D", color="#2c3e50", markersize=4, label="p90")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("latency per call (µs" + (", log scale)" if log else ")"))
    ax.grid(axis="x", alpha=0.3, which="both" if log else "major")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    caption = ("Each row is one measured record: the box spans the middle half of its timed runs, the red line is "
               "the median, the whiskers reach the 1st and 99th percentiles, dots beyond them are single runs, "
               "the diamond is p90.")
    if missing:
        caption += f" {missing} record(s) without kept samples are not shown."
    return Plot("latency", title, caption, png(fig))


def _smallest_batch(items: Sequence[Entry]) -> list[Entry]:
    """Of each batch sweep, only its smallest batch: latencies of different batch sizes are not comparable."""
    smallest: dict[tuple, int] = {}
    for e in items:
        smallest[e.group] = min(smallest.get(e.group, e.record.batch), e.record.batch)
    return [e for e in items if e.record.batch == smallest[e.group]]


def tradeoff_plot(items: Sequence[Entry]) -> Plot:
    """Accuracy (the evaluation's headline metric) against p90 latency, marker area by file size, the Pareto front
    marked; without any evaluation, file size against latency and its front."""
    timed = [e for e in items if e.record.latency_us.get("p90") is not None]
    items = _smallest_batch(timed)
    swept = len(items) < len(timed)
    metrics = {id(e): headline(e.record.task, e.record.evaluation) for e in items}
    keys = [m[0] for m in metrics.values() if m]
    if keys:
        key = max(set(keys), key=lambda k: (keys.count(k), k == "top1"))
        chosen = [e for e in items if metrics[id(e)] and metrics[id(e)][0] == key]
        ys = [metrics[id(e)][1] * (100 if key == "top1" else 1) for e in chosen]
        higher = key in HIGHER_IS_BETTER
        ylabel = "top-1 accuracy (%)" if key == "top1" else f"{key} (lower is better)"
        title = "Accuracy vs latency"
        left = len(items) - len(chosen)
        caption = (f"{'Top-1 accuracy' if key == 'top1' else key.upper()} on the evaluation dataset against p90 "
                   "latency; the marker's area is the file size. The Pareto front (nothing else is both faster and "
                   f"{'more accurate' if higher else 'lower in error'}) is joined and labelled.")
        if left:
            caption += f" {left} record(s) without a {key} evaluation are not shown."
    else:
        chosen = [e for e in items if e.record.size_bytes]
        ys = [e.record.size_bytes / 1024 for e in chosen]
        higher = False
        ylabel = "file size (KiB)"
        title = "Size vs latency"
        caption = ("No record has an evaluation (toolkit bench --dataset NAME), so this plots file size against p90 "
                   "latency instead; the Pareto front (nothing else is both smaller and faster) is joined and "
                   "labelled.")
        if not chosen:
            return Plot("tradeoff", title, "no record has an evaluation or a file size: nothing to trade off")
        if len(chosen) < len(items):
            caption += f" {len(items) - len(chosen)} record(s) without a file size are not shown."
    if swept:
        caption += " Of a batch sweep only its smallest batch is shown."
    per_sample = len({e.record.batch or 1 for e in chosen}) > 1  # a fixed batch of 20 beside batch-1 models
    xs = [e.record.latency_us["p90"] / ((e.record.batch or 1) if per_sample else 1) for e in chosen]
    if per_sample:
        caption += (" The records ran at different batch sizes (a model's fixed batch), so latency is per sample: "
                    "the p90 of a call divided by its batch.")
    front = pareto_front(list(zip(xs, ys)), higher_y_is_better=higher)
    sizes = [e.record.size_bytes or 0 for e in chosen]
    biggest = max(sizes) or 1
    areas = [30 + 400 * (s / biggest) if s else 30 for s in sizes]
    fig = figure(8, 5)
    ax = fig.add_subplot()
    on_front = set(front)
    rest = [i for i in range(len(xs)) if i not in on_front]
    if rest:
        ax.scatter([xs[i] for i in rest], [ys[i] for i in rest], s=[areas[i] for i in rest], alpha=0.45,
                   color="#7f8c8d", edgecolors="#2c3e50", label="dominated")
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=[areas[i] for i in front], alpha=0.75,
               color="#e67e22", edgecolors="#2c3e50", label="Pareto front")
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "-", color="#e67e22", linewidth=1.2)
    labels: dict[tuple[float, float], list[str]] = {}  # points in the same place get one label
    for i in front:
        labels.setdefault((xs[i], ys[i]), []).append(chosen[i].label)
    for (x, y), names in labels.items():
        ax.annotate(mpl_text(", ".join(names)), (x, y), textcoords="offset points", xytext=(7, 7), fontsize="small")
    for i in rest:  # the dominated ones too, smaller and grey, so every point can be told apart
        ax.annotate(mpl_text(chosen[i].label), (xs[i], ys[i]), textcoords="offset points", xytext=(7, -10),
                    fontsize="x-small", color="#555555")
    ax.margins(0.12)
    if xs and min(xs) > 0 and max(xs) / min(xs) > LOG_RATIO:
        ax.set_xscale("log")
    ax.set_xlabel("p90 latency per sample (µs): per call / batch" if per_sample else "p90 latency per call (µs)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return Plot("tradeoff", title, caption, png(fig), front=[chosen[i].label for i in front])


def batch_plot(items: Sequence[Entry]) -> Plot:
    """Throughput against batch size, one line per group that ran two or more batch sizes."""
    title = "Batch scaling"
    groups: dict[tuple, list[Entry]] = {}
    for e in items:
        if e.record.throughput_per_s:
            groups.setdefault(e.group, []).append(e)
    sweeps = {k: sorted(v, key=lambda e: e.record.batch) for k, v in groups.items()
              if len({e.record.batch for e in v}) >= 2}
    if not sweeps:
        return Plot("batch", title, NO_SWEEP_NOTE)
    fig = figure(8, 5)
    ax = fig.add_subplot()
    for group in sweeps.values():
        first = group[0]
        name = first.label.replace(f" x{first.record.batch}", "") if first.record.batch != 1 else first.label
        ax.plot([e.record.batch for e in group], [e.record.throughput_per_s for e in group], "o-",
                label=mpl_text(f"{name} · {first.where}"))
    ax.set_xscale("log", base=2)
    batches = sorted({e.record.batch for g in sweeps.values() for e in g})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput (samples/s)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return Plot("batch", title, "Samples per second over the whole timed series, against the batch size: a line "
                                "that keeps rising means bigger batches still pay off.", png(fig))


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.unstable td { background: #fff6e0; }
figure { margin: 2em 0; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eee; }
div.wide { overflow-x: auto; }
figcaption, .note { color: #555; max-width: 60em; }
.meta { color: #555; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def render_html(runs: Sequence[Run], plots: Sequence[Plot] | None = None) -> str:
    """The report as one HTML document: header, summary table, unstable notes, failures and the plots."""
    from datetime import datetime, timezone

    from . import __version__

    items = entries(runs)
    if plots is None:
        need_matplotlib("the report's plots", ", or use --format md (no plots)")
        plots = [latency_plot(items), tradeoff_plot(items), batch_plot(items)]
    ids = ", ".join(f"#{run.run_id}" for run in runs)
    made = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("T", " ")
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>Benchmark report: runs {_e(ids)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           "<h1>Benchmark report</h1>", f'<p class="meta">Runs {_e(ids)}; made {_e(made)} by '
           f"edge toolkit {_e(__version__)}.</p>", "<ul class=\"runs\">"]
    for run in runs:
        command = f"<br><code>{_e(run.command)}</code>" if run.command else ""
        out.append(f"<li>{_e(run_line(run))}{command}</li>")
    out.append("</ul>")
    out.append('<h2>Summary</h2>\n<div class="wide">\n<table class="summary">\n<thead><tr>'
               + "".join(f"<th>{_e(c)}</th>" for c in COLUMNS) + "</tr></thead>\n<tbody>")
    for e in items:
        cells = summary_cells(e)
        why = "; ".join(map(str, (e.record.stability or {}).get("reasons") or []))
        row = []
        for col, cell in zip(COLUMNS, cells):
            cls = ' class="num"' if col in RIGHT else ""
            title = f' title="{_e(why)}"' if col == "stable" and why else ""
            row.append(f"<td{cls}{title}>{_e(cell)}</td>")
        tr = '<tr class="unstable">' if e.record.unstable else "<tr>"
        out.append(tr + "".join(row) + "</tr>")
    out.append("</tbody>\n</table>\n</div>")
    notes = unstable_notes(items)
    if notes:
        out.append('<h3>Unstable measurements</h3>\n<ul class="unstable">')
        out += [f"<li>{_e(label)}: {_e(why)}</li>" for label, why in notes]
        out.append("</ul>")
    failed = failures(runs)
    if failed:
        out.append('<h3>Not measured</h3>\n<ul class="failures">')
        several = len(runs) > 1
        lines: dict[str, int] = {}  # the error names the model and backend; a sweep repeats it once per batch
        for run, r in failed:
            text = f"{r.status}" + (f" (#{run.run_id})" if several else "") + f": {r.error}"
            lines[text] = lines.get(text, 0) + 1
        out += [f"<li>{_e(text)}" + (f" ({n} times)" if n > 1 else "") + "</li>" for text, n in lines.items()]
        out.append("</ul>")
    for plot in plots:
        out.append(f'<h2>{_e(plot.title)}</h2>')
        if plot.png is None:
            out.append(f'<p class="note" data-plot="{_e(plot.name)}">{_e(plot.caption)}</p>')
            continue
        data = base64.b64encode(plot.png).decode("ascii")
        out.append(f'<figure id="plot-{_e(plot.name)}">')
        out.append(f'<img class="plot" data-plot="{_e(plot.name)}" alt="{_e(plot.title)}" '
                   f'src="data:image/png;base64,{data}">')
        front = ""
        if plot.front:
            front = ('<br>Pareto front: <span class="front">'
                     + ", ".join(f"<b>{_e(label)}</b>" for label in plot.front) + "</span>")
        out.append(f"<figcaption>{_e(plot.caption)}{front}</figcaption>")
        out.append("</figure>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- Markdown
def _no_tags(value: Any) -> str:
    """Text for Markdown, which renders HTML: a tag in a model name or an error stays text."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;")


def render_markdown(runs: Sequence[Run]) -> str:
    """A summary for a pull request: the runs, the table, the unstable notes and the failures. No images."""
    from .cli.render import markdown_table, md_escape

    def text(value: Any) -> str:
        return md_escape(_no_tags(value))

    items = entries(runs)
    ids = ", ".join(f"#{run.run_id}" for run in runs)
    out = f"## Benchmark report: runs {md_escape(ids)}\n\n"
    out += "".join(f"- {text(run_line(run))}\n" for run in runs) + "\n"
    out += markdown_table(COLUMNS, [[_no_tags(c) for c in summary_cells(e)] for e in items],
                          right=[c in RIGHT for c in COLUMNS])
    notes = unstable_notes(items)
    if notes:
        out += "\nUnstable measurements:\n\n" + "".join(f"- {text(label)}: {text(why)}\n"
                                                       for label, why in notes)
    failed = failures(runs)
    if failed:
        seen = list(dict.fromkeys(f"- {text(r.status)}: {text(r.error)}\n" for _, r in failed))
        out += "\nNot measured:\n\n" + "".join(seen)
    return out
