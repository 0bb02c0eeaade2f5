"""Render benchmark records (JSON is the truth) as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable

from ..units import fmt_us, human_size


def provider_label(provider: dict[str, Any] | None) -> str:
    """A short name for what ran: a delegate, the execution providers, or the runtime."""
    if not provider:
        return ""
    if "providers" in provider:
        label = ",".join(p.replace("ExecutionProvider", "") for p in provider["providers"][:1])
        return label + (" (fallback!)" if provider.get("fallback") else "")
    return provider.get("delegate") or provider.get("runtime") or ""


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """One record as flat columns (for CSV and tables)."""
    lat = record.get("latency_us") or {}
    acc = record.get("accuracy") or {}
    return {
        "model": record.get("model"),
        "backend": record.get("backend"),
        "provider": provider_label(record.get("provider")),
        "format": record.get("format"),
        "precision": record.get("precision"),
        "batch": record.get("batch"),
        "threads": record.get("threads"),
        "size_bytes": record.get("size_bytes"),
        "accuracy": acc.get("top1"),
        "accuracy_samples": acc.get("samples"),
        **{f"{k}_us": lat.get(k) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")},
        "runs": record.get("runs"),
        "throughput_per_s": record.get("throughput_per_s"),
        "init_ms": record.get("init_ms"),
        "first_run_ms": record.get("first_run_ms"),
        "peak_rss_mb": record.get("peak_rss_mb"),
        "unstable": record.get("unstable"),
        "status": record.get("status"),
        "error": record.get("error"),
    }


def to_csv(records: Iterable[dict[str, Any]]) -> str:
    rows = [flat_row(r) for r in records]
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def to_json(records: list[dict[str, Any]], **extra: Any) -> str:
    from ..atomic import json_text

    return json_text({**extra, "results": records})


def bench_table(records: list[dict[str, Any]], title: str = "Benchmark") -> Any:
    """Records as a rich table; p99, init time, memory and the environment are in the JSON."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col, just in (("model", "left"), ("backend", "left"), ("runs on", "left"), ("prec.", "left"),
                      ("size", "right"), ("accuracy", "right"), ("p50", "right"), ("p90", "right"),
                      ("per s", "right")):
        table.add_column(col, justify=just, no_wrap=col in ("p50", "p90", "size"))  # type: ignore[arg-type]
    for r in records:
        if r.get("status") != "ok":
            continue
        row = flat_row(r)
        acc = f"{row['accuracy'] * 100:.2f}%" if row["accuracy"] is not None else ""
        p50 = fmt_us(row["p50_us"]) + (" [yellow]~[/]" if r.get("unstable") else "")
        batch = f" x{row['batch']}" if row["batch"] and row["batch"] != 1 else ""
        table.add_row(_short(r["model"]) + batch, row["backend"], row["provider"], row["precision"],
                      human_size(row["size_bytes"]), acc, p50, fmt_us(row["p90_us"]),
                      f"{row['throughput_per_s']:.0f}" if row["throughput_per_s"] else "")
    return table


def _short(path: str) -> str:
    from pathlib import Path

    return Path(path).name


def plain_table(records: list[dict[str, Any]], title: str = "Benchmark") -> str:
    """The rich table as plain text (for a .txt output file)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(bench_table(records, title))
    return console.file.getvalue()  # type: ignore[attr-defined]
