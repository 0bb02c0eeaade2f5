"""The one place benchmark records become text: a rich table, plain text, JSON, CSV and Markdown.

JSON is the truth (the records' to_dict()); every other form is derived from it. Text that comes from plugins or
files (model names, provider names, errors) is escaped for each form: rich markup, Markdown pipes, CSV quoting.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..metrics import headline
from ..records import BenchRecord, Record
from ..units import fmt_us, human_size

TABLE_COLUMNS = ("model", "backend", "runs on", "prec.", "size", "metric", "p50", "p90", "per s")


def provider_label(provider: dict[str, Any] | None) -> str:
    """A short name for what ran: a delegate, the execution providers, or the runtime."""
    if not provider:
        return ""
    if provider.get("providers"):
        label = ",".join(str(p).replace("ExecutionProvider", "") for p in provider["providers"][:1])
        return label + (" (fallback!)" if provider.get("fallback") else "")
    return str(provider.get("delegate") or provider.get("runtime") or "")


def metric_text(record: BenchRecord) -> str:
    found = headline(record.task, record.evaluation)
    if found is None:
        return ""
    key, value = found
    return f"{value * 100:.2f}%" if key == "top1" else f"{key} {value:.4g}"


def model_labels(records: Sequence[Record]) -> dict[str, str]:
    """How each model is named in a table: its file name, or the path as given when two share a name
    (a/model.onnx and b/model.onnx)."""
    names: dict[str, set[str]] = {}
    for r in records:
        names.setdefault(Path(r.model).name, set()).add(r.model)
    return {r.model: (Path(r.model).name if len(names[Path(r.model).name]) == 1 else r.model) for r in records}


def table_cells(record: BenchRecord, label: str | None = None) -> list[str]:
    """One record as the text of TABLE_COLUMNS (unescaped)."""
    batch = f" x{record.batch}" if record.batch and record.batch != 1 else ""
    p50 = fmt_us(record.latency_us.get("p50")) + (" ~" if record.unstable else "")
    backend = f"{record.backend} @ {record.target}" if record.target else record.backend
    return [(label or Path(record.model).name) + batch, backend, provider_label(record.provider), record.precision,
            human_size(record.size_bytes), metric_text(record), p50, fmt_us(record.latency_us.get("p90")),
            f"{record.throughput_per_s:.0f}" if record.throughput_per_s else ""]


def flat_row(record: Record) -> dict[str, Any]:
    """One record as flat columns (CSV)."""
    d = record.to_dict()
    lat = d.get("latency_us") or {}
    ev = d.get("evaluation") or {}
    return {
        "status": d.get("status"),
        "model": d.get("model"),
        "backend": d.get("backend"),
        "target": d.get("target"),
        "provider": provider_label(d.get("provider")),
        "format": d.get("format"),
        "precision": d.get("precision"),
        "task": d.get("task"),
        "batch": d.get("batch"),
        "threads": d.get("threads"),
        "size_bytes": d.get("size_bytes"),
        "eval_dataset": ev.get("dataset"),
        "eval_samples": ev.get("samples"),
        "top1": ev.get("top1"),
        "mae": ev.get("mae"),
        "rmse": ev.get("rmse"),
        **{f"{k}_us": lat.get(k) for k in ("p50", "p90", "p99", "mean", "std", "min", "max", "mad")},
        "cv": (d.get("stability") or {}).get("cv"),
        "robust_cv": (d.get("stability") or {}).get("robust_cv"),
        "window_spread": (d.get("stability") or {}).get("window_spread"),
        "runs": d.get("runs"),
        "scenario": d.get("scenario"),
        "pin": ",".join(map(str, d.get("pin") or [])),
        "gflops_per_s": (d.get("cost") or {}).get("gflops_per_s"),
        "share_of_peak": (d.get("cost") or {}).get("share_of_peak"),
        "throughput_per_s": d.get("throughput_per_s"),
        "init_ms": d.get("init_ms"),
        "first_run_ms": d.get("first_run_ms"),
        "peak_rss_mb": d.get("peak_rss_mb"),
        "unstable": d.get("unstable"),
        "error": d.get("error"),
    }


def to_json(records: Iterable[Record], **extra: Any) -> str:
    from ..atomic import json_text

    return json_text({**extra, "results": [r.to_dict() for r in records]})


def to_csv(records: Iterable[Record]) -> str:
    rows = [flat_row(r) for r in records]
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool] = ()) -> str:
    align = ["---:" if i < len(right) and right[i] else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_markdown(records: Sequence[Record], title: str = "Benchmark") -> str:
    ok = [r for r in records if isinstance(r, BenchRecord)]
    out = f"## {md_escape(title)}\n\n"
    labels = model_labels(ok)
    out += markdown_table(TABLE_COLUMNS, [table_cells(r, labels[r.model]) for r in ok],
                          right=[False, False, False, False, True, True, True, True, True])
    problems = [r for r in records if not isinstance(r, BenchRecord)]
    if problems:
        out += "\n" + "".join(f"- {r.status}: {md_escape(r.error)}\n" for r in problems)
    return out


def rich_table(records: Sequence[Record], title: str = "Benchmark") -> Any:
    """Records as a rich table; p99, init time, memory and the environment are in the JSON."""
    from rich.markup import escape
    from rich.table import Table

    scenarios = {r.scenario for r in records if isinstance(r, BenchRecord)}
    if scenarios == {"offline"}:
        title += " (offline: samples per second is the headline)"
    table = Table(title=escape(title), title_justify="left")
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col in ("model", "backend", "runs on", "prec.") else "right",
                         no_wrap=col in ("p50", "p90", "size"))
    ok = [r for r in records if isinstance(r, BenchRecord)]
    labels = model_labels(ok)
    for r in ok:
        table.add_row(*(escape(c) for c in table_cells(r, labels[r.model])))
    return table


def plain_table(records: Sequence[Record], title: str = "Benchmark") -> str:
    """The rich table as plain text (a .txt output file)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(rich_table(records, title))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    problems = [r for r in records if not isinstance(r, BenchRecord)]
    return text + "".join(f"{r.status}: {r.error}\n" for r in problems)


def for_file(records: Sequence[Record], path: Path, **extra: Any) -> str:
    """What --output writes: by suffix .json (with `extra` at the top, e.g. the run_id), .csv, .md; anything else
    gets the plain-text table."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return to_json(records, **extra)
    if suffix == ".csv":
        return to_csv(records)
    if suffix in (".md", ".markdown"):
        return to_markdown(records)
    return plain_table(records)
