"""A test plugin whose backend's runtime is not installed."""

from toolkit.hookspecs import hookimpl
from toolkit.interfaces import Availability, Backend


class NotInstalledBackend(Backend):
    name = "npu-sim"
    formats = ("tflite",)
    extra = "npu"
    priority = 100  # it would be the default for .tflite if it were installed

    def available(self):
        return Availability(False, "the npu_sim module is not installed", self.extra)

    def load(self, artifact, options):
        raise AssertionError("never loaded: not available")


@hookimpl
def register_backends(register):
    register(NotInstalledBackend())
