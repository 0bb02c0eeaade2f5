"""Latency statistics over many timed runs."""

from __future__ import annotations

from typing import Sequence

import numpy as np

# A run is flagged unstable when its tail is far from its median: noisy neighbours, throttling, too few runs.
UNSTABLE_P90_OVER_P50 = 1.3


def latency_summary(times_ns: Sequence[int]) -> dict[str, float]:
    us = np.asarray(times_ns, dtype=np.float64) / 1000.0
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(us.mean()), 3),
        "std": round(float(us.std()), 3),
        "min": round(float(us.min()), 3),
        "max": round(float(us.max()), 3),
    }


def is_unstable(summary: dict[str, float], runs: int) -> bool:
    return runs < 10 or summary["p90"] > UNSTABLE_P90_OVER_P50 * summary["p50"]
