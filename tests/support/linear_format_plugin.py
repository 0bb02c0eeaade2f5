"""A test plugin that adds a whole new model format, `.linz` (a linear layer: b"LINZ" then an .npz of w and b),
and a backend that runs it. Loaded with TOOLKIT_PLUGIN_MODULES=linear_format_plugin, it makes `toolkit bench`
accept .linz files with no change to the core. Imports only the public API."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from toolkit.api import Backend, BackendOptions, ModelFileError, ModelFormat, Session, TensorSpec, hookimpl

MAGIC = b"LINZ"


def write_linz(path: Path, features: int = 5, outputs: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.savez(buf, w=rng.standard_normal((features, outputs)).astype(np.float32),
             b=rng.standard_normal(outputs).astype(np.float32))
    path.write_bytes(MAGIC + buf.getvalue())
    return path


def _weights(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = path.read_bytes()
    try:
        with np.load(io.BytesIO(data[len(MAGIC):]), allow_pickle=False) as npz:
            return npz["w"], npz["b"]
    except Exception as e:
        raise ModelFileError(f"'{path.name}' is not a valid .linz file ({type(e).__name__})", "Re-export it") from None


class LinzFormat(ModelFormat):
    name = "linz"
    suffixes = (".linz",)
    description = "a linear layer: LINZ magic + npz(w, b)"

    def sniff(self, head: bytes, path: Path) -> bool:
        return head.startswith(MAGIC)

    def read_specs(self, path: Path):
        w, b = _weights(path)
        return ([TensorSpec("features", (None, w.shape[0]), "float32")],
                [TensorSpec("scores", (None, w.shape[1]), "float32")])

    def describe(self, path: Path):
        return {"precision": "fp32"}


class LinzSession(Session):
    def __init__(self, path: Path):
        self.w, self.b = _weights(path)
        self.input_specs, self.output_specs = LinzFormat().read_specs(path)

    def run(self, inputs):
        return {"scores": (inputs["features"] @ self.w + self.b).astype(np.float32)}


class LinzBackend(Backend):
    name = "linz-numpy"
    formats = ("linz",)
    priority = 5
    description = "runs .linz files with numpy"

    def load(self, artifact, options: BackendOptions) -> Session:
        return LinzSession(artifact.path)


@hookimpl
def register_formats(register):
    register(LinzFormat())


@hookimpl
def register_backends(register):
    register(LinzBackend())
