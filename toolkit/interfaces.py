"""The core's interfaces: ModelFormat, Dataset, Model, Converter, Quantizer, Backend with its Session, Target
and Runner, plus the small records they exchange (Availability, PluginOption, ConversionResult).

Small ABCs with one or two abstract methods and capability class attributes; plugins implement them.
Nothing here imports an ML framework.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from .artifact import Artifact
from .specs import TensorSpec

# What a model computes; metrics and parity rules follow it.
TASKS = ("classification", "regression", "sequence-labelling", "detection", "other")


# ---------------------------------------------------------------------------------------------- shared records
@dataclass(frozen=True)
class Availability:
    """Whether a plugin's item can work here; when not, why and the pip extra that brings what is missing."""

    ok: bool
    reason: str | None = None
    extra: str | None = None


@dataclass(frozen=True)
class PluginOption:
    """An option a converter, quantizer or backend declares; users pass it as `-o name=value`."""

    name: str
    type: type = str  # str, int, float or bool
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()


class Pluggable(ABC):
    """What every registered item shares: a name, a description, availability and declared options."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    options: ClassVar[tuple[PluginOption, ...]] = ()

    def available(self) -> Availability:
        """Whether this item can work here, and if not, why (with the pip extra)."""
        return Availability(True)


# ---------------------------------------------------------------------------------------------- formats
class ModelFormat(Pluggable):
    """A model file format: how to recognise a file and read its input/output specs without a heavy runtime."""

    suffixes: ClassVar[tuple[str, ...]]  # the first is used for files the toolkit writes
    head_size: ClassVar[int] = 16  # how many leading bytes sniff() needs
    is_directory: ClassVar[bool] = False  # a model that is a folder (a SavedModel): sniff gets b"" and the path

    @abstractmethod
    def sniff(self, head: bytes, path: Path) -> bool:
        """True when a file starting with `head` (its first head_size bytes) is in this format."""

    @abstractmethod
    def read_specs(self, path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """(inputs, outputs) of the model in `path`, with quantization parameters. Raise ModelFileError for a file
        that is not a valid model."""

    def describe(self, path: Path) -> dict[str, Any]:
        """Format-specific facts worth keeping in a manifest (operator list, opset); {} when none."""
        return {}

    def inspect(self, path: Path) -> dict[str, Any]:
        """What `toolkit inspect` shows beyond the specs, from the file alone: `ops` (operator name -> count),
        `parameters` (weight elements), `macs` (multiply-accumulates per sample), `flex_ops`; {} when none.
        Called in a child process, so it may parse the whole file."""
        return {}

    def footprint(self, path: Path) -> dict[str, Any]:
        """What the model needs on a device, for `toolkit targets check`: `weights_bytes`, `peak_activation_bytes`
        (the most activation memory alive at once, batch 1), `ops` (operator name -> count, every subgraph) and
        `dynamic_shapes` (whether an input has a dynamic dimension). Raise NotImplementedError where the format
        cannot tell (the default): the memory and operator checks then say they could not be made."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------- data
class Dataset(Pluggable):
    """A labelled dataset with real data: `load(split)` gives (inputs, targets); `calibration(n)` feeds quantizers.

    Inputs are one array (a single-input model) or a dict of arrays by input name; targets are class ids for
    classification, real values for regression. `target_output` names the model output metrics are computed on
    when a model has several."""

    task: ClassVar[str] = "classification"
    num_classes: ClassVar[int] = 0
    needs_network: ClassVar[bool] = False
    suggested_epochs: ClassVar[int] = 2  # enough for a useful model when the user does not say
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    target_output: ClassVar[str | None] = None

    @abstractmethod
    def load(self, split: str) -> tuple[Any, np.ndarray]:
        """Return (inputs in the model's layout, targets) for `split`."""

    def require_available(self) -> None:
        """Raise DataUnavailableError, saying why and how to fix it, when load() cannot work here."""
        av = self.available()
        if not av.ok:
            from .errors import DataUnavailableError

            raise DataUnavailableError(f"dataset '{self.name}' is not available here: {av.reason}")

    def calibration(self, n: int = 200, seed: int = 0) -> Any:
        """`n` samples from the training split, the same ones for the same seed."""
        x, _ = self.load("train")
        first = next(iter(x.values())) if isinstance(x, Mapping) else x
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(first), size=min(n, len(first)), replace=False))
        return {k: v[idx] for k, v in x.items()} if isinstance(x, Mapping) else x[idx]


# ---------------------------------------------------------------------------------------------- models
class Model(Pluggable):
    """A model family: builds a framework model for an input shape and a number of outputs."""

    task: ClassVar[str] = "classification"
    framework: ClassVar[str] = ""  # what build() returns a model of, e.g. keras
    format: ClassVar[str]  # the format train() saves in, e.g. keras
    default_dataset: ClassVar[str | None] = None
    # Tried in order when the default dataset is not on this machine (e.g. ones that ship with a pip package).
    fallback_datasets: ClassVar[tuple[str, ...]] = ()
    # What `toolkit quantize` does without --scheme, by target format: (scheme, quantizer options, why). Fill it
    # from measurements (benchmarks/families.py): the scheme fastest at equal accuracy for this family.
    recommended_quantization: ClassVar[dict[str, tuple[str, dict[str, Any], str]]] = {}

    @abstractmethod
    def build(self, input_shape: Sequence[int], num_outputs: int, **hparams: Any) -> Any:
        """Return an untrained model of this family's framework."""

    def train(self, dataset: str, epochs: int, output: Path, **options: Any) -> "TrainingResult":
        """Train on `dataset` and save the model to `output` (a working path the core publishes with its manifest).

        `options` may hold batch_size, limit, seed, learning_rate, validation_split, early_stopping (a patience
        in epochs, or None), model_options (this family's declared `options`, checked and typed),
        on_start(total_steps) and on_batch(epoch, batch, logs).
        """
        from .errors import UsageError

        raise UsageError(f"model {self.name} cannot be trained by the toolkit", "Train it with its framework")


@dataclass
class TrainingResult:
    """What training made: the saved model's specs and held-out metrics. The core writes the manifest."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metrics: dict[str, Any] = field(default_factory=dict)  # accuracy or mae/rmse on the test split, history...
    versions: dict[str, str] = field(default_factory=dict)
    # What a device needs to feed the model, kept in the manifest's extra and in every artifact made from it
    # (e.g. "tokenizer" settings, "features" with their categories).
    extra: dict[str, Any] = field(default_factory=dict)
    # Text files that travel beside the model and every artifact made from it, by suffix: {".vocab.txt": "..."}
    # is published as MODEL.keras.vocab.txt, then cnn.tflite.vocab.txt, each checked by sha256 in the manifest.
    files: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- conversion
@dataclass
class ConversionOptions:
    """What a converter or quantizer may need besides the source artifact. `extra` holds its declared options
    (from `-o key=value`, validated and typed, defaults filled in)."""

    precision: str = "fp32"
    calibration: Any = None  # an array, or a dict of arrays by input name
    calibration_name: str | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConversionResult:
    """What a converter or quantizer knows about the file it wrote. The core adds specs, hashes, provenance and
    the parity check, and publishes file and manifest together."""

    precision: str
    details: dict[str, Any] = field(default_factory=dict)  # kept in the manifest's `extra` (ops, opset, notes)
    quantization: dict[str, Any] | None = None  # scheme, method, layout, calibration record
    versions: dict[str, str] = field(default_factory=dict)  # libraries that made the file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ConversionResult":
        return cls(precision=str(d["precision"]), details=dict(d.get("details") or {}),
                   quantization=d.get("quantization"), versions=dict(d.get("versions") or {}))


class Converter(Pluggable):
    """Turns a model of `source_format` into one of `target_format`."""

    source_format: ClassVar[str]
    target_format: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    priority: ClassVar[int] = 0  # higher wins when several converters could serve and none is named

    @abstractmethod
    def convert(self, source: Artifact, output: Path, options: ConversionOptions) -> ConversionResult:
        """Write the converted model to `output` (a working path the core publishes after checking it)."""


class Quantizer(Pluggable):
    """Turns a model into a quantized one, calibrated on real data."""

    source_formats: ClassVar[tuple[str, ...]]
    target_format: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]] = ("int8",)
    # What each scheme needs and what runs its result, for `toolkit quantize --list-schemes`.
    scheme_help: ClassVar[dict[str, str]] = {}
    needs_calibration: ClassVar[bool] = True
    priority: ClassVar[int] = 0

    def calibration_needed(self, scheme: str) -> bool:
        """Whether `scheme` needs calibration data (weights-only schemes such as fp16 or dynamic do not). The
        default is `needs_calibration` for every scheme; override it when schemes differ."""
        return self.needs_calibration

    @abstractmethod
    def quantize(self, source: Artifact, output: Path, scheme: str, options: ConversionOptions) -> ConversionResult:
        """Write the quantized model to `output` (a working path the core publishes after checking it)."""


# ---------------------------------------------------------------------------------------------- runtime
@dataclass
class BackendOptions:
    threads: int | None = None
    provider: str | None = None  # e.g. onnxruntime: cpu, cuda, tensorrt
    extra: dict[str, Any] = field(default_factory=dict)  # the backend's declared options, from `-o key=value`


class Session(ABC):
    """A loaded model, ready to run."""

    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on named inputs; return named outputs."""

    def resize(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Fix dynamic dimensions before running; called before the benchmark and before every evaluation
        batch (so possibly many times, with the same or different shapes). Override when the runtime needs it."""

    def bench_callable(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        """A zero-argument callable that runs the model on preloaded `inputs`: the only thing a benchmark times.

        Backends override it to hand over the runtime's own call (invoke(), run()) with no wrapper around it.
        """
        return lambda: self.run(inputs)

    def describe(self) -> dict[str, Any]:
        """What actually runs: delegate or execution providers, and any fallback that happened."""
        return {}

    def trace(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on named inputs (as for run()) and return every intermediate tensor the runtime can expose,
        keyed by the model file's own tensor name, in execution order, the outputs included. Quantized tensors
        come back dequantized to float32 with their own scale and zero point (per channel too), so that the
        traces of an fp32 and an int8 model compare directly; other integer tensors (shapes, indices) as they
        are. For `toolkit diff`; never called while benchmarking, so it may build a second, slower runtime
        session of its own. The default refuses: override it where the runtime can do it."""
        from .errors import UsageError

        raise UsageError(f"{type(self).__name__} cannot give per-layer tensors (it does not implement "
                         "Session.trace)", "Use a backend that can, e.g. --backend onnxruntime or tflite")


class Backend(Pluggable):
    """A runtime that loads models of some formats and runs them."""

    formats: ClassVar[tuple[str, ...]]
    extra: ClassVar[str | None] = None  # pip extra that installs this backend's runtime
    # A module (stdlib, numpy and the runtime only) that runs this backend on a device with no toolkit: remote
    # runners ship it (docs/writing-a-runner-plugin.md). None: this backend measures on this machine only.
    device_module: ClassVar[str | None] = None
    # Higher wins when the user names no backend; below 0 the backend is never chosen unless named.
    priority: ClassVar[int] = 0
    providers: ClassVar[tuple[str, ...]] = ()
    # False for backends too slow to sweep: the quickstart and --all-backends skip them unless named.
    in_sweeps: ClassVar[bool] = True

    def supports(self, artifact: Artifact) -> str | None:
        """None if this backend can run `artifact`, otherwise why not. Must not parse the model's payload."""
        fmt = artifact.format
        return None if fmt in self.formats else f"{self.name} runs {', '.join(self.formats)} files, not {fmt}"

    def versions(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        """Load `artifact` into a Session. Raise ModelFileError for a file the runtime rejects."""

    def inspect(self, artifact: Artifact) -> dict[str, Any]:
        """What this runtime does with the model, for `toolkit inspect`: e.g. which operators a delegate takes
        (`delegated`, `not_delegated`: operator name -> count), and anything the file alone cannot say (ops,
        parameters, macs). Called in a child process; {} when there is nothing to add."""
        return {}


# ---------------------------------------------------------------------------------------------- devices
@dataclass
class Target:
    """A device profile: what a board is, so that artifacts can be checked against it and benchmarks run on it.

    Profiles are TOML files (docs/targets.md lists every field); `toolkit.api.target_from_dict` checks one."""

    name: str
    description: str = ""
    arch: str = ""
    cpu: str = ""
    isa: list[str] = field(default_factory=list)
    cores: int | None = None
    ram_mb: float | None = None
    storage_mb: float | None = None
    accelerators: list[str] = field(default_factory=list)
    runtimes: dict[str, str] = field(default_factory=dict)  # distribution -> version requirement (or version)
    formats: list[str] = field(default_factory=list)  # model formats its runtimes load
    delegates: list[str] = field(default_factory=list)  # delegates / execution providers besides the CPU's
    precisions: list[str] = field(default_factory=list)  # fp32, fp16, dynamic, int8, int16x8; empty: any
    ops: dict[str, list[str]] = field(default_factory=dict)  # format -> the only operators it runs; absent: any
    weights_in_ram: bool = True  # False where weights stay in flash (microcontrollers): RAM holds activations
    dynamic_shapes: bool = True  # whether its runtime resizes inputs at run time
    latency_budget_ms: float | None = None
    connection: dict[str, Any] = field(default_factory=lambda: {"kind": "local"})
    python: str = "python3"  # the device's interpreter, for runners that measure there; "" where none runs
    detected: bool = False
    source: str = ""  # the file it was read from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(Pluggable):
    """Runs one benchmark request somewhere (this machine, a board over SSH) and returns its record.

    Requests and records are JSON-ready dicts (BenchRequest.to_dict(), BenchRecord.to_dict()): that is all that
    crosses to the measuring side."""

    @abstractmethod
    def run(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Measure one (model, backend) pair; return a record dict (status ok or error), never raise for a
        failure of the pair itself."""
