"""The TFLite format: a FlatBuffer with the TFL3 identifier, read with the `tflite` schema package (no
TensorFlow, no LiteRT), so any backend can read a .tflite's inputs, outputs, scales and operators."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from toolkit.api import Availability, ModelFormat, TensorSpec

from .parse_once import parse_once


@parse_once
def _read(path: Path) -> Any:
    from .tflite_reader import read_tflite  # the schema package is imported only when a file is read

    return read_tflite(path)


class TFLiteFormat(ModelFormat):
    name = "tflite"
    suffixes = (".tflite",)
    description = "TensorFlow Lite / LiteRT FlatBuffer (read with the tflite schema package)"

    def available(self) -> Availability:
        if importlib.util.find_spec("tflite") is None:
            return Availability(False, "the tflite schema package is not installed (pip install tflite)")
        return Availability(True)

    def sniff(self, head: bytes, path: Path) -> bool:
        return head[4:8] == b"TFL3"

    def read_specs(self, path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
        info = _read(path)
        return info.inputs, info.outputs

    def footprint(self, path: Path) -> dict[str, Any]:
        from .tflite_reader import footprint_bytes

        return footprint_bytes(path.read_bytes(), str(path))

    def describe(self, path: Path) -> dict[str, Any]:
        info = _read(path)
        out: dict[str, Any] = {"ops": info.ops}
        quantized = [s for s in [*info.inputs, *info.outputs] if s.quantization is not None]
        types = set(info.tensor_dtypes)
        if any(s.dtype == "int16" for s in quantized):
            out["precision"] = "int16x8"
        elif quantized or ("int8" in types and "QUANTIZE" in info.ops):  # integer graph, maybe float at its edges
            out["precision"] = "int8"
        elif "int8" in types:  # int8 weights, float activations
            out["precision"] = "dynamic"
        elif "float16" in types:
            out["precision"] = "fp16"
        elif types <= {"float32", "int32", "int64", "bool"}:
            out["precision"] = "fp32"
        return out
