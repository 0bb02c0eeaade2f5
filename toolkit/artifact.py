"""Artifacts: a model file plus its manifest, a JSON sidecar `FILE.manifest.json` (cnn.tflite.manifest.json)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from .specs import TensorSpec, specs_from_dicts, specs_to_dicts

MANIFEST_SCHEMA = 2


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(model_path: str | os.PathLike) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".manifest.json")


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
    task: str | None = None  # classification, regression, ...: what metrics and parity rules apply
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
            "task": self.task,
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
        """A manifest from JSON, with every field's type checked (TypeError or ValueError naming the field): a
        manifest is a file anyone can edit, and a wrong type must not surface later as a crash elsewhere."""
        _check_fields(d)
        return cls(
            file=d["file"],
            format=d["format"],
            precision=d["precision"],
            sha256=d["sha256"],
            inputs=specs_from_dicts(d.get("inputs", [])),
            outputs=specs_from_dicts(d.get("outputs", [])),
            model=d.get("model"),
            task=d.get("task"),
            source=d.get("source"),
            producer=d.get("producer", {}),
            versions=d.get("versions", {}),
            quantization=d.get("quantization"),
            seed=d.get("seed"),
            metrics=d.get("metrics", {}),
            extra=d.get("extra", {}),
        )


_TEXT_FIELDS = ("file", "format", "precision", "sha256")
_OPTIONAL_TEXT = ("model", "task")
_OBJECT_FIELDS = ("producer", "versions", "metrics", "extra")
_OPTIONAL_OBJECTS = ("source", "quantization")


def _check_fields(d: dict[str, Any]) -> None:
    def wrong(name: str, what: str) -> TypeError:
        return TypeError(f"its field '{name}' is {type(d.get(name)).__name__}, not {what}")

    for name in _TEXT_FIELDS:
        if not isinstance(d[name], str):
            raise wrong(name, "text")
    for name in _OPTIONAL_TEXT:
        if d.get(name) is not None and not isinstance(d[name], str):
            raise wrong(name, "text")
    for name in _OBJECT_FIELDS:
        if not isinstance(d.get(name, {}), dict):
            raise wrong(name, "an object")
    for name in _OPTIONAL_OBJECTS:
        if d.get(name) is not None and not isinstance(d[name], dict):
            raise wrong(name, "an object")
    for name in ("inputs", "outputs"):
        if not isinstance(d.get(name, []), list):
            raise wrong(name, "a list")
    if d.get("seed") is not None and type(d["seed"]) is not int:
        raise wrong("seed", "an integer")
    extra = d.get("extra", {})
    if extra.get("dataset") is not None and not isinstance(extra["dataset"], str):
        raise TypeError("its field 'extra.dataset' is not text")
    parity = d.get("metrics", {}).get("parity")
    if parity is not None and not (isinstance(parity, dict) and isinstance(parity.get("passed"), bool)):
        raise TypeError("its field 'metrics.parity' has no true/false 'passed'")


@dataclass
class Artifact:
    """A model file on disk and, when it has one, its manifest."""

    path: Path
    manifest: Manifest | None = None
    notes: list[str] = field(default_factory=list)
    format_name: str | None = None  # detected from the file's bytes when opened
    # For a file without a manifest: the precision its format plugin inferred (quantized ops, integer I/O).
    precision_hint: str | None = None

    @property
    def format(self) -> str:
        """The name of the registered format this file is in (tflite, onnx, ...)."""
        if self.format_name is None:
            from . import formats

            self.format_name = formats.detect(self.path)
        return self.format_name

    @property
    def precision(self) -> str:
        if self.manifest:
            return self.manifest.precision
        return self.precision_hint or "unknown"

    @property
    def task(self) -> str | None:
        return self.manifest.task if self.manifest else None

    @property
    def size_bytes(self) -> int:
        if self.path.is_dir():  # a model that is a folder: what it takes on the device's storage
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return self.path.stat().st_size

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Artifact":
        """Open a model file; read its manifest if one sits beside it and still describes these bytes.

        A manifest whose sha256 is not the file's (the file was replaced, or a write was interrupted) is
        ignored, with a note: trusting it would report the wrong precision or provenance."""
        from . import formats

        path = Path(path)
        fmt = formats.detect(path)
        mpath = manifest_path(path)
        with atomic.folder_lock(path.parent, exclusive=False):  # never between a publisher's file and manifest
            manifest, note = cls._read_manifest(path, mpath, fmt)
        return cls(path, manifest, [note] if note else [], format_name=fmt)

    @staticmethod
    def _read_manifest(path: Path, mpath: Path, fmt: str) -> tuple["Manifest | None", str | None]:
        if not mpath.exists():
            return None, None
        try:
            data = json.loads(mpath.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            manifest = Manifest.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            why = (f"the field {e} is missing" if isinstance(e, KeyError) else
                   "it is not JSON" if isinstance(e, json.JSONDecodeError) else
                   "it is nested too deeply" if isinstance(e, RecursionError) else
                   f"{str(e)[:100]}" if isinstance(e, (ValueError, TypeError)) and str(e) else
                   "its fields have the wrong types")
            return None, f"ignoring {mpath.name}: it is unreadable ({why}); delete it or make the artifact again"
        except OSError as e:
            return None, f"ignoring {mpath.name}: it cannot be read ({e.strerror})"
        if manifest.format != fmt:
            return None, (f"ignoring {mpath.name}: it describes a {manifest.format} file, and this one is {fmt}; "
                          "delete it or make the artifact again")
        if manifest.sha256 != sha256_file(path):
            return None, f"ignoring {mpath.name}: it describes another version of the file (sha256 differs)"
        parity = manifest.metrics.get("parity")
        if parity and not parity["passed"]:
            return manifest, (f"{path.name} failed its check against {parity.get('against', 'its source')}: its "
                              "answers differ from its source's, so its numbers are not the source's")
        return manifest, None

    def write_manifest(self) -> Path:
        if self.manifest is None:
            raise ValueError("artifact has no manifest to write")
        return atomic.write_json(manifest_path(self.path), self.manifest.to_dict())

    def verify_checksum(self) -> bool:
        return self.manifest is not None and sha256_file(self.path) == self.manifest.sha256


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
