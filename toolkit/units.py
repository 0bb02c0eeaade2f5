"""Human-readable sizes and latencies, shared by the CLI tables and the quickstart report."""

from __future__ import annotations


def human_size(n: float | None) -> str:
    """Binary units, named as such: 1024 bytes is 1.0 KiB."""
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_us(v: float | None) -> str:
    """Microseconds below 10 ms, milliseconds above."""
    if v is None:
        return ""
    return f"{v / 1000:.2f} ms" if v >= 10_000 else f"{v:.1f} us"
