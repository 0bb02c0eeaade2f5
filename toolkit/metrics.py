"""Task metrics (top-1 for classifiers, MAE/RMSE for regression) and the parity rules that decide whether a
converted or quantized model still computes what its source computes. Pure functions over numpy arrays."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# The task metrics are part of the measuring protocol, which also runs on devices without the toolkit.
from .benchmark.protocol import add_sums, finish_metrics, per_sample, task_metrics  # noqa: F401

# fp32 artifacts must give the source's outputs: different kernels reorder float sums, nothing more.
TOLERANCES = {"fp32": (1e-4, 1e-4), "fp16": (2e-2, 2e-2)}  # precision: (rtol, atol)
# A quantized classifier must pick the same class as its source on at least this share of real inputs.
QUANTIZED_MIN_TOP1_AGREEMENT = 0.97
# Any other quantized output: its error may be at most this share of the spread of the source's values.
QUANTIZED_MAX_NRMSE = 0.1


def headline(task: str | None, evaluation: Mapping[str, Any] | None) -> tuple[str, float] | None:
    """The one number a table shows for an evaluation: ("top1", 0.88) or ("rmse", 0.3)."""
    if not evaluation:
        return None
    for key in ("top1", "rmse", "mae"):
        if evaluation.get(key) is not None:
            return key, float(evaluation[key])
    return None


# What `--parity NAME=VALUE` may override.
THRESHOLDS = {"rtol": "relative tolerance of fp32 and fp16 files", "atol": "absolute tolerance of fp32 and fp16 files",
              "top1": "least top-1 agreement of a quantized classifier (0..1)",
              "nrmse": "largest error of a quantized regression, as a share of the source's spread"}


def parse_thresholds(pairs: Mapping[str, str]) -> dict[str, float]:
    """`--parity` values checked: known names, numbers >= 0 (top1 at most 1)."""
    from .errors import UnknownNameError, UsageError

    out = {}
    for name, text in pairs.items():
        if name not in THRESHOLDS:
            raise UnknownNameError("--parity threshold", name, THRESHOLDS)
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--parity {name}={text!r} is not a number", f"{name}: {THRESHOLDS[name]}") from None
        if not (value >= 0 and (name != "top1" or value <= 1)):
            raise UsageError(f"--parity {name}={text} is out of range", f"{name}: {THRESHOLDS[name]}")
        out[name] = value
    return out


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], task: str | None,
                    precision: str, thresholds: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Compare every output of a candidate with its source's, by the rule for the task and precision; the
    thresholds (rtol, atol, top1, nrmse) default to the module's constants."""
    given = dict(thresholds or {})
    missing = sorted(set(reference) - set(candidate))
    if missing:
        return {"passed": False, "rule": "same outputs", "outputs": {}, "top1_agreement": None,
                "max_abs_diff": None, "missing": missing}
    per_output: dict[str, dict[str, Any]] = {}
    exact = precision in TOLERANCES
    rtol, atol = TOLERANCES.get(precision, TOLERANCES["fp32"])
    rtol, atol = given.get("rtol", rtol), given.get("atol", atol)
    min_top1, max_nrmse = given.get("top1", QUANTIZED_MIN_TOP1_AGREEMENT), given.get("nrmse", QUANTIZED_MAX_NRMSE)
    rules = set()
    for name, ref in reference.items():
        ref2, got2 = per_sample(np.asarray(ref, np.float64)), per_sample(np.asarray(candidate[name], np.float64))
        if ref2.shape != got2.shape:
            per_output[name] = {"passed": False, "why": f"shape {list(got2.shape)} != {list(ref2.shape)}"}
            continue
        diff = np.abs(ref2 - got2)
        item: dict[str, Any] = {"max_abs_diff": float(diff.max()) if diff.size else 0.0}
        if ref2.shape[1] > 1 and task in (None, "classification"):
            item["top1_agreement"] = round(float((ref2.argmax(1) == got2.argmax(1)).mean()), 5)
        if exact:
            item["passed"] = bool(np.allclose(got2, ref2, rtol=rtol, atol=atol))
            rules.add(f"allclose(rtol={rtol}, atol={atol})")
        elif "top1_agreement" in item:
            item["passed"] = item["top1_agreement"] >= min_top1
            rules.add(f"top-1 agreement >= {min_top1}")
        else:
            spread = float(ref2.std()) or 1.0
            item["nrmse"] = round(float(np.sqrt(((ref2 - got2) ** 2).mean())) / spread, 5)
            item["passed"] = item["nrmse"] <= max_nrmse
            rules.add(f"error <= {max_nrmse} x the source's spread")
        per_output[name] = item
    agreements = [o["top1_agreement"] for o in per_output.values() if "top1_agreement" in o]
    diffs = [o["max_abs_diff"] for o in per_output.values() if "max_abs_diff" in o]
    used = {"rtol", "atol"} if exact else {"top1" if "top-1" in r else "nrmse" for r in rules}
    unused = sorted(set(given) - used)
    return {
        "passed": all(o.get("passed") for o in per_output.values()),
        "rule": "; ".join(sorted(rules)) or "same shapes",
        **({"thresholds": given} if given else {}),
        **({"unused_thresholds": unused} if unused else {}),
        "outputs": per_output,
        "top1_agreement": min(agreements) if agreements else None,
        "max_abs_diff": max(diffs) if diffs else None,
    }
