"""The public API for plugin authors: everything a plugin may import, and nothing else.

    from toolkit.api import hookimpl, Backend, Session, Availability, TensorSpec

Names here keep their meaning across minor versions; every change is listed in docs/plugin-api-changes.md.
Importing this module imports no ML framework.
"""

from .artifact import Artifact, Manifest, library_versions, sha256_file
from .calibration import calibration_record, checked_calibration
from .child import report_phase, report_progress
from .errors import (CheckFailedError, ConversionError, DataUnavailableError, MissingRuntimeError, ModelFileError,
                     ToolkitError, UnknownNameError, UsageError, first_line)
from .hookspecs import hookimpl
from .layers import dequantize, layer_name, onnx_output_quantization
from .interfaces import (TASKS, Availability, Backend, BackendOptions, ConversionOptions, ConversionResult,
                         Converter, Dataset, Model, ModelFormat, PluginOption, Quantizer, Runner, Session, Target,
                         TrainingResult)
from .records import BenchFailure, BenchRecord, BenchRequest
from .specs import Quantization, TensorSpec
from .benchmark.remote import ConnectionLost, DeviceError, RemoteJob
from .benchmark.remote import bootstrap_command as agent_command
from .benchmark.remote import converse as converse_with_agent
from .benchmark.remote import failure_record
from .benchmark.remote import record as remote_record
from .profiles import ProfileError, load_profile, target_from_dict
from .text import WordTokenizer

API_VERSION = 1


def host_environment() -> dict:
    """This machine as a benchmark record describes it: cpu, isa flags, arch, cores, ram_mb, os, python."""
    from . import __version__
    from .benchmark.protocol import environment

    return environment(None, __version__)


def remote_job(request: BenchRequest, folder):
    """For a runner that measures on another machine: the job for one pair (what to ship, the measuring sources,
    the device's requirements), its files written into `folder`. See docs/writing-a-runner-plugin.md."""
    from .benchmark import remote

    return remote.prepare(request, folder)


def registries():
    """Everything the loaded plugins registered (e.g. registries().datasets.get(name) inside a model's train)."""
    from . import plugins

    return plugins.registries()


def model_format(name: str) -> ModelFormat:
    """The registered format `name` (e.g. to read a .tflite's specs from a converter: read_specs(path))."""
    from . import formats

    return formats.get(name)


def read_specs(path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of any model file, through the format plugin that recognises it."""
    from . import formats

    return formats.read_specs(path)


__all__ = [
    "API_VERSION",
    # hooks
    "hookimpl",
    # interfaces
    "ModelFormat", "Dataset", "Model", "Converter", "Quantizer", "Backend", "Session", "Target", "Runner",
    "TASKS",
    # records the interfaces exchange
    "Availability", "PluginOption", "ConversionOptions", "ConversionResult", "TrainingResult", "BackendOptions",
    "TensorSpec", "Quantization", "Artifact", "Manifest", "BenchRequest", "BenchRecord", "BenchFailure",
    # errors
    "ToolkitError", "UsageError", "UnknownNameError", "ModelFileError", "MissingRuntimeError",
    "DataUnavailableError", "ConversionError", "CheckFailedError",
    # helpers
    "library_versions", "sha256_file", "first_line", "report_phase", "report_progress", "calibration_record",
    "checked_calibration", "model_format", "read_specs", "registries", "host_environment",
    # device profiles: a TOML file or a table, checked field by field
    "load_profile", "target_from_dict", "ProfileError",
    # remote runners: prepare a job, start the device agent, talk to it, make the record
    "remote_job", "agent_command", "converse_with_agent", "remote_record", "failure_record", "RemoteJob", "DeviceError",
    "ConnectionLost",
    # text models: tokenisation outside the graph, with the vocabulary beside the artifact
    "WordTokenizer",
    # per-layer tensors (Session.trace): integer values as real numbers, tensor names as layer names
    "dequantize", "layer_name", "onnx_output_quantization",
]
