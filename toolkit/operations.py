"""Convert, quantize and train, each in a child process. The core owns artifacts: a converter or quantizer writes
into a working path and says what it made; the core reads the file's specs, checks it against its source on
real data, and only then moves it under its final name with its manifest. A result whose answers differ from its
source's fails loudly (CheckFailedError, exit 1) and is not published (kept as NAME.failed.EXT with keep_failed).
Working files are registered with the janitor, so a killed command leaves none behind."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping

import numpy as np

from . import atomic, formats, janitor, plugins
from .artifact import Artifact, Manifest, library_versions, manifest_path, sha256_file
from .child import run_in_child
from .errors import CheckFailedError, DataUnavailableError, ToolkitError, UnknownNameError, UsageError
from .inputs import short_name
from .interfaces import ConversionOptions, ConversionResult, Converter, Quantizer
from .metrics import compare_outputs
from .options import resolve_options
from .specs import TensorSpec, specs_from_dicts
from .text import check_vocabulary

VERIFY_SAMPLES = 500
# What a derived artifact keeps from its source's manifest: the training data, and what a device needs to feed it
# (its class names, the tokenizer's settings, the features and their categories, the files beside the model).
KEPT_EXTRA = ("dataset", "num_classes", "class_names", "tokenizer", "features", "files")


@dataclass
class Choice:
    """A plugin picked to do a step, and how: the rule is printed when several could have served."""

    item: Any
    others: list[str] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        if not self.others:
            return None
        kind = "converter" if isinstance(self.item, Converter) else "quantizer"
        return (f"using {kind} {self.item.name} (highest priority, {self.item.priority}); also possible: "
                f"{', '.join(self.others)} (choose with --{kind})")


def _pick(candidates: list[Any]) -> Choice:
    ranked = sorted(candidates, key=lambda c: (-c.priority, c.name))
    return Choice(ranked[0], [c.name for c in ranked[1:]])


def choose_converter(source_format: str, target_format: str, name: str | None = None) -> Choice:
    regs = plugins.registries()
    formats.get(target_format)  # an unknown format name fails here, with a suggestion
    if name:
        conv = regs.converters.get(name)
        if (conv.source_format, conv.target_format) != (source_format, target_format):
            raise UsageError(f"converter {name} turns {conv.source_format} into {conv.target_format}, not "
                             f"{source_format} into {target_format}", "Pick another --converter")
        return Choice(conv)
    matches = [c for c in regs.converters if c.source_format == source_format and c.target_format == target_format]
    if not matches:
        targets = sorted({c.target_format for c in regs.converters if c.source_format == source_format})
        raise UsageError(f"no converter turns {source_format} into {target_format}",
                         f"From {source_format} the installed converters make: {', '.join(targets) or 'nothing'}")
    return _pick(matches)


def all_schemes(source_format: str | None = None) -> list[str]:
    return sorted({s for q in plugins.registries().quantizers
                   if source_format is None or source_format in q.source_formats for s in q.schemes})


def choose_quantizer(source_format: str, scheme: str, target_format: str | None = None,
                     name: str | None = None) -> Choice:
    regs = plugins.registries()
    if name:
        quant = regs.quantizers.get(name)
        if scheme not in quant.schemes:
            raise UnknownNameError(f"scheme of quantizer {name}", scheme, quant.schemes)
        if source_format not in quant.source_formats:
            raise UsageError(f"quantizer {name} takes {', '.join(quant.source_formats)} models, not {source_format}",
                             "Pick another --quantizer")
        if target_format and quant.target_format != target_format:
            raise UsageError(f"quantizer {name} makes {quant.target_format} files, not {target_format}")
        return Choice(quant)
    schemes = all_schemes(source_format)
    if scheme not in schemes:
        if scheme in all_schemes():
            raise UsageError(f"no quantizer does {scheme} for {source_format} models",
                             f"Schemes for {source_format}: {', '.join(schemes) or 'none installed'}")
        raise UnknownNameError("scheme", scheme, all_schemes())
    matches = [q for q in regs.quantizers if source_format in q.source_formats and scheme in q.schemes
               and (target_format is None or q.target_format == target_format)]
    if not matches:
        raise UsageError(f"no quantizer does {scheme} for {source_format} models into {target_format}",
                         "Drop --to, or pick another")
    if len({q.target_format for q in matches}) > 1:
        made = ", ".join(sorted({q.target_format for q in matches}))
        raise UsageError(f"{scheme} quantization of {source_format} models can produce {made}", "Choose one with --to")
    return _pick(matches)


def default_output(source: Path, target_format: str, precision: str) -> Path:
    suffix = "" if precision == "fp32" else f"_{precision}"
    return source.with_name(f"{source.stem}{suffix}{formats.suffix_of(target_format)}")


def _check_output(source: Artifact, output: Path, target_format: str) -> Path:
    if output.resolve() == source.path.resolve():
        raise UsageError(f"--output '{output}' would overwrite the source model", "Pick another output path")
    output = formats.check_output_name(output, target_format)
    folder = output.parent
    if not folder.is_dir():
        raise UsageError(f"the folder of --output '{output}' does not exist", f"Create it first: mkdir -p {folder}")
    _check_writable(folder)
    if output.is_dir():
        raise UsageError(f"--output '{output}' is a folder", "Name a file, e.g. model.onnx")
    return output


def _check_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write in '{folder}' (permission denied)", "Pick another --output")


def _working_path(output: Path) -> Path:
    """A hidden file beside the output, ending in the same suffix (some converters insist on it), named with this
    process; the working files of commands that died without cleaning up are removed first."""
    janitor.sweep(output.parent, f".{output.name}.", f".partial{output.suffix}")
    return output.with_name(f".{output.name}.{janitor.owner_tag()}-{secrets.token_hex(4)}.partial{output.suffix}")


def step_in_child(kind: str, name: str, source: str, output: str, scheme: str | None, calibration: str | None,
                  samples: int, seed: int, extra: dict[str, Any], reference_inputs: Any = None) -> dict[str, Any]:
    """Child entry point: one converter or quantizer run; then the written file's specs, read by its format, and
    the source's own answers on `reference_inputs` (this process has the source's framework loaded already: a
    second child would load it again just for that)."""
    from .child import report_phase

    regs = plugins.registries()
    options = ConversionOptions(seed=seed, extra=extra)
    if calibration:
        report_phase(f"loading calibration data from {calibration}")
        dataset = regs.datasets.get(calibration)
        dataset.require_available()
        options.calibration = dataset.calibration(samples, seed)
        options.calibration_name = calibration
    src = Artifact.open(source)
    out = Path(output)
    if kind == "quantize" and src.manifest is None:  # the file itself says (a parse the CLI leaves to us)
        _refuse_quantized(src.path, formats.get(src.format).describe(src.path).get("precision"))
    report_phase("converting" if kind == "convert" else "quantizing")
    if kind == "convert":
        result = regs.converters.get(name).convert(src, out, options)
    else:
        options.precision = scheme or "int8"
        result = regs.quantizers.get(name).quantize(src, out, scheme or "int8", options)
    if not isinstance(result, ConversionResult):
        raise TypeError(f"{kind} {name} returned a {type(result).__name__}, not a ConversionResult")
    if not out.exists():
        raise UsageError(f"{kind} {name} reported success but wrote no file", "Report it to the plugin's author")
    report_phase("reading the result's inputs and outputs")
    fmt = formats.get(formats.detect(out))
    inputs, outputs = fmt.read_specs(out)
    reference = None
    if reference_inputs is not None:
        from .benchmark.measure import predict
        from .benchmark.runner import default_backend

        report_phase("running the source on the check's inputs")
        reference = predict(str(src.path), default_backend(src), reference_inputs)
    return {"result": result.to_dict(), "format": fmt.name, "describe": fmt.describe(out),
            "inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs],
            "reference": reference}


def _refuse_quantized(path: Path, precision: str | None) -> None:
    if precision not in (None, "unknown", "fp32", "fp16"):
        raise UsageError(f"'{path.name}' is already quantized ({precision})", "Quantize the float model it was made from")


def _publish(kind: str, choice: Choice, source: Artifact, output: Path, scheme: str | None,
             calibration: str | None, samples: int, seed: int, extra: dict[str, Any], verify: bool,
             dataset: str | None, keep_failed: bool, on_note: Callable[[str], None] | None,
             thresholds: Mapping[str, float] | None = None) -> Artifact:
    """Run the step into a working path, build the manifest, check parity, then move file and manifest in place."""
    item = choice.item
    companions = companion_files(source)
    check_inputs = _dataset_inputs(source, dataset or calibration) if verify else None
    with janitor.temporary(_working_path(output)) as work:
        try:
            made = run_in_child("toolkit.operations:step_in_child", kind=kind, name=item.name,
                                source=str(source.path), output=str(work), scheme=scheme, calibration=calibration,
                                samples=samples, seed=seed, extra=extra,
                                reference_inputs=check_inputs[0] if check_inputs else None)
            if made.get("reference") is not None and check_inputs:
                _reference_cache[_reference_key(source, check_inputs[0])] = made["reference"]
        except ToolkitError as e:  # name the step, so the line says which model and which plugin it belongs to
            e.message = f"{source.path.name} -> {output.name} ({_role(kind)} {item.name}): {e.message}"
            raise
        result = ConversionResult.from_dict(made["result"])
        for text in result.details.get("notes", []) if on_note else ():
            on_note(str(text))  # type: ignore[misc]  # what the plugin chose for the user (e.g. unrolled an LSTM)
        regs = plugins.registries()
        owner = (regs.converters if kind == "convert" else regs.quantizers).owner(item.name)
        manifest = _derived_manifest(source, output, work, made, result, kind, item.name, owner, seed, extra)
        candidate = Artifact(work, manifest, format_name=made["format"])
        if verify:
            try:
                parity = check_parity(candidate, source, dataset or calibration, thresholds, check_inputs)
            except ToolkitError as e:
                e.message = f"checking {output.name} against {source.path.name}: {e.message}"
                raise
            manifest.metrics["parity"] = parity
            if parity.get("unused_thresholds") and on_note:
                on_note(f"--parity {', '.join(parity['unused_thresholds'])} does not apply to this file's check "
                        f"({parity['rule']})")
            if parity.get("evaluation"):  # the held-out score the artifact itself reached, beside its source's
                manifest.metrics["evaluation"] = parity.pop("evaluation")
            if not parity["passed"]:
                hint = f"Nothing was written as {output.name}"
                if keep_failed:
                    failed = output.with_name(f"{output.stem}.failed{output.suffix}")
                    manifest.file = failed.name
                    with publishing(output.parent):
                        os.replace(work, failed)
                        for suffix, data in companions.items():
                            atomic.write_bytes(failed.with_name(failed.name + suffix), data)
                        atomic.write_json(manifest_path(failed), manifest.to_dict())
                    hint += f"; the rejected file is kept as {failed.name}, marked failed in its manifest"
                else:
                    hint += "; keep the rejected file for inspection with --keep-failed"
                raise CheckFailedError(
                    f"'{output.name}' does not match its source '{source.path.name}' on {parity['data']}: "
                    f"{_parity_text(parity, manifest.metrics.get('evaluation'))} (needs {parity['rule']})", hint)
        with publishing(output.parent):
            os.replace(work, output)
            for suffix, data in companions.items():
                atomic.write_bytes(output.with_name(output.name + suffix), data)
            atomic.write_json(manifest_path(output), manifest.to_dict())
    return Artifact(output, manifest, format_name=made["format"])


def companion_files(source: Artifact) -> dict[str, bytes]:
    """The files that travel beside `source` (a vocabulary...), as its manifest lists them, each checked."""
    listed = source.manifest.extra.get("files", {}) if source.manifest else {}
    out = {}
    for suffix, digest in (listed.items() if isinstance(listed, dict) else ()):
        if not re.fullmatch(r"\.[A-Za-z0-9][A-Za-z0-9._-]{0,40}", str(suffix)):
            raise UsageError(f"the manifest of '{source.path.name}' lists a companion file '{str(suffix)[:60]}' that "
                             "is not a file suffix like .vocab.txt", "Make the artifact again")
        path = source.path.with_name(source.path.name + str(suffix))
        try:
            data = path.read_bytes()
        except OSError:
            raise UsageError(f"'{path.name}', which belongs with '{source.path.name}', is missing or unreadable",
                             "Copy it from the folder the model was made in") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise UsageError(f"'{path.name}' is not the file '{source.path.name}' was made with (sha256 differs)",
                             "Copy the right one from the folder the model was made in")
        out[str(suffix)] = data
    return out


def publishing(folder: Path) -> ContextManager[None]:
    """Serialise publishing in `folder` across processes: file and manifest of one command land together, never
    interleaved with another command writing the same name, and never seen half-done by a reader (Artifact.open
    reads under the shared side of the same lock)."""
    return atomic.folder_lock(folder, exclusive=True)


def _role(kind: str) -> str:
    return "converter" if kind == "convert" else "quantizer"


def _parity_text(parity: Mapping[str, Any], evaluation: Mapping[str, Any] | None = None) -> str:
    parts = []
    if parity.get("top1_agreement") is not None:
        parts.append(f"top-1 agreement {parity['top1_agreement']:.3f}")
    if parity.get("max_abs_diff") is not None:
        parts.append(f"max |diff| {parity['max_abs_diff']:.3g}")
    if evaluation:
        src, art = evaluation["source"], evaluation["artifact"]
        if src.get("top1") is not None:
            parts.append(f"accuracy {src['top1'] * 100:.2f}% -> {art['top1'] * 100:.2f}%")
        elif src.get("mae") is not None:
            parts.append(f"MAE {src['mae']:.4g} -> {art['mae']:.4g}")
    return ", ".join(parts) or "outputs differ"


def _derived_manifest(source: Artifact, output: Path, work: Path, made: dict[str, Any], result: ConversionResult,
                      kind: str, name: str, owner: str, seed: int, extra: dict[str, Any]) -> Manifest:
    """The manifest of an artifact made from `source`: it points back at the source by name and sha256, and
    keeps what the source knew about its training data and task."""
    src = source.manifest
    kept = {k: v for k, v in (src.extra if src else {}).items() if k in KEPT_EXTRA}
    return Manifest(
        file=output.name,
        format=made["format"],
        precision=result.precision,
        sha256=sha256_file(work),
        model=src.model if src else source.path.stem,
        task=src.task if src else None,
        inputs=specs_from_dicts(made["inputs"]),
        outputs=specs_from_dicts(made["outputs"]),
        source={"file": source.path.name, "sha256": sha256_file(source.path), "format": source.format},
        producer={"plugin": owner, _role(kind): name,
                  "plugin_version": _plugin_version(owner)},
        versions={**library_versions("edge-toolkit"), **result.versions},
        quantization=result.quantization,
        seed=seed,
        extra={**kept, **made.get("describe", {}), **result.details, **({"options": extra} if extra else {})},
    )


def _plugin_version(owner: str) -> str | None:
    for record in plugins.loaded().records:
        if record.name == owner:
            return record.version
    return None


def convert(source_path: str | Path, to: str, output: str | Path | None = None, dataset: str | None = None,
            verify: bool = True, converter: str | None = None, options: Mapping[str, Any] | None = None,
            on_note: Callable[[str], None] | None = None, keep_failed: bool = False,
            thresholds: Mapping[str, float] | None = None) -> Artifact:
    source = _open_source(source_path, on_note)
    if source.format == to:
        raise UsageError(f"'{source.path.name}' is already in {to} format", "Pick another --to")
    choice = choose_converter(source.format, to, converter)
    if choice.note and on_note:
        on_note(choice.note)
    extra = resolve_options(choice.item, options or {})
    out = _check_output(source, Path(output) if output else default_output(source.path, to, "fp32"), to)
    if out.exists() and on_note:
        on_note(f"{out.name} exists and will be replaced if the new one passes its check (choose another with --output)")
    if dataset:
        plugins.registries().datasets.get(dataset)
    return _publish("convert", choice, source, out, None, None, 0, 0, extra, verify, dataset, keep_failed, on_note,
                    thresholds)


def _open_source(path: str | Path, on_note: Callable[[str], None] | None) -> Artifact:
    source = Artifact.open(path)
    for text in source.notes if on_note else ():
        on_note(text)  # type: ignore[misc]
    return source


def default_calibration(source: Artifact) -> str | None:
    """The dataset the source's manifest says it was trained on (kept through conversions)."""
    return source.manifest.extra.get("dataset") if source.manifest else None


def recommended_scheme(source: Artifact, to: str | None) -> tuple[str, dict[str, Any], str]:
    """The scheme (and quantizer options) the source's model family recommends for the target format, measured
    fastest at equal accuracy; int8 for a model of no known family. Returns (scheme, options, why)."""
    regs = plugins.registries()
    targets = sorted({q.target_format for q in regs.quantizers if source.format in q.source_formats})
    target = to or (targets[0] if len(targets) == 1 else None)
    family = source.manifest.model if source.manifest else None
    if family and family in regs.models.names() and target:
        table = regs.models.get(family).recommended_quantization
        if target in table:
            scheme, options, why = table[target]
            return scheme, dict(options), f"the {family} family's default for {target}: {why}"
    return "int8", {}, "int8, the default for a model of no known family"


def quantize(source_path: str | Path, scheme: str | None, calibration: str | None = None,
             output: str | Path | None = None, samples: int = 200, seed: int = 0, verify: bool = True,
             to: str | None = None, quantizer: str | None = None, options: Mapping[str, Any] | None = None,
             on_note: Callable[[str], None] | None = None, keep_failed: bool = False,
             thresholds: Mapping[str, float] | None = None) -> Artifact:
    """Quantize with `scheme`; None takes the one the model's family measured fastest at equal accuracy.
    `thresholds` override the parity rule's (rtol, atol, top1, nrmse)."""
    source = _open_source(source_path, on_note)
    _refuse_quantized(source.path, source.precision)
    if not any(source.format in q.source_formats for q in plugins.registries().quantizers):
        origin = source.manifest.source.get("file") if source.manifest and source.manifest.source else None
        takes = sorted({f for q in plugins.registries().quantizers for f in q.source_formats})
        raise UsageError(f"no installed quantizer takes {source.format} files (they take {', '.join(takes) or 'none'})",
                         f"Quantize the model it was made from, {origin}" if origin else
                         f"Quantize the {' or '.join(takes)} model it was made from")
    if scheme is None:
        scheme, preset, why = recommended_scheme(source, to)
        options = {**preset, **(options or {})}
        if on_note:
            on_note(f"scheme {scheme}{''.join(f' -o {k}={v}' for k, v in preset.items())}: {why} "
                    "(choose another with --scheme)")
    choice = choose_quantizer(source.format, scheme, to, quantizer)
    if choice.note and on_note:
        on_note(choice.note)
    q: Quantizer = choice.item
    extra = resolve_options(q, options or {})
    out = _check_output(source, Path(output) if output else default_output(source.path, q.target_format, scheme),
                        q.target_format)
    if calibration is None and q.calibration_needed(scheme):
        calibration = default_calibration(source)
        if calibration is None:
            why = ("its manifest was ignored: " + "; ".join(source.notes) if source.notes
                   else "it has no manifest naming its training dataset")
            raise UsageError(f"{scheme} quantization needs calibration data and for '{source.path.name}' {why}",
                             "Pass --calibration DATASET")
        if on_note:
            on_note(f"calibrating on {calibration}, the dataset recorded in {source.path.name}'s manifest")
    if calibration:
        check_vocabulary(source, plugins.registries().datasets.get(calibration))  # unknown: fails with a suggestion
    if out.exists() and on_note:
        on_note(f"{out.name} exists and will be replaced if the new one passes its check (choose another with --output)")
    return _publish("quantize", choice, source, out, scheme, calibration, samples, seed, extra, verify, None,
                    keep_failed, on_note, thresholds)


def dataset_for(model: str, requested: str | None) -> tuple[str, list[str]]:
    """The requested dataset, else the family's default, else its first fallback that is on this machine, with a
    note when a fallback was taken."""
    regs = plugins.registries()
    if requested:
        regs.datasets.get(requested)
        return requested, []
    family = regs.models.get(model)
    if family.default_dataset is None:
        raise UsageError(f"model {model} has no default dataset", "Pass --dataset NAME")
    av = regs.datasets.get(family.default_dataset).available()
    if av.ok:
        return family.default_dataset, []
    for name in family.fallback_datasets:
        if name in regs.datasets and regs.datasets.get(name).available().ok:
            return name, [f"{family.default_dataset} is not available ({av.reason}); using {name} instead"]
    raise DataUnavailableError(f"dataset {family.default_dataset} is not available: {av.reason}")


def train(model: str, dataset: str, epochs: int, output_dir: str | Path,
          on_start: Callable[[int], None] | None = None,
          on_batch: Callable[[int, int, dict], None] | None = None, **options: Any) -> tuple[Artifact, dict]:
    """Train a model family in a child process (progress comes back through the callbacks); then publish the
    model with its manifest, and metrics.json beside it."""
    regs = plugins.registries()
    family = regs.models.get(model)
    data = regs.datasets.get(dataset)
    data.require_available()
    dataset = data.name  # a data file by its absolute path, so later commands find it from anywhere
    given = options.pop("model_options", None) or {}
    if given or family.options:  # checked here, in the parent: an unknown option is one line before any work
        options["model_options"] = resolve_options(family, given)
    output_dir = Path(output_dir)
    output = output_dir / f"{model}{formats.suffix_of(family.format)}"
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output '{output_dir}' is a file, not a folder", "Name a folder for the model and its files")
    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    _check_writable(output_dir)
    try:
        return _train_into(output_dir, output, family, model, dataset, epochs, on_start, on_batch, options)
    except BaseException:
        if created and not any(output_dir.iterdir()):
            output_dir.rmdir()  # a folder made for a run that produced nothing
        raise


def _train_into(output_dir: Path, output: Path, family: Any, model: str, dataset: str, epochs: int,
                on_start: Callable[[int], None] | None, on_batch: Callable[[int, int, dict], None] | None,
                options: dict[str, Any]) -> tuple[Artifact, dict]:
    regs = plugins.registries()

    def on_progress(payload: list) -> None:
        if payload[0] == "start" and on_start:
            on_start(payload[1])
        elif payload[0] == "batch" and on_batch:
            on_batch(*payload[1:])

    with janitor.temporary(_working_path(output)) as work:
        made = run_in_child("toolkit.operations:train_in_child", timeout_s=None, on_progress=on_progress,
                            model=model, dataset=dataset, epochs=epochs, output=str(work), options=options)
        if not work.exists():
            raise UsageError(f"model {model} reported success but saved nothing", "Report it to the plugin's author")
        metrics = made["metrics"]
        headline = {k: metrics[k] for k in ("accuracy", "mae", "rmse") if k in metrics}
        data = regs.datasets.get(dataset)
        files = {suffix: text.encode("utf-8") for suffix, text in made.get("files", {}).items()}
        manifest = Manifest(
            file=output.name, format=family.format, precision="fp32", sha256=sha256_file(work), model=model,
            task=data.task, inputs=specs_from_dicts(made["inputs"]), outputs=specs_from_dicts(made["outputs"]),
            producer={"plugin": regs.models.owner(model), "model": model, "plugin_version":
                      _plugin_version(regs.models.owner(model))},
            versions={**library_versions("edge-toolkit"), **made.get("versions", {})},
            seed=options.get("seed"),
            metrics={**headline, "dataset": dataset},
            extra={**made.get("extra", {}), "dataset": dataset, "num_classes": data.num_classes,
                   **({"files": {s: hashlib.sha256(b).hexdigest() for s, b in files.items()}} if files else {})},
        )
        with publishing(output_dir):
            os.replace(work, output)
            for suffix, blob in files.items():
                atomic.write_bytes(output.with_name(output.name + suffix), blob)
            atomic.write_json(manifest_path(output), manifest.to_dict())
            atomic.write_json(output_dir / "metrics.json", metrics)
    return Artifact(output, manifest, format_name=family.format), metrics


def train_in_child(model: str, dataset: str, epochs: int, output: str, options: dict[str, Any]) -> dict:
    """Child entry point: train, sending progress to the parent."""
    from dataclasses import asdict

    from .child import report_progress

    family = plugins.registries().models.get(model)
    result = family.train(dataset, epochs, Path(output),
                          on_start=lambda total: report_progress(["start", total]),
                          on_batch=lambda e, b, logs: report_progress(["batch", e, b, logs]),
                          **options)
    return {**asdict(result), "inputs": [s.to_dict() for s in result.inputs],
            "outputs": [s.to_dict() for s in result.outputs]}


# ---------------------------------------------------------------------------------------------- verification
_reference_cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}


def _dataset_inputs(source: Artifact, dataset: str | None,
                    inputs: list[TensorSpec] | None = None) -> tuple[Any, str] | None:
    """Real held-out inputs for the check, when a dataset fits the model's inputs (the source's, by default)."""
    name = dataset or default_calibration(source)
    inputs = inputs if inputs is not None else (source.manifest.inputs if source.manifest else [])
    if name:
        ds = plugins.registries().datasets.get(name)
        check_vocabulary(source, ds)
        if ds.available().ok:
            x, _ = ds.load("test")
            if isinstance(x, Mapping):
                n = min(len(v) for v in x.values())
                return {k: v[:VERIFY_SAMPLES] for k, v in x.items()}, f"{name}:test[:{min(n, VERIFY_SAMPLES)}]"
            if len(inputs) == 1 and inputs[0].accepts((inputs[0].shape[0] or len(x), *x.shape[1:])):
                return x[:VERIFY_SAMPLES], f"{name}:test[:{min(len(x), VERIFY_SAMPLES)}]"
    return None


def _verification_inputs(inputs: list[TensorSpec], source: Artifact, dataset: str | None) -> tuple[Any, str]:
    """Real held-out inputs when a dataset fits the model's inputs, else synthetic ones, with a description."""
    real = _dataset_inputs(source, dataset, inputs)
    if real is not None:
        return real
    if not inputs or any(d is None for s in inputs for d in s.shape[1:]):
        raise UsageError("no dataset fits the model's inputs for the check against its source", "Pass --dataset NAME")
    from .benchmark.protocol import make_inputs

    text = [s.name for s in inputs if not _numeric(s.dtype)]
    if text:
        raise UsageError(f"the model takes text (input {', '.join(text)}), which no dataset here gives and no "
                         "check can make up", "Tokenise outside the graph and give the model token ids (int32)")
    rng_specs = [{**s.to_dict(), "quantization": None, "dtype": "float32" if s.quantization else s.dtype}
                 for s in inputs]
    shapes = {s.name: (64, *s.shape[1:]) if s.shape else () for s in inputs}
    made = make_inputs(rng_specs, shapes, seed=0)
    # By the names a user would type ('serving_default_a:0' is 'a'): formats order several inputs differently.
    return {short_name(s.name): made[s.name] for s in inputs}, "synthetic inputs x64"


def _reference_key(artifact: Artifact, x: Any) -> tuple[str, str]:
    digest = hashlib.sha256()
    for arr in (x.values() if isinstance(x, Mapping) else x if isinstance(x, list) else [x]):
        digest.update(np.ascontiguousarray(arr).tobytes())
    return sha256_file(artifact.path), digest.hexdigest()


def _numeric(dtype: str) -> bool:
    """A dtype numbers can be made up for (not text, bytes or an object)."""
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:
        return False


def predict_with_default_backend(artifact: Artifact, x: Any) -> dict[str, np.ndarray]:
    """Every output (dequantized) of `artifact` on `x`, run in a child by its default backend."""
    from .benchmark.runner import default_backend

    key = _reference_key(artifact, x)
    if key not in _reference_cache:
        _reference_cache[key] = run_in_child("toolkit.benchmark.measure:predict", model=str(artifact.path),
                                             backend=default_backend(artifact), arrays=x)
    return _reference_cache[key]


def _by_position(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The candidate's outputs under the source's names: converters rename outputs (logits -> Identity:0), so
    outputs are paired by name where names agree, else by position."""
    if set(reference) == set(candidate) or len(reference) != len(candidate):
        return candidate
    return dict(zip(reference, candidate.values()))


def check_parity(candidate: Artifact, source: Artifact, dataset: str | None = None,
                 thresholds: Mapping[str, float] | None = None,
                 real_inputs: tuple[Any, str] | None = None) -> dict[str, Any]:
    """Run candidate and source on the same real inputs (`real_inputs` when the caller has them already) and
    compare every output by the task's rule."""
    inputs = candidate.manifest.inputs if candidate.manifest else []
    x, data = real_inputs or _verification_inputs(inputs, source, dataset)
    reference = predict_with_default_backend(source, x)
    got = _by_position(reference, predict_with_default_backend(candidate, x))
    task = source.task or (candidate.manifest.task if candidate.manifest else None)
    parity = compare_outputs(reference, got, task, candidate.precision, thresholds)
    n = len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x[0]) if isinstance(x, list) else len(x)
    parity.update({"against": source.path.name, "data": data, "samples": int(n)})
    if not data.startswith("synthetic"):
        parity["evaluation"] = _held_out_scores(dataset or default_calibration(source), reference, got, int(n))
    return parity


def _held_out_scores(name: str | None, reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                     n: int) -> dict[str, Any] | None:
    """Accuracy (or forecast error) of source and artifact on the checked held-out samples, by their labels."""
    from . import metrics

    if not name:
        return None
    ds = plugins.registries().datasets.get(name)
    y = ds.load("test")[1][:n]
    key = next((k for k in reference if ds.target_output and short_name(k) == ds.target_output), next(iter(reference)))
    try:
        scores = {who: metrics.finish_metrics(ds.task, metrics.task_metrics(ds.task, outs[key], y))
                  for who, outs in (("source", reference), ("artifact", got))}
    except (ValueError, KeyError):  # outputs that are not the dataset's answers (a feature extractor)
        return None
    return {"dataset": name, "samples": n, "task": ds.task, **scores}


def verify_against_source(artifact: Artifact, source: Artifact, dataset: str | None = None) -> dict[str, Any]:
    """Check an existing artifact against its source; raise CheckFailedError when the answers differ."""
    parity = check_parity(artifact, source, dataset)
    if not parity["passed"]:
        raise CheckFailedError(f"'{artifact.path.name}' does not match its source '{source.path.name}' on "
                               f"{parity['data']}: {_parity_text(parity)} (needs {parity['rule']})")
    return parity
