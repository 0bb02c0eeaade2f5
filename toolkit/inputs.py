"""Model inputs for a benchmark: shapes resolved from --batch and --shape, data made per dtype or read from .npz."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .benchmark.protocol import anonymous_dim
from .errors import UsageError, first_line
from .specs import TensorSpec


def parse_shape_overrides(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse `NAME=1x512` options into {NAME: (1, 512)}."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise UsageError(f"--shape '{item}' is not NAME=DIMS", "Write it like --shape input_ids=1x128") from None
        if any(d <= 0 for d in shape):
            raise UsageError(f"--shape '{item}' has a dimension of {min(shape)}", "Every dimension must be at least 1")
        if name in out:
            raise UsageError(f"--shape gives input '{name}' twice", "Give each input once")
        out[name] = shape
    return out


def resolve_shapes(specs: Sequence[TensorSpec], batch: int,
                   overrides: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every input: a dynamic first dimension takes `batch`, others need an override.

    Named dynamic dimensions are one size wherever they appear: `--shape input_ids=1x128` also fills
    attention_mask's `seq`, and two overrides that give `seq` different sizes are refused."""
    named: dict[str, tuple[int, ...]] = {}
    for given, shape in overrides.items():
        name = _spec_name(specs, given)
        if name in named:
            raise UsageError(f"--shape gives input '{name}' twice (as '{given}' too)", "Give each input once")
        named[name] = shape
    overrides = named
    unknown = set(overrides) - {s.name for s in specs}
    if unknown:
        names = ", ".join(s.name for s in specs)
        raise UsageError(f"--shape names no input of this model: {', '.join(sorted(unknown))}", f"Its inputs: {names}")
    shapes: dict[str, tuple[int, ...]] = {}
    missing: list[str] = []  # every input still dynamic, so that one hint names them all
    sizes: dict[str, tuple[int, str]] = {}  # named dynamic dimension -> (size, the input that gave it)
    for spec in specs:
        if spec.name in overrides:
            shape = overrides[spec.name]
            if not spec.accepts(shape):
                raise UsageError(f"--shape {spec.name}={'x'.join(map(str, shape))} does not fit the input's shape "
                                 f"{format_shape(spec)}", "Keep the fixed dimensions and fill in the dynamic ones")
            if batch != 1 and spec.shape and spec.shape[0] is None and shape[0] != batch:
                raise UsageError(f"--shape {spec.name}={'x'.join(map(str, shape))} and --batch {batch} give the batch "
                                 "two sizes", "Drop --batch, or make the --shape's first dimension match it")
            for dim, name, size in zip(spec.shape, spec.dim_names or (), shape):
                if dim is None and not anonymous_dim(name):
                    if name in sizes and sizes[name][0] != size:
                        raise UsageError(f"dimension '{name}' is {sizes[name][0]} in '{sizes[name][1]}' but {size} in "
                                         f"'{spec.name}'", "Give a named dimension one size")
                    sizes.setdefault(name, (size, spec.name))
            shapes[spec.name] = shape
    for spec in specs:
        if spec.name in shapes:
            continue
        shape = list(spec.shape)
        names = spec.dim_names or (None,) * len(shape)
        shape = [sizes[n][0] if d is None and n in sizes else d for d, n in zip(shape, names)] if spec.dim_names \
            else shape
        if shape and shape[0] is None:
            shape[0] = batch
        elif batch != 1 and shape and shape[0] != batch:
            raise UsageError(f"input '{spec.name}' has a fixed batch of {shape[0]}, so --batch {batch} cannot apply",
                             f"Use --batch {shape[0]} (or leave --batch out), or export the model with a dynamic batch "
                             "dimension")
        if any(d is None for d in shape):
            names = spec.dim_names or (None,) * len(shape)
            example = "x".join(str(d) if d is not None else f"<{_dim_label(n, 'size')}>" for d, n in zip(shape, names))
            missing.append(f"--shape {short_name(spec.name)}={example}")
            continue
        shapes[spec.name] = tuple(int(d) for d in shape)
    if missing:
        which = [s for s in specs if s.name not in shapes]
        listed = ", ".join(f"'{s.name}' {format_shape(s)}" for s in which)
        raise UsageError(f"input{'s' if len(which) > 1 else ''} {listed} "
                         f"{'have' if len(which) > 1 else 'has'} dynamic dimensions", f"Give them with {' '.join(missing)}")
    return shapes


def short_name(name: str) -> str:
    """A tensor name as a user would type it: TFLite's 'serving_default_tokens:0' is 'tokens'."""
    name = name.removeprefix("serving_default_")
    base, sep, index = name.rpartition(":")
    return base if sep and index.isdigit() else name


def _spec_name(specs: Sequence[TensorSpec], given: str) -> str:
    """The input a user means: its exact name, or its short name when that is unambiguous."""
    if any(s.name == given for s in specs):
        return given
    matches = [s.name for s in specs if short_name(s.name) == given]
    return matches[0] if len(matches) == 1 else given


def _dim_label(name: str | None, default: str) -> str:
    return default if anonymous_dim(name) else name


def format_shape(spec: TensorSpec) -> str:
    names = spec.dim_names or (None,) * len(spec.shape)
    parts = [str(d) if d is not None else _dim_label(n, "?") for d, n in zip(spec.shape, names)]
    return "[" + ", ".join(parts) + "]"


def load_npz_inputs(path: str | Path, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Real inputs from an .npz whose keys are the model's input names (or arr_0.. in input order)."""
    with open(path, "rb") as f:
        if f.read(2) != b"PK":  # an .npz is a zip archive
            raise UsageError(f"'{path}' is not an .npz file", "Save inputs with numpy.savez(path, name=array)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read inputs from '{path}' ({first_line(e)[:120]})",
                         "Save them with numpy.savez(path, name=array)") from None
    arrays = {_spec_name(specs, k): v for k, v in arrays.items()}
    names = [s.name for s in specs]
    if set(names) <= set(arrays):
        chosen = {n: arrays[n] for n in names}
    elif len(arrays) == len(names) and all(k == f"arr_{i}" for i, k in enumerate(arrays)):
        chosen = dict(zip(names, arrays.values()))
    else:
        raise UsageError(f"'{path}' holds {', '.join(arrays) or 'nothing'}, not the model's inputs {', '.join(names)}",
                         "Name each array after its input: numpy.savez(path, **{name: array})")
    for spec in specs:
        arr = chosen[spec.name]
        try:
            wanted = np.dtype(spec.dtype)
        except TypeError:  # 'string' and other types numpy has no name for
            raise UsageError(f"input '{spec.name}' takes {spec.dtype}, which the toolkit cannot feed",
                             "Tokenise text outside the graph and give the model token ids (int32)") from None
        if wanted != arr.dtype:
            raise UsageError(f"input '{spec.name}' in '{path}' is {arr.dtype}, the model wants {spec.dtype}",
                             f"Save it as {spec.dtype}")
    return chosen  # shapes are checked by check_shapes, as for generated inputs


def check_shapes(specs: Sequence[TensorSpec], inputs: dict[str, np.ndarray]) -> None:
    """Refuse inputs whose shape contradicts a fixed dimension, before native code sees them."""
    for spec in specs:
        arr = inputs[spec.name]
        if not spec.accepts(arr.shape):
            raise UsageError(f"input '{spec.name}' has shape {list(arr.shape)}, the model wants {format_shape(spec)}",
                             "Reshape the input to fit")
