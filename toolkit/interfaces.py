"""The core's interfaces: Dataset, Model, Converter, Quantizer, Backend with its Session, and Target.

Small ABCs with one or two abstract methods and capability class attributes; plugins implement them.
Nothing here imports an ML framework.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from .artifact import Artifact
from .specs import TensorSpec


# ---------------------------------------------------------------------------------------------- data
class Dataset(ABC):
    """A labelled dataset with real data: `load(split)` gives (x, y); `calibration(n)` feeds quantizers."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    task: ClassVar[str] = "classification"
    num_classes: ClassVar[int] = 0
    needs_network: ClassVar[bool] = False
    suggested_epochs: ClassVar[int] = 2  # enough for a useful model when the user does not say
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    @abstractmethod
    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return (inputs as float32 in the model's layout, integer labels) for `split`."""

    def available(self) -> tuple[bool, str | None]:
        """Whether load() can work here, and if not, why (with the fix)."""
        return True, None

    def require_available(self) -> None:
        """Raise DataUnavailableError, saying why and how to fix it, when load() cannot work here."""
        ok, why = self.available()
        if not ok:
            from .errors import DataUnavailableError

            raise DataUnavailableError(f"dataset '{self.name}' is not available here: {why}")

    def calibration(self, n: int = 200, seed: int = 0) -> np.ndarray:
        """`n` samples from the training split, the same ones for the same seed."""
        x, _ = self.load("train")
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(x), size=min(n, len(x)), replace=False)
        return x[np.sort(idx)]


# ---------------------------------------------------------------------------------------------- models
class Model(ABC):
    """A model family: builds a framework model for an input shape and a number of outputs."""

    name: ClassVar[str]
    task: ClassVar[str] = "classification"
    framework: ClassVar[str] = "keras"
    default_dataset: ClassVar[str | None] = None
    # Tried in order when the default dataset is not on this machine (e.g. ones that ship with a pip package).
    fallback_datasets: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    @abstractmethod
    def build(self, input_shape: Sequence[int], num_outputs: int, **hparams: Any) -> Any:
        """Return an untrained framework model (a keras.Model for framework 'keras')."""

    def train(self, dataset: str, epochs: int, output_dir: Path, **options: Any) -> tuple[Artifact, dict[str, Any]]:
        """Train on `dataset`; write the model, its manifest and metrics.json into `output_dir`.

        `options` may hold batch_size, limit, seed, on_start(total_steps) and on_batch(epoch, batch, logs).
        """
        from .errors import UsageError

        raise UsageError(f"model {self.name} cannot be trained by the toolkit", "Train it with its framework")


# ---------------------------------------------------------------------------------------------- conversion
@dataclass
class ConversionOptions:
    """What a converter or quantizer may need besides the source artifact."""

    precision: str = "fp32"
    calibration: np.ndarray | None = None
    calibration_name: str | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Converter(ABC):
    """Turns an artifact of `source_format` into one of `target_format`."""

    name: ClassVar[str]
    source_format: ClassVar[str]
    target_format: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    @abstractmethod
    def convert(self, source: Artifact, output: Path, options: ConversionOptions) -> Artifact:
        """Write the converted model to `output` (atomically) and return it with a manifest."""


class Quantizer(ABC):
    """Turns an artifact into a quantized one, calibrated on real data."""

    name: ClassVar[str]
    source_formats: ClassVar[tuple[str, ...]]
    target_format: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]] = ("int8",)

    @abstractmethod
    def quantize(self, source: Artifact, output: Path, scheme: str, options: ConversionOptions) -> Artifact:
        """Write the quantized model to `output` (atomically) and return it with a manifest."""


# ---------------------------------------------------------------------------------------------- runtime
@dataclass
class BackendOptions:
    threads: int | None = None
    provider: str | None = None  # e.g. onnxruntime: cpu, cuda, tensorrt
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Availability:
    ok: bool
    reason: str | None = None
    extra: str | None = None  # the pip extra that brings what is missing


class Session(ABC):
    """A loaded model, ready to run."""

    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on named inputs; return named outputs."""

    def resize(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Fix dynamic dimensions before running. Backends whose runtime needs it override this."""

    def bench_callable(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        """A zero-argument callable that runs the model on preloaded `inputs`: the only thing a benchmark times.

        Backends override it to hand over the runtime's own call (invoke(), run()) with no wrapper around it.
        """
        return lambda: self.run(inputs)

    def describe(self) -> dict[str, Any]:
        """What actually runs: delegate or execution providers, and any fallback that happened."""
        return {}


class Backend(ABC):
    """A runtime that loads artifacts of some formats and runs them."""

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    extra: ClassVar[str | None] = None  # pip extra that installs this backend's runtime
    priority: ClassVar[int] = 0  # higher wins when the user names no backend
    providers: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    # False for backends too slow to sweep: the quickstart and --all-backends skip them unless named.
    in_sweeps: ClassVar[bool] = True

    def available(self) -> Availability:
        return Availability(True)

    def supports(self, artifact: Artifact) -> str | None:
        """None if this backend can run `artifact`, otherwise why not."""
        fmt = artifact.format
        return None if fmt in self.formats else f"{self.name} runs {', '.join(self.formats)} files, not {fmt}"

    def versions(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        """Load `artifact` into a Session. Raise ModelFileError for a file the runtime rejects."""


# ---------------------------------------------------------------------------------------------- devices
@dataclass
class Target:
    """A device profile: what a board is, so that artifacts and benchmarks can be matched to it."""

    name: str
    description: str = ""
    arch: str = ""
    isa: list[str] = field(default_factory=list)
    cores: int | None = None
    ram_mb: int | None = None
    storage_mb: int | None = None
    accelerators: list[str] = field(default_factory=list)
    runtimes: dict[str, str] = field(default_factory=dict)
    connection: dict[str, Any] = field(default_factory=lambda: {"kind": "local"})
    python: str = "python3"
    detected: bool = False

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
