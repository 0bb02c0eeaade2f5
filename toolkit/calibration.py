"""The calibration record a quantizer writes into its artifact's manifest."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .interfaces import ConversionOptions


def calibration_record(options: ConversionOptions, method: str, **details: Any) -> dict[str, Any]:
    """scheme, method and layout details, plus which real samples calibrated it (dataset, count, sha256)."""
    calib = options.calibration
    return {
        "scheme": "int8",
        "method": method,
        **details,
        "calibration": {
            "dataset": options.calibration_name,
            "split": "train",
            "samples": int(len(calib)) if calib is not None else 0,
            "sha256": hashlib.sha256(np.ascontiguousarray(calib).tobytes()).hexdigest() if calib is not None else None,
        },
    }
