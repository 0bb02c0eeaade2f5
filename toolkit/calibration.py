"""The calibration record a quantizer writes into its artifact's manifest."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .errors import UsageError
from .interfaces import ConversionOptions
from .specs import TensorSpec


def checked_calibration(options: ConversionOptions, spec: TensorSpec) -> np.ndarray:
    """The calibration samples, refused in one clear line when missing or not shaped for the model's input."""
    calib = options.calibration
    if calib is None or len(calib) == 0:
        raise UsageError("int8 quantization needs calibration data", "Pass --calibration DATASET")
    if not spec.accepts((spec.shape[0] or len(calib), *calib.shape[1:])):
        raise UsageError(f"calibration data '{options.calibration_name}' has samples of shape "
                         f"{list(calib.shape[1:])}, the model's input '{spec.name}' wants {list(spec.shape[1:])}",
                         "Calibrate with the dataset the model was trained on")
    return calib


def calibration_record(options: ConversionOptions, method: str, **details: Any) -> dict[str, Any]:
    """scheme, method and layout details, plus which real samples calibrated it (dataset, count, sha256)."""
    calib = options.calibration
    return {
        "scheme": options.precision,
        "method": method,
        **details,
        "calibration": {
            "dataset": options.calibration_name,
            "split": "train",
            "samples": int(len(calib)) if calib is not None else 0,
            "sha256": hashlib.sha256(np.ascontiguousarray(calib).tobytes()).hexdigest() if calib is not None else None,
        },
    }
