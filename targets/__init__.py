"""Built-in plugin: the shipped device profiles (one TOML file each in this folder, checked on load by
toolkit.api.load_profile) and `host`, this machine as detected at run time."""

from __future__ import annotations

import os
import platform
from importlib import resources
from pathlib import Path

from toolkit.api import Target, hookimpl, host_environment, load_profile

# Distributions whose presence says what this machine can run, and the formats they load.
_RUNTIME_FORMATS = {"ai-edge-litert": "tflite", "tflite-runtime": "tflite", "onnxruntime": "onnx",
                    "onnxruntime-gpu": "onnx"}


def profile_targets() -> list[Target]:
    folder = Path(str(resources.files(__name__)))
    return [load_profile(p) for p in sorted(folder.glob("*.toml"))]


def host_target() -> Target:
    """This machine, detected: architecture, cores, RAM, free disk, ISA flags and installed runtimes."""
    import shutil
    from importlib import metadata

    runtimes = {}
    for dist in (*_RUNTIME_FORMATS, "tensorflow-cpu", "tensorflow", "keras", "onnx"):
        try:
            runtimes[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    env = host_environment()
    return Target(name="host", description=f"this machine: {env['cpu']}", arch=platform.machine(), cpu=env["cpu"],
                  isa=env["isa"], cores=os.cpu_count(), ram_mb=env["ram_mb"],
                  storage_mb=shutil.disk_usage(os.getcwd()).free // 2**20, runtimes=runtimes,
                  formats=sorted({f for d, f in _RUNTIME_FORMATS.items() if d in runtimes}),
                  connection={"kind": "local"}, python=os.environ.get("TOOLKIT_PYTHON", "python3"), detected=True,
                  source="detected")


@hookimpl
def register_targets(register):
    register(host_target())
    for target in profile_targets():
        register(target)
