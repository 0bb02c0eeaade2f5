"""Tensor specs: name, shape (None for a dynamic dimension), dtype and quantization parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: real = scale * (q - zero_point), per tensor or per `axis`."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point), "axis": self.axis}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Quantization | None":
        if not d:
            return None
        axis = d.get("axis")
        if not isinstance(d["scale"], list) or not isinstance(d["zero_point"], list) or not (
                axis is None or (isinstance(axis, int) and not isinstance(axis, bool))):
            raise TypeError("quantization needs lists of scale and zero_point and an integer axis")
        return cls(tuple(float(s) for s in d["scale"]), tuple(int(z) for z in d["zero_point"]), axis)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str
    quantization: Quantization | None = None
    # Names of dynamic dimensions where the format has them (ONNX dim_param), aligned with shape.
    dim_names: tuple[str | None, ...] = field(default=())

    @property
    def is_dynamic(self) -> bool:
        return any(d is None for d in self.shape)

    def accepts(self, shape: Sequence[int]) -> bool:
        """Whether an array of `shape` fits: same rank, and every fixed dimension equal."""
        return len(shape) == len(self.shape) and all(d is None or d == s for d, s in zip(self.shape, shape))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["quantization"] = self.quantization.to_dict() if self.quantization else None
        d["dim_names"] = list(self.dim_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        """A spec from JSON, checked: manifests are files anyone can edit."""
        if not isinstance(d, dict) or not isinstance(d["name"], str) or not isinstance(d["dtype"], str):
            raise TypeError("a tensor needs a name and a dtype as text")
        if not isinstance(d["shape"], list) or not all(
                dim is None or (type(dim) is int and dim >= 0) for dim in d["shape"]):
            raise ValueError(f"tensor '{d['name'][:40]}' has a shape that is not a list of sizes")
        return cls(
            name=d["name"],
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
            quantization=Quantization.from_dict(d.get("quantization")),
            dim_names=tuple(d.get("dim_names") or ()),
        )

    def quantize(self, real: np.ndarray) -> np.ndarray:
        """Turn real values into this tensor's dtype (a no-op for float tensors)."""
        from .benchmark.protocol import quantize

        return quantize(real, self.to_dict())

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """Turn this tensor's values into real numbers (float32)."""
        from .benchmark.protocol import dequantize

        return dequantize(values, self.to_dict())


def specs_to_dicts(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in specs]


def specs_from_dicts(items: Sequence[dict[str, Any]]) -> list[TensorSpec]:
    return [TensorSpec.from_dict(d) for d in items]
