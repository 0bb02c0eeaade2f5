"""Typed benchmark records: a measured pair (BenchRecord) and a pair that failed or was skipped (BenchFailure).

JSON is the truth: to_dict()/from_dict() round-trip, and every record carries the schema version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

RECORD_SCHEMA = 3


@dataclass
class BenchRecord:
    """One (model, backend) pair, measured."""

    model: str
    backend: str
    format: str
    precision: str
    latency_us: dict[str, float]
    runs: int
    warmup: int
    batch: int = 1
    threads: int | None = None
    provider: dict[str, Any] = field(default_factory=dict)  # what really ran: delegate, execution providers
    inputs: dict[str, list[int]] = field(default_factory=dict)  # the shapes fed
    throughput_per_s: float | None = None  # samples per second over the whole timed series
    scenario: str = "single-stream"  # MLPerf's: single-stream (p90 latency is the headline) or offline (samples/s)
    stability: dict[str, Any] = field(default_factory=dict)  # cv, robust_cv, windows_p50_us, window_spread, reasons
    samples_us: list[float] = field(default_factory=list)  # at most 2,000 timed runs, evenly spaced, in time order
    block_means_us: list[float] = field(default_factory=list)  # mean latency of 100 consecutive blocks of all runs
    pin: list[int] | None = None  # the CPUs the measuring process was pinned to
    processes: int = 1  # measured in this many fresh processes, pooled (toolkit/benchmark/processes.py)
    cost: dict[str, Any] | None = None  # macs and flops per sample, gflops_per_s achieved, peak_gflops, share_of_peak
    init_ms: float | None = None
    first_run_ms: float | None = None
    peak_rss_mb: float | None = None  # the measuring process's own peak (VmHWM)
    size_bytes: int | None = None
    evaluation: dict[str, Any] | None = None  # task metrics on a dataset's held-out split
    unstable: bool = False
    task: str | None = None
    source_model: str | None = None
    runner: str = "local"
    target: str | None = None
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    schema: int = RECORD_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchRecord":
        return cls(**_known(cls, d))


@dataclass
class BenchFailure:
    """A pair that could not be measured (status "error") or was left out because it cannot run ("skipped")."""

    model: str
    backend: str
    error: str  # one line: what is wrong, with the model and backend named, and how to fix it
    exit_code: int = 1
    status: str = "error"
    details: str | None = None  # the child's traceback or the runtime's output, with --traceback only
    schema: int = RECORD_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchFailure":
        return cls(**_known(cls, d))


Record = BenchRecord | BenchFailure


def record_from_dict(d: Mapping[str, Any]) -> Record:
    return BenchRecord.from_dict(d) if d.get("status") == "ok" else BenchFailure.from_dict(d)


def _seconds_from_env(name: str, default: float) -> float:
    """A protocol duration from the environment (the same variables `toolkit bench` reads), else its default."""
    import os

    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


def _known(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `cls` found in `d`: a record from a newer schema still loads, ignoring what it added."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclass
class BenchRequest:
    """What to measure: one (model, backend) pair and the protocol's settings. JSON-ready, like the records."""

    model: str
    backend: str
    provider: str | None = None
    threads: int | None = None
    batch: int = 1
    shapes: dict[str, list[int]] = field(default_factory=dict)
    inputs: str | None = None  # an .npz of real inputs
    runs: int = 100  # at least this many timed runs ...
    warmup: int = 10
    min_seconds: float = field(default_factory=lambda: _seconds_from_env("TOOLKIT_BENCH_MIN_SECONDS", 1.0))  # ... and
    # at least this long
    warmup_seconds: float = field(default_factory=lambda: _seconds_from_env("TOOLKIT_BENCH_WARMUP_SECONDS", 0.5))
    windows: int = 5  # the timed runs are split in this many windows, whose medians must agree
    max_seconds: float | None = None  # stop timing early once this much time is spent (at least 10 runs)
    scenario: str = "single-stream"
    pin: list[int] | None = None  # CPUs to pin the measuring process to
    processes: int = 1  # measure in this many fresh processes, one after another, and pool them
    strict_provider: bool = False  # a provider that fell back to another is an error, not a flagged record
    dataset: str | None = None
    eval_seconds: float | None = None  # stop evaluation after about this long
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # the backend's declared options (-o key=value)
    runner: str = "local"
    target: str | None = None
    # How the runner reaches the target: kind, host, user, port, ssh_config, python (from its profile or URL).
    connection: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchRequest":
        return cls(**_known(cls, d))
