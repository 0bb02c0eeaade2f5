"""Calibration data for quantizers: checked against the model's inputs, and recorded in the manifest."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from .errors import UsageError
from .interfaces import ConversionOptions
from .specs import TensorSpec


def checked_calibration(options: ConversionOptions, spec: TensorSpec) -> np.ndarray:
    """The calibration samples for input `spec`, refused in one clear line when missing or not shaped for it.
    A multi-input dataset gives a dict by input name; its entry for `spec` is taken."""
    calib = options.calibration
    if isinstance(calib, Mapping):
        calib = calib.get(spec.name)
    if calib is None or len(calib) == 0:
        raise UsageError(f"{options.precision} quantization needs calibration data for input '{spec.name}'",
                         "Pass --calibration DATASET")
    if not spec.accepts((spec.shape[0] or len(calib), *calib.shape[1:])):
        raise UsageError(f"calibration data '{options.calibration_name}' has samples of shape "
                         f"{list(calib.shape[1:])}, the model's input '{spec.name}' wants {list(spec.shape[1:])}",
                         "Calibrate with the dataset the model was trained on")
    return calib


def _arrays(calib: Any) -> list[tuple[str, np.ndarray]]:
    if calib is None:
        return []
    if isinstance(calib, Mapping):
        return [(k, np.asarray(calib[k])) for k in sorted(calib)]
    return [("", np.asarray(calib))]


def calibration_record(options: ConversionOptions, method: str, **details: Any) -> dict[str, Any]:
    """scheme, method and layout details, plus which real samples calibrated it (dataset, count, sha256 over the
    samples' bytes, input by input in name order)."""
    arrays = _arrays(options.calibration)
    digest = hashlib.sha256()
    for name, arr in arrays:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return {
        "scheme": options.precision,
        "method": method,
        **details,
        "calibration": {
            "dataset": options.calibration_name,
            "split": "train",
            "samples": int(len(arrays[0][1])) if arrays else 0,
            "sha256": digest.hexdigest() if arrays else None,
        },
    }
