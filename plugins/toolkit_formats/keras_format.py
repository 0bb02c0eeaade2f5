"""The Keras 3 format: a .keras zip holding config.json and the weights. Inputs are read from the config
without importing Keras; outputs need Keras itself, so they come from the manifest or the keras backend."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Iterator

from toolkit.api import ModelFileError, ModelFormat, TensorSpec

MAX_CONFIG_BYTES = 16 << 20  # a config is kilobytes; refuse a zip bomb before reading it


def read_config(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise ModelFileError(f"'{path.name}' has a {info.file_size >> 20} MiB config.json", "Re-save the model")
            return json.loads(zf.read(info))
    except zipfile.BadZipFile:  # no central directory: cut short (an interrupted copy or download) or damaged
        raise ModelFileError(f"'{path.name}' is not a complete .keras file (the zip archive is damaged or truncated)",
                             "Re-save the model with model.save(...)") from None
    except (KeyError, ValueError, OSError) as e:
        raise ModelFileError(f"'{path.name}' is not a valid .keras file ({type(e).__name__})",
                             "Check it is a .keras file saved by Keras 3") from None


def _input_layers(node: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > 50:
        return
    if isinstance(node, dict):
        if node.get("class_name") == "InputLayer":
            yield node.get("config", {})
        for value in node.values():
            yield from _input_layers(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _input_layers(value, depth + 1)


class KerasFormat(ModelFormat):
    name = "keras"
    suffixes = (".keras",)
    description = "Keras 3 model archive (.keras zip)"

    def sniff(self, head: bytes, path: Path) -> bool:
        return head[:4] == b"PK\x03\x04" and path.suffix.lower() == ".keras"

    def read_specs(self, path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
        config = read_config(path)
        inputs = []
        for layer in _input_layers(config):
            shape = layer.get("batch_shape") or layer.get("batch_input_shape")
            if isinstance(shape, list):
                inputs.append(TensorSpec(str(layer.get("name", "input")), tuple(shape), str(layer.get("dtype") or
                                                                                           "float32")))
        return inputs, []

    def describe(self, path: Path) -> dict[str, Any]:
        """The precision of the weights, from the layers' dtype policies (a Keras model trains in float)."""
        text = json.dumps(read_config(path))
        return {"precision": "fp16" if '"float16"' in text or "mixed_float16" in text else "fp32"}
