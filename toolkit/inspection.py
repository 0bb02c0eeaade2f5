"""`toolkit inspect`: what a model file is, from its format plugin and every runtime that can load it, in a child
process (parsing a model is the child's job: the CLI stays small whatever the file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import formats, plugins
from .artifact import Artifact, sha256_file
from .errors import ToolkitError


def inspect_in_child(path: str) -> dict[str, Any]:
    """Child entry point: specs, the format's view, each capable runtime's view, the manifest."""
    artifact = Artifact.open(path)
    fmt = formats.get(artifact.format)
    inputs, outputs = fmt.read_specs(artifact.path)
    described = fmt.describe(artifact.path)
    report: dict[str, Any] = {
        "file": str(artifact.path), "format": fmt.name, "size_bytes": artifact.size_bytes,
        "sha256": None if artifact.path.is_dir() else sha256_file(artifact.path),
        "precision": artifact.manifest.precision if artifact.manifest else described.get("precision", "unknown"),
        "inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs],
        **{k: v for k, v in described.items() if k not in ("ops", "precision")},
        # From the file, so they show even when no runtime here can load it (which is what Flex ops cause).
        "flex_ops": sorted(op for op in described.get("ops", []) if str(op).startswith("Flex")),
        **fmt.inspect(artifact.path),
        "runtimes": {}, "notes": list(artifact.notes),
        "manifest": artifact.manifest.to_dict() if artifact.manifest else None,
    }
    for backend in plugins.registries().backends:
        if backend.supports(artifact) or not backend.available().ok:
            continue
        try:
            seen = backend.inspect(artifact)
        except ToolkitError as e:
            report["notes"].append(f"{backend.name}: {e.one_line()}")
            continue
        if seen:
            for key in ("ops", "parameters", "macs"):  # what the file alone could not say
                if key in seen and key not in report:
                    report[key] = seen.pop(key)
            if seen:
                report["runtimes"][backend.name] = seen
    return report


def inspect_model(path: str | Path) -> dict[str, Any]:
    from .child import run_in_child

    formats.detect(path)  # a missing or unknown file fails here, in one line, before a child starts
    return run_in_child("toolkit.inspection:inspect_in_child", path=str(path))
