"""Test plugin: backends that misbehave on purpose, one per kind of defect the fuzz harness must catch (a hang, a
bug's exception, a message of several lines). Load with TOOLKIT_PLUGIN_MODULES=fuzz_probe_backends."""

import time

from toolkit.errors import ModelFileError
from toolkit.hookspecs import hookimpl
from toolkit.interfaces import Backend


class _Probe(Backend):
    formats = ("onnx", "tflite")
    priority = -100  # never chosen unless named


class HangBackend(_Probe):
    name = "probe-hang"

    def load(self, artifact, options):
        time.sleep(3600)


class BugBackend(_Probe):
    name = "probe-bug"

    def load(self, artifact, options):
        return {}["no such key"]


class MultiLineBackend(_Probe):
    name = "probe-multiline"

    def load(self, artifact, options):
        err = ModelFileError("refused")
        err.message = "refused:\n" + "the whole model as text\n" * 3  # set afterwards, as a careless caller could
        raise err


@hookimpl
def register_backends(register):
    for backend in (HangBackend(), BugBackend(), MultiLineBackend()):
        register(backend)
