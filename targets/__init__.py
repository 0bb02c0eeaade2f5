"""Built-in plugin: device profiles (one TOML file each in this folder) and the detected `host` target."""

from __future__ import annotations

import os
import platform
import tomllib
from importlib import resources

from toolkit.api import Target, hookimpl


def profile_targets() -> list[Target]:
    out = []
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text())
            out.append(Target(**data))
    return out


def host_target() -> Target:
    """This machine, detected: architecture, cores, RAM, ISA flags and installed runtimes."""
    from importlib import metadata

    from toolkit.api import host_environment

    runtimes = {}
    for dist in ("ai-edge-litert", "tflite-runtime", "onnxruntime", "onnxruntime-gpu", "tensorflow-cpu",
                 "tensorflow", "keras", "onnx"):
        try:
            runtimes[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    env = host_environment()
    return Target(name="host", description=f"this machine: {env['cpu']}", arch=platform.machine(),
                  isa=env["isa"], cores=os.cpu_count(), ram_mb=env["ram_mb"], runtimes=runtimes,
                  connection={"kind": "local"}, python=os.environ.get("TOOLKIT_PYTHON", "python3"), detected=True)


@hookimpl
def register_targets(register):
    register(host_target())
    for target in profile_targets():
        register(target)
