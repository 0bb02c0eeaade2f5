"""Convert and quantize artifacts, each in a child process, then check every result against its source on
real data. A result whose answers differ from its source's fails loudly (CheckFailedError, exit 1); the file
and its manifest stay on disk, marked as failed, so nothing is lost."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import plugins
from .artifact import EXTENSIONS, Artifact
from .child import run_in_child
from .errors import CheckFailedError, ConversionError, UsageError
from .interfaces import ConversionOptions, Converter, Quantizer

VERIFY_SAMPLES = 500
# fp32 artifacts must give the source's logits: different kernels reorder float sums, nothing more.
FP32_RTOL = 1e-4
FP32_ATOL = 1e-4
# A quantized artifact must pick the same class as its source on at least this share of real inputs.
QUANTIZED_MIN_TOP1_AGREEMENT = 0.97


def find_converter(source_format: str, target_format: str) -> Converter:
    regs = plugins.registries()
    for conv in regs.converters:
        if conv.source_format == source_format and conv.target_format == target_format:
            return conv
    targets = sorted({c.target_format for c in regs.converters if c.source_format == source_format})
    raise UsageError(f"no converter turns {source_format} into {target_format}",
                     f"From {source_format} the installed converters make: {', '.join(targets) or 'nothing'}")


def find_quantizer(source_format: str, scheme: str, target_format: str | None = None) -> Quantizer:
    regs = plugins.registries()
    matches = [q for q in regs.quantizers if source_format in q.source_formats and scheme in q.schemes
               and (target_format is None or q.target_format == target_format)]
    if not matches:
        schemes = sorted({s for q in regs.quantizers if source_format in q.source_formats for s in q.schemes})
        target = f" into {target_format}" if target_format else ""
        raise UsageError(f"no quantizer does {scheme} for {source_format} models{target}",
                         f"Schemes for {source_format}: {', '.join(schemes) or 'none installed'}")
    if len({q.target_format for q in matches}) > 1:
        formats = ", ".join(sorted({q.target_format for q in matches}))
        raise UsageError(f"{scheme} quantization of {source_format} models can produce {formats}",
                         "Choose one with --to")
    return matches[0]


def default_output(source: Path, target_format: str, precision: str) -> Path:
    suffix = "" if precision == "fp32" else f"_{precision}"
    return source.with_name(f"{source.stem}{suffix}{EXTENSIONS[target_format]}")


def _check_output(source: Artifact, output: Path, target_format: str) -> Path:
    output = Path(output)
    if target_format not in EXTENSIONS:
        raise UsageError(f"unknown model format '{target_format}'", f"Known: {', '.join(EXTENSIONS)}")
    if output.resolve() == source.path.resolve():
        raise UsageError(f"--output '{output}' would overwrite the source model", "Pick another output path")
    if output.suffix != EXTENSIONS[target_format]:
        raise UsageError(f"--output '{output}' does not end in {EXTENSIONS[target_format]}",
                         f"Name it like model{EXTENSIONS[target_format]}")
    return output


def _run_step(kind: str, name: str, source: Artifact, output: Path, scheme: str | None,
              calibration: str | None, samples: int, seed: int, extra: dict[str, Any]) -> Artifact:
    run_in_child("toolkit.operations:step_in_child", kind=kind, name=name, source=str(source.path),
                 output=str(output), scheme=scheme, calibration=calibration, samples=samples, seed=seed,
                 extra=extra)
    artifact = Artifact.open(output)
    if artifact.manifest is None:
        raise ConversionError(f"the {name} plugin wrote '{output.name}' without a manifest (or with a stale one)",
                              "A converter must return its artifact with a manifest: report it to its author")
    return artifact


def step_in_child(kind: str, name: str, source: str, output: str, scheme: str | None, calibration: str | None,
                  samples: int, seed: int, extra: dict[str, Any]) -> str:
    """Child entry point: one converter or quantizer run."""
    regs = plugins.registries()
    options = ConversionOptions(seed=seed, extra=extra)
    if calibration:
        dataset = regs.datasets.get(calibration)
        options.calibration = dataset.calibration(samples, seed)
        options.calibration_name = calibration
    src = Artifact.open(source)
    if kind == "convert":
        regs.converters.get(name).convert(src, Path(output), options)
    else:
        regs.quantizers.get(name).quantize(src, Path(output), scheme or "int8", options)
    return output


def convert(source_path: str | Path, to: str, output: str | Path | None = None, dataset: str | None = None,
            verify: bool = True, extra: dict[str, Any] | None = None) -> Artifact:
    source = Artifact.open(source_path)
    if source.format == to:
        raise UsageError(f"'{source.path.name}' is already in {to} format", "Pick another --to")
    converter = find_converter(source.format, to)
    out = _check_output(source, Path(output) if output else default_output(source.path, to, "fp32"), to)
    artifact = _run_step("convert", converter.name, source, out, None, None, 0, 0, extra or {})
    if verify:
        verify_against_source(artifact, source, dataset)
    return artifact


def quantize(source_path: str | Path, scheme: str, calibration: str, output: str | Path | None = None,
             samples: int = 200, seed: int = 0, verify: bool = True, to: str | None = None) -> Artifact:
    source = Artifact.open(source_path)
    plugins.registries().datasets.get(calibration)  # an unknown name fails here, with a suggestion
    quantizer = find_quantizer(source.format, scheme, to)
    target = quantizer.target_format
    out = _check_output(source, Path(output) if output else default_output(source.path, target, scheme), target)
    artifact = _run_step("quantize", quantizer.name, source, out, scheme, calibration, samples, seed, {})
    if verify:
        verify_against_source(artifact, source, calibration)
    return artifact


def train(model: str, dataset: str, epochs: int, output_dir: str | Path,
          on_start: Callable[[int], None] | None = None,
          on_batch: Callable[[int, int, dict], None] | None = None, **options: Any) -> tuple[Artifact, dict]:
    """Train a model family in a child process; progress comes back through the callbacks."""
    regs = plugins.registries()
    regs.models.get(model)
    regs.datasets.get(dataset)

    def on_progress(payload: tuple) -> None:
        if payload[0] == "start" and on_start:
            on_start(payload[1])
        elif payload[0] == "batch" and on_batch:
            on_batch(*payload[1:])

    path, metrics = run_in_child("toolkit.operations:train_in_child", timeout_s=None, on_progress=on_progress,
                                 model=model, dataset=dataset, epochs=epochs, output_dir=str(output_dir),
                                 options=options)
    return Artifact.open(path), metrics


def train_in_child(model: str, dataset: str, epochs: int, output_dir: str, options: dict[str, Any]) -> tuple:
    """Child entry point: train, sending progress to the parent."""
    from .child import report_progress

    family = plugins.registries().models.get(model)
    artifact, metrics = family.train(dataset, epochs, Path(output_dir),
                                     on_start=lambda total: report_progress(("start", total)),
                                     on_batch=lambda e, b, logs: report_progress(("batch", e, b, logs)),
                                     **options)
    return str(artifact.path), metrics


# ---------------------------------------------------------------------------------------------- verification
_reference_cache: dict[tuple[str, str], np.ndarray] = {}


def _verification_inputs(artifact: Artifact, source: Artifact, dataset: str | None) -> tuple[np.ndarray, str]:
    name = dataset or (source.manifest.extra.get("dataset") if source.manifest else None)
    spec = artifact.manifest.inputs[0] if artifact.manifest and artifact.manifest.inputs else None
    if name:
        ds = plugins.registries().datasets.get(name)
        if ds.available()[0]:
            x, _ = ds.load("test")
            if spec is None or tuple(spec.shape[1:]) == tuple(x.shape[1:]):
                return x[:VERIFY_SAMPLES], f"{name}:test[:{min(len(x), VERIFY_SAMPLES)}]"
    if spec is None or any(d is None for d in spec.shape[1:]):
        raise UsageError(f"cannot check '{artifact.path.name}' against its source: no dataset fits its input",
                         "Pass --dataset NAME")
    rng = np.random.default_rng(0)
    return rng.random((64, *spec.shape[1:]), dtype=np.float32), "synthetic uniform[0,1) x64"


def predict_with_default_backend(artifact: Artifact, x: np.ndarray) -> np.ndarray:
    """First output (dequantized) of `artifact` on `x`, run in a child by its default backend."""
    from .benchmark.runner import default_backend

    key = (artifact.manifest.sha256 if artifact.manifest else str(artifact.path),
           hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())
    if key not in _reference_cache:
        out = run_in_child("toolkit.benchmark.measure:predict", model=str(artifact.path),
                           backend=default_backend(artifact), arrays=[x])
        _reference_cache[key] = out[0]
    return _reference_cache[key]


def compare(reference: np.ndarray, candidate: np.ndarray, quantized: bool) -> dict[str, Any]:
    ref, got = reference.reshape(len(reference), -1), candidate.reshape(len(candidate), -1)
    agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    max_abs = float(np.abs(ref - got).max())
    if quantized:
        passed = agreement >= QUANTIZED_MIN_TOP1_AGREEMENT
        rule = f"top-1 agreement >= {QUANTIZED_MIN_TOP1_AGREEMENT}"
    else:
        passed = bool(np.allclose(got, ref, rtol=FP32_RTOL, atol=FP32_ATOL))
        rule = f"allclose(rtol={FP32_RTOL}, atol={FP32_ATOL})"
    return {"passed": passed, "rule": rule, "top1_agreement": round(agreement, 5), "max_abs_diff": max_abs}


def verify_against_source(artifact: Artifact, source: Artifact, dataset: str | None = None) -> dict[str, Any]:
    """Run artifact and source on the same real inputs, record the parity in the manifest, fail if it breaks."""
    x, data = _verification_inputs(artifact, source, dataset)
    reference = predict_with_default_backend(source, x)
    candidate = predict_with_default_backend(artifact, x)
    parity = compare(reference, candidate, quantized=artifact.precision != "fp32")
    parity.update({"against": source.path.name, "data": data, "samples": int(len(x))})
    if artifact.manifest is not None:
        artifact.manifest.metrics["parity"] = parity
        artifact.write_manifest()
    if not parity["passed"]:
        raise CheckFailedError(
            f"'{artifact.path.name}' does not match its source '{source.path.name}' on {data}: "
            f"top-1 agreement {parity['top1_agreement']:.3f}, max |diff| {parity['max_abs_diff']:.3g} "
            f"(needs {parity['rule']})",
            "The file is kept with parity.passed=false in its manifest; inspect it before shipping")
    return parity
