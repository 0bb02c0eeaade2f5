"""Artifacts: a model file plus its manifest, a JSON sidecar `FILE.manifest.json` (cnn.tflite.manifest.json)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from .errors import ModelFileError
from .specs import TensorSpec, specs_from_dicts, specs_to_dicts

MANIFEST_SCHEMA = 1
EXTENSIONS = {"keras": ".keras", "tflite": ".tflite", "onnx": ".onnx"}


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(model_path: str | os.PathLike) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".manifest.json")


def sniff_format(path: str | os.PathLike) -> str:
    """Recognise a model file by its bytes, not only its name. Raises ModelFileError with a fix."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file '{p}' does not exist", "Check the path")
    if p.is_dir():
        raise ModelFileError(f"'{p}' is a folder, not a model file", "Pass a .keras, .tflite or .onnx file")
    with open(p, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise ModelFileError(f"'{p}' is empty or truncated ({p.stat().st_size} bytes)", "Re-export the model")
    if head[4:8] == b"TFL3":
        return "tflite"
    if head[:2] == b"PK" and p.suffix == ".keras":
        return "keras"
    if p.suffix == ".onnx" or head[0] == 0x08:  # ONNX ModelProto starts with field 1 (ir_version, varint)
        if head[0] != 0x08:
            raise ModelFileError(f"'{p}' is not a valid ONNX file (it does not start with an ONNX header)",
                                 "Re-export the model, or check that the download finished")
        return "onnx"
    if p.suffix == ".tflite":
        raise ModelFileError(f"'{p}' is not a valid TFLite file (no TFL3 identifier)",
                             "Re-export the model, or check that the download finished")
    raise ModelFileError(f"'{p}' is not a recognised model file", "Supported formats: .keras, .tflite, .onnx")


@dataclass
class Manifest:
    """What an artifact is and where it came from; JSON is the truth."""

    file: str
    format: str
    precision: str
    sha256: str
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    model: str | None = None
    source: dict[str, Any] | None = None  # {"file": ..., "sha256": ...}
    producer: dict[str, Any] = field(default_factory=dict)  # {"plugin": ..., "version": ...}
    versions: dict[str, str] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    seed: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "file": self.file,
            "format": self.format,
            "precision": self.precision,
            "model": self.model,
            "sha256": self.sha256,
            "inputs": specs_to_dicts(self.inputs),
            "outputs": specs_to_dicts(self.outputs),
            "source": self.source,
            "producer": self.producer,
            "versions": self.versions,
            "quantization": self.quantization,
            "seed": self.seed,
            "metrics": self.metrics,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        return cls(
            file=d["file"],
            format=d["format"],
            precision=d["precision"],
            sha256=d["sha256"],
            inputs=specs_from_dicts(d.get("inputs", [])),
            outputs=specs_from_dicts(d.get("outputs", [])),
            model=d.get("model"),
            source=d.get("source"),
            producer=d.get("producer", {}),
            versions=d.get("versions", {}),
            quantization=d.get("quantization"),
            seed=d.get("seed"),
            metrics=d.get("metrics", {}),
            extra=d.get("extra", {}),
        )


@dataclass
class Artifact:
    """A model file on disk and, when it has one, its manifest."""

    path: Path
    manifest: Manifest | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def format(self) -> str:
        return self.manifest.format if self.manifest else sniff_format(self.path)

    @property
    def precision(self) -> str:
        return self.manifest.precision if self.manifest else "unknown"

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Artifact":
        """Open a model file; read its manifest if one sits beside it and still describes these bytes.

        A manifest whose sha256 is not the file's (the file was replaced, or a write was interrupted) is
        ignored, with a note: trusting it would report the wrong precision or provenance."""
        path = Path(path)
        fmt = sniff_format(path)
        mpath = manifest_path(path)
        manifest = None
        if mpath.exists():
            try:
                manifest = Manifest.from_dict(json.loads(mpath.read_text()))
            except (ValueError, KeyError) as e:
                raise ModelFileError(f"manifest '{mpath}' is unreadable ({e})", "Delete it or re-create the artifact")
            if manifest.format != fmt:
                raise ModelFileError(f"manifest '{mpath}' says format {manifest.format} but the file is {fmt}",
                                     "Delete the stale manifest or re-create the artifact")
            if manifest.sha256 != sha256_file(path):
                return cls(path, None, [f"ignored {mpath.name}: it describes another version of the file "
                                        "(sha256 differs)"])
        return cls(path, manifest)

    def write_manifest(self) -> Path:
        if self.manifest is None:
            raise ValueError("artifact has no manifest to write")
        return atomic.write_json(manifest_path(self.path), self.manifest.to_dict())

    def verify_checksum(self) -> bool:
        return self.manifest is not None and sha256_file(self.path) == self.manifest.sha256


def derive_manifest(source: Artifact, path: Path, *, format: str, precision: str, inputs: list[TensorSpec],
                    outputs: list[TensorSpec], producer: dict[str, Any], versions: dict[str, str],
                    seed: int | None = None) -> Manifest:
    """The manifest of an artifact made from `source`: it points back at the source by name and sha256, and
    keeps what the source knew about its training data."""
    src = source.manifest
    return Manifest(
        file=path.name,
        format=format,
        precision=precision,
        sha256=sha256_file(path),
        model=src.model if src else source.path.stem,
        inputs=list(inputs),
        outputs=list(outputs),
        source={"file": source.path.name, "sha256": sha256_file(source.path), "format": source.format},
        producer=producer,
        versions={**library_versions("edge-toolkit"), **versions},
        seed=seed,
        extra={k: v for k, v in (src.extra if src else {}).items() if k in ("dataset", "num_classes")},
    )


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions, without importing them."""
    from importlib import metadata

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
