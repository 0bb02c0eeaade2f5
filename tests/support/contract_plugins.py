"""Test plugins that exercise the plugin contract: each module-level plugin object is registered by a test (or
loaded in a child through TOOLKIT_PLUGIN_MODULES=contract_plugins), and each models a mistake or a choice a
real plugin author makes. They import only the public API."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from toolkit.api import (Availability, Backend, BackendOptions, ConversionResult, Dataset, PluginOption, Quantizer,
                         Session, calibration_record, hookimpl, read_specs)

FEATURES, CLASSES = 4, 3


def tiny_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The weights toolkit.testing.tiny_onnx_model writes for the same seed."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((FEATURES, CLASSES)).astype(np.float32), rng.standard_normal(CLASSES).astype(np.float32)


class TinyTabular(Dataset):
    """Real-valued rows for the tiny ONNX model, labelled by that model itself (so top-1 is 100% when right)."""

    name = "tiny-tabular"
    description = "400 random rows of 4 features, labelled by the tiny model's own answer"
    task = "classification"
    num_classes = CLASSES

    def load(self, split: str):
        rng = np.random.default_rng(0 if split == "train" else 1)
        x = rng.standard_normal((400, FEATURES)).astype(np.float32)
        w, b = tiny_weights()
        return x, np.maximum(x @ w + b, 0).argmax(axis=1)


class TinyRegression(Dataset):
    """The tiny model's own outputs plus 0.5 as regression targets: a right backend scores MAE 0.5 exactly."""

    name = "tiny-regression"
    description = "400 random rows; targets are the tiny model's outputs + 0.5"
    task = "regression"

    def load(self, split: str):
        x, _ = TinyTabular().load(split)
        w, b = tiny_weights()
        return x, np.maximum(x @ w + b, 0) + 0.5


class TwoInputSum(Dataset):
    """Named inputs a and b for toolkit.testing.tiny_onnx_two_inputs; scored on its output `sum` (a + b)."""

    name = "two-input-sum"
    description = "a and b of shape [N, 6]; the target is a + b"
    task = "regression"
    target_output = "sum"

    def load(self, split: str):
        rng = np.random.default_rng(2)
        a, b = rng.standard_normal((50, 6)).astype(np.float32), rng.standard_normal((50, 6)).astype(np.float32)
        return {"a": a, "b": b}, a + b


class NumpySession(Session):
    """relu(x @ w + b), as the tiny model computes it, with a deliberate twist chosen by the backend."""

    def __init__(self, path: Path, twist: str):
        self.input_specs, self.output_specs = read_specs(path)
        self.w, self.b = tiny_weights()
        self.twist = twist

    def run(self, inputs):
        y = np.maximum(inputs["x"] @ self.w + self.b, 0)
        if self.twist == "shape":
            y = y[:, :2]  # N x 2 for a declared N x 3
        elif self.twist == "dtype":
            y = y.astype(np.float64)
        elif self.twist == "partial":
            y = y[:1]  # one answer, whatever the batch
        elif self.twist == "keyerror":
            raise KeyError("does_not_exist")
        return {"y": y}


class TwistedBackend(Backend):
    formats = ("onnx",)
    priority = -50
    twist = ""

    def load(self, artifact, options: BackendOptions) -> Session:
        return NumpySession(artifact.path, self.twist)


class WrongShapeBackend(TwistedBackend):
    name = "wrong-shape"
    twist = "shape"


class Float64Backend(TwistedBackend):
    name = "float64"
    twist = "dtype"


class KeyErrorBackend(TwistedBackend):
    name = "keyerror"
    twist = "keyerror"


class CopyQuantizer(Quantizer):
    """Claims int8 for .onnx at a higher priority than onnxruntime's; writes the source unchanged (so parity holds)."""

    name = "copy-int8"
    description = "a test quantizer that copies the model"
    source_formats = ("onnx",)
    target_format = "onnx"
    schemes = ("int8", "fake8")
    scheme_help = {"fake8": "a test scheme only this plugin offers"}
    priority = 20
    options = (PluginOption("note", str, "none", "a free-text note kept in the manifest"),)

    def quantize(self, source, output: Path, scheme: str, options) -> ConversionResult:
        shutil.copyfile(source.path, output)
        return ConversionResult(precision="int8", details={"note": options.extra["note"]},
                                quantization=calibration_record(options, "copy"))


class GoodPlugin:
    """A well-behaved plugin: the dataset, three broken backends and a competing quantizer."""

    @hookimpl
    def register_datasets(self, register):
        register(TinyTabular())
        register(TinyRegression())
        register(TwoInputSum())

    @hookimpl
    def register_backends(self, register):
        register(WrongShapeBackend())
        register(Float64Backend())
        register(KeyErrorBackend())
        register(PartialBackend())

    @hookimpl
    def register_quantizers(self, register):
        register(CopyQuantizer())


class DatasetAsBackend:
    """A plugin author's slip: a Dataset handed to register_backends."""

    @hookimpl
    def register_backends(self, register):
        register(TinyTabular())


class ClassNotInstance:
    @hookimpl
    def register_backends(self, register):
        register(WrongShapeBackend)


class UnavailableEverything(Backend):
    name = "npu-runtime"
    formats = ("onnx",)

    def available(self) -> Availability:
        return Availability(False, "the NPU driver is not installed", "npu")

    def load(self, artifact, options):
        raise AssertionError("never loaded")


# What TOOLKIT_PLUGIN_MODULES=contract_plugins loads in a child or the CLI.
_good = GoodPlugin()


@hookimpl
def register_datasets(register):
    _good.register_datasets(register)


@hookimpl
def register_backends(register):
    _good.register_backends(register)


class ScrambleQuantizer(Quantizer):
    """Writes a different model than it was given: the core's parity check must refuse to publish it."""

    name = "scrambler"
    source_formats = ("onnx",)
    target_format = "onnx"
    schemes = ("scramble8",)
    needs_calibration = False

    def quantize(self, source, output: Path, scheme: str, options) -> ConversionResult:
        from toolkit.testing import tiny_onnx_model

        tiny_onnx_model(output, seed=7)
        return ConversionResult(precision="fp32")


class StuckQuantizer(Quantizer):
    """Starts a process of its own and writes half a file, then dies (die8) or hangs (hang8): what a killed or
    crashed converter leaves behind, for the core to clean up. Writes the pids it knows to $STUCK_PIDS."""

    name = "stuck"
    source_formats = ("onnx",)
    target_format = "onnx"
    schemes = ("die8", "hang8")
    needs_calibration = False

    def quantize(self, source, output: Path, scheme: str, options) -> ConversionResult:
        import os
        import signal
        import subprocess
        import tempfile
        import time

        helper = subprocess.Popen(["sleep", "300"])
        output.write_bytes(source.path.read_bytes()[:100])
        scratch = tempfile.mkdtemp()  # in the TMPDIR the core gave this process
        Path(os.environ["STUCK_PIDS"]).write_text(f"{os.getpid()} {helper.pid} {scratch}")
        if scheme == "die8":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(300)
        raise AssertionError("not reached")


@hookimpl
def register_quantizers(register):
    _good.register_quantizers(register)
    register(ScrambleQuantizer())
    register(StuckQuantizer())


class PartialBackend(TwistedBackend):
    """Answers for the first row of a batch only."""

    name = "partial"
    twist = "partial"
