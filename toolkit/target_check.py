"""`toolkit targets check`: will this model run on that device? Each check compares one fact about the model
(its format, size, estimated memory, operators, precision, shapes, a measured latency) with the target's profile,
and says pass, warn, fail (with the fix) or skip (with what would make it possible).

The model's facts come from its format plugin in a child process (parsing a graph is native code) and are the
same for every target, so they are read once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from .artifact import Artifact
from .errors import UsageError
from .interfaces import Target

# Operators a converter adds to reshape by a batch size known only at run time (a Flatten on a dynamic batch).
SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape"}
# Above this share of the RAM, a model may still load, but the rest of the system is squeezed: a warning.
RAM_WARN_SHARE = 0.8
MIB = 2**20


@dataclass
class Check:
    name: str
    status: str  # pass | warn | fail | skip
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_facts_in_child(path: str) -> dict[str, Any]:
    """Child entry point: what the checks need from the file (format, size, precision, footprint)."""
    from . import formats

    artifact = Artifact.open(path)
    fmt = formats.get(artifact.format)
    described = fmt.describe(artifact.path) if fmt.available().ok else {}
    precision = artifact.manifest.precision if artifact.manifest else described.get("precision", "unknown")
    facts: dict[str, Any] = {"format": artifact.format, "size_bytes": artifact.size_bytes, "precision": precision,
                             "footprint": None, "footprint_error": None}
    try:
        facts["footprint"] = fmt.footprint(artifact.path)
    except NotImplementedError:
        facts["footprint_error"] = f"the {fmt.name} format plugin cannot estimate memory or list operators"
    return facts


def model_facts(path: str | Path) -> dict[str, Any]:
    from . import formats
    from .child import run_in_child

    formats.detect(path)  # a missing or unknown file fails here, in one line, before a child starts
    return run_in_child("toolkit.target_check:model_facts_in_child", path=str(path))


def _mib(n: float) -> str:
    if n >= 1024 * MIB:
        return f"{n / 1024 / MIB:.1f} GiB"
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{int(n)} B"


def _smaller_fix(precision: str) -> str:
    if precision == "fp32":
        return "Quantize its source: `toolkit quantize SOURCE --scheme int8` (about 4x smaller), or use a smaller model"
    if precision in ("fp16", "dynamic"):
        return "Quantize it fully: `toolkit quantize SOURCE --scheme int8`, or use a smaller model"
    return "Use a smaller model (fewer or narrower layers, a smaller vocabulary)"


def _unknown(target: Target, what: str) -> str:
    """Why a check cannot be made: the profile lacks a field, or the target is a URL, which has no profile."""
    if target.source == "URL":
        return f"{target.name} is a URL, which says nothing of its {what}: name a profile for this check"
    return f"{target.name}'s profile does not give its {what}"


def _runs_format(target: Target, fmt: str) -> str:
    """The format to make for `target`: the model's own if the target runs it, else the target's first."""
    return fmt if not target.formats or fmt in target.formats else target.formats[0]


def check_format(facts: dict[str, Any], target: Target) -> Check:
    from . import plugins

    fmt = facts["format"]
    if not target.formats:
        return Check("format", "skip", _unknown(target, "formats"))
    if fmt in target.formats:
        return Check("format", "pass", f"{target.name} runs {fmt} files")
    to = target.formats[0]
    direct = any(c.source_format == fmt and c.target_format == to for c in plugins.registries().converters)
    fix = (f"Convert it: `toolkit convert MODEL --to {to}`" if direct else
           f"Convert its source model (the .keras) instead: `toolkit convert SOURCE --to {to}` (no installed "
           f"converter turns {fmt} into {to})")
    return Check("format", "fail", f"{target.name} runs {', '.join(target.formats)} files, not {fmt}", fix)


def check_storage(facts: dict[str, Any], target: Target) -> Check:
    size = facts["size_bytes"] or 0
    where = "flash" if not target.weights_in_ram else "storage"
    if not target.storage_mb:
        return Check("storage", "skip", _unknown(target, "storage (storage_mb)"))
    room = target.storage_mb * MIB
    if size > room:
        return Check("storage", "fail", f"the file is {_mib(size)}, {target.name} has {_mib(room)} of {where}",
                     _smaller_fix(facts["precision"]))
    return Check("storage", "pass", f"{_mib(size)} of {_mib(room)} {where} ({100 * size / room:.1f}%)")


def check_memory(facts: dict[str, Any], target: Target) -> Check:
    fp = facts.get("footprint")
    if fp is None:
        return Check("memory", "skip", facts.get("footprint_error") or "no memory estimate for this format")
    if not target.ram_mb:
        return Check("memory", "skip", _unknown(target, "RAM (ram_mb)"))
    weights, activations = fp["weights_bytes"], fp["peak_activation_bytes"]
    need = activations + (weights if target.weights_in_ram else 0)
    ram = target.ram_mb * MIB
    parts = (f"weights {_mib(weights)} + peak activations {_mib(activations)}" if target.weights_in_ram
             else f"peak activations {_mib(activations)}; the weights stay in flash")
    detail = f"estimated {_mib(need)} ({parts}) of {_mib(ram)} RAM"
    if fp.get("unknown_shapes"):
        detail += f"; {fp['unknown_shapes']} tensors of unknown size are not counted"
    if need > ram:
        return Check("memory", "fail", detail, _smaller_fix(facts["precision"]))
    if need > RAM_WARN_SHARE * ram:
        return Check("memory", "warn", detail + f": over {RAM_WARN_SHARE:.0%}, little is left for the runtime "
                     "and the rest of the system", _smaller_fix(facts["precision"]))
    return Check("memory", "pass", detail + f" ({100 * need / ram:.1f}%)")


def check_ops(facts: dict[str, Any], target: Target) -> Check:
    fp = facts.get("footprint")
    if fp is None:
        return Check("operators", "skip", facts.get("footprint_error") or "the operators are unknown")
    ops = fp["ops"]
    flex = sorted(op for op in ops if op.startswith("Flex"))
    if flex:
        return Check("operators", "fail", f"{', '.join(flex)} need TensorFlow's Flex delegate, which edge runtimes "
                     "do not ship", "Re-convert without -o allow_flex=true, replacing the layers that need them")
    allowed = target.ops.get(facts["format"])
    if allowed is None:
        why = (f"its profile limits operators of {', '.join(target.ops)} files only" if target.ops
               else _unknown(target, "operator limits (ops)"))
        return Check("operators", "pass", f"{sum(ops.values())} operators of {len(ops)} kinds; {why}")
    missing = {op: n for op, n in ops.items() if op not in set(allowed)}
    if missing:
        listed = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(missing.items()))
        accel = f" ({', '.join(target.delegates)})" if target.delegates else ""
        fix = ("Replace those layers with supported ones, or pick another target; the profile's `ops` lists what "
               "it runs")
        if fp.get("dynamic_shapes") and set(missing) <= SHAPE_OPS:
            fix = ("These compute a dynamic batch size: make the file with a fixed batch (-o batch=1) and they go "
                   "away")
        return Check("operators", "fail", f"{target.name}{accel} does not run {listed}", fix)
    return Check("operators", "pass", f"all {len(ops)} operator kinds run there")


def check_precision(facts: dict[str, Any], target: Target) -> Check:
    precision = facts["precision"]
    if not target.precisions:
        return Check("precision", "skip", _unknown(target, "precisions"))
    if precision == "unknown":
        return Check("precision", "warn", "the model's precision is unknown (no manifest, and its format plugin "
                     "could not tell)", "Make it with the toolkit, which records it in a manifest")
    if precision in target.precisions:
        return Check("precision", "pass", f"{precision} runs there")
    if "int8" in target.precisions:
        fix = "Quantize it fully to integers: `toolkit quantize SOURCE --scheme int8`"
        if target.precisions == ["int8"]:
            fix += f" ({target.name} runs full-int8 models only)"
    else:
        fix = f"Make it in {' or '.join(target.precisions)}"
    return Check("precision", "fail", f"{precision} does not run there (it runs {', '.join(target.precisions)})",
                 fix)


def check_shapes(facts: dict[str, Any], target: Target) -> Check:
    fp = facts.get("footprint")
    if fp is None:
        return Check("shapes", "skip", "the input shapes are unknown")
    if not fp.get("dynamic_shapes"):
        return Check("shapes", "pass", "every input dimension is fixed")
    if target.dynamic_shapes:
        return Check("shapes", "pass", "dynamic dimensions are resized at run time there")
    fmt = _runs_format(target, facts["format"])
    fix = (f"Make it again from its source with a fixed batch, with the same step and -o batch=1 (`toolkit "
           f"quantize SOURCE --scheme int8 -o batch=1`, or `toolkit convert SOURCE --to {fmt} -o batch=1`)")
    return Check("shapes", "fail", f"an input has a dynamic dimension, and {target.name}'s runtime needs fixed "
                 "shapes", fix)


def check_latency(records: list[dict[str, Any]], model: Path, target: Target, budget_ms: float | None) -> Check:
    budget_ms = budget_ms if budget_ms is not None else target.latency_budget_ms
    if budget_ms is None:
        return Check("latency", "skip", "no latency budget (--latency-budget MS, or the profile's "
                     "latency_budget_ms)")
    # A record without a target was measured here: it counts for the detected host.
    measured_on = {target.name, None} if target.detected else {target.name}
    mine = [r for r in records if r.get("status") == "ok" and Path(r.get("model", "")).name == model.name
            and r.get("target") in measured_on]
    if not mine:
        how = f"`toolkit bench {model} --target {target.name} --format json > results.json`, then --results"
        return Check("latency", "skip", f"no measured result of {model.name} on {target.name}", f"Measure it: {how}")
    best = min(mine, key=lambda r: r["latency_us"]["p90"])
    p90_ms = best["latency_us"]["p90"] / 1000.0
    detail = f"p90 {p90_ms:.3f} ms on {best['backend']} (batch {best.get('batch', 1)}) against a budget of " \
             f"{budget_ms:g} ms"
    if p90_ms > budget_ms:
        return Check("latency", "fail", detail, "Try another backend or more threads. " + _smaller_fix(
            best.get("precision", "")))
    return Check("latency", "pass", detail)


def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of a `toolkit bench --format json` output."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--results '{path}' cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})",
                         "Pass the file `toolkit bench --format json` wrote") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"--results '{path}' is not JSON ({e.msg}, line {e.lineno})",
                         "Pass the file `toolkit bench --format json` wrote") from None
    records = data.get("results") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UsageError(f"--results '{path}' has no list of results", "Pass the file `toolkit bench --format json` "
                         "wrote")
    return records


def check_all(facts: dict[str, Any], model: Path, target: Target, records: Iterable[dict[str, Any]] = (),
              budget_ms: float | None = None) -> list[Check]:
    return [check_format(facts, target), check_storage(facts, target), check_memory(facts, target),
            check_ops(facts, target), check_precision(facts, target), check_shapes(facts, target),
            check_latency(list(records), model, target, budget_ms)]
