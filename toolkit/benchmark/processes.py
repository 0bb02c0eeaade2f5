"""One measurement in several processes (`toolkit bench --processes N`), pooled into one record.

A process's timings hide what changes between processes: where the runtime's buffers landed in memory, which
mode a shared machine was in for those few seconds. Two runs of one process each can then differ by more than
anything inside either shows, and a comparison takes that for a change of the model. Measured in several fresh
processes, one after another, the spread between them enters the record (its windows, its samples in process
order) and so the intervals of `toolkit compare`: the approach of pyperf.

Exact where the parts allow it (runs, mean, standard deviation, min, max, throughput); the percentiles, MAD
and robust spread come from the pooled kept samples, each process's evenly spaced in time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from ..records import BenchRecord
from . import protocol


def pool(parts: Sequence[BenchRecord]) -> BenchRecord:
    """The record of one measurement made in `parts` (one record per process, the same request)."""
    if len(parts) == 1:
        return parts[0]
    runs = np.array([p.runs for p in parts], dtype=np.float64)
    means = np.array([p.latency_us["mean"] for p in parts])
    stds = np.array([p.latency_us["std"] for p in parts])
    total = float(runs.sum())
    mean = float((runs * means).sum() / total)
    std = float(np.sqrt(max(0.0, float((runs * (stds ** 2 + means ** 2)).sum() / total) - mean ** 2)))
    share = max(1, protocol.SAMPLES_KEPT // len(parts))  # each process keeps an equal, evenly spaced share
    samples = [x for p in parts for x in p.samples_us[::max(1, -(-len(p.samples_us) // share))]]
    us = np.asarray(samples, dtype=np.float64)
    # Percentiles and MAD from the pooled samples; the moments and extremes exactly, from every run.
    latency = {**protocol.latency_summary(us * 1000.0), "mean": round(mean, 3), "std": round(std, 3),
               "min": min(p.latency_us["min"] for p in parts), "max": max(p.latency_us["max"] for p in parts)}
    windows = [w for p in parts for w in p.stability.get("windows_p50_us", [])]
    stability = protocol.judge(us, windows, int(total), mean, std)
    stability["processes_p50_us"] = [p.latency_us["p50"] for p in parts]
    first = parts[0]
    batch = first.batch or 1
    cost = first.cost
    if cost and cost.get("macs"):
        from .measure import cost_model

        cost = cost_model(cost["macs"], batch, latency["p50"], cost.get("peak_gflops"))
    return replace(
        first, latency_us=latency, runs=int(total), stability=stability, unstable=bool(stability["reasons"]),
        samples_us=samples, block_means_us=[b for p in parts for b in p.block_means_us],
        throughput_per_s=round(batch * total / (mean * total / 1e6), 2) if mean > 0 else None,
        peak_rss_mb=max((p.peak_rss_mb for p in parts if p.peak_rss_mb is not None), default=None),
        processes=len(parts), cost=cost)
