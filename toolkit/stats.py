"""Statistics for comparing two latency series: a bootstrap confidence interval on the relative difference of a
statistic, and the verdict a CI pipeline can act on.

Two statistics are compared, because they answer different questions: the median of single calls (what a typical
call costs; steady under rare preemptions) and the mean time per call over whole blocks of consecutive calls (the
sustained rate: what a device delivers). A busy neighbour on the same core leaves most calls untouched, so the
median barely moves, while the sustained rate halves: only the second statistic sees it.

The samples of one benchmark are a time series, not independent draws: a machine has slow phases that last many
calls. So the bootstrap resamples contiguous blocks, not single calls (a moving-block bootstrap), which widens
the interval by as much as the series drifts; a plain bootstrap would call a 2 % drift between two runs
significant with 99.9 % confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
BLOCKS = 40  # a series is resampled as this many contiguous blocks


@dataclass(frozen=True)
class Difference:
    """B against A: the relative difference of a statistic (0.10 = B is 10 % slower) and its confidence interval."""

    a: float
    b: float
    change: float
    low: float
    high: float
    confidence: float

    def verdict(self, threshold: float) -> str:
        """"regression" when B is slower than A by more than `threshold` with confidence (the interval's low end
        is past it), "improvement" for the same the other way, "no change" when the whole interval lies within
        +-threshold, else "inconclusive" (the interval reaches past the threshold: measure again, longer)."""
        if self.low > threshold:
            return "regression"
        if self.high < -threshold:
            return "improvement"
        if -threshold <= self.low and self.high <= threshold:
            return "no change"
        return "inconclusive"


def _resampled(x: np.ndarray, statistic: str, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """The statistic ("median" or "mean") of `resamples` moving-block bootstrap resamples of `x`."""
    n = len(x)
    block = max(1, n // BLOCKS)
    starts = rng.integers(0, n - block + 1, size=(resamples, -(-n // block)))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(resamples, -1)[:, :n]
    return getattr(np, statistic)(x[idx], axis=1)


def difference(a: Sequence[float], b: Sequence[float], statistic: str = "median", confidence: float = CONFIDENCE,
               resamples: int = RESAMPLES, seed: int = 0) -> Difference:
    """The relative difference statistic(b) / statistic(a) - 1 with a percentile confidence interval."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(xa) == 0 or len(xb) == 0:
        raise ValueError("both series need samples")
    rng = np.random.default_rng(seed)
    ratios = _resampled(xb, statistic, rng, resamples) / _resampled(xa, statistic, rng, resamples) - 1.0
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    ma, mb = float(getattr(np, statistic)(xa)), float(getattr(np, statistic)(xb))
    return Difference(a=ma, b=mb, change=mb / ma - 1.0, low=float(low), high=float(high), confidence=confidence)


# When the two statistics disagree, the worse verdict stands: a sustained slowdown is not hidden by a steady median.
SEVERITY = ("no change", "improvement", "inconclusive", "regression")


def worst(*verdicts: str) -> str:
    return max(verdicts, key=SEVERITY.index)
