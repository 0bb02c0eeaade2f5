"""A test plugin whose backend dies by SIGSEGV while loading, as a broken native runtime would."""

import os
import signal

from toolkit.hookspecs import hookimpl
from toolkit.interfaces import Backend


class SegfaultBackend(Backend):
    name = "segfault"
    formats = ("tflite", "onnx")
    priority = -100

    def load(self, artifact, options):
        os.kill(os.getpid(), signal.SIGSEGV)


@hookimpl
def register_backends(register):
    register(SegfaultBackend())
