"""Plugin hooks. Each receives `register`, a callable that adds one item to the matching typed registry."""

import pluggy

hookspec = pluggy.HookspecMarker("toolkit")
hookimpl = pluggy.HookimplMarker("toolkit")


@hookspec
def register_models(register):
    """Register model families: register(toolkit.interfaces.Model instance)."""


@hookspec
def register_datasets(register):
    """Register datasets: register(toolkit.interfaces.Dataset instance)."""


@hookspec
def register_converters(register):
    """Register format converters: register(toolkit.interfaces.Converter instance)."""


@hookspec
def register_quantizers(register):
    """Register quantizers: register(toolkit.interfaces.Quantizer instance)."""


@hookspec
def register_backends(register):
    """Register runtimes: register(toolkit.interfaces.Backend instance)."""


@hookspec
def register_targets(register):
    """Register device profiles: register(toolkit.interfaces.Target instance)."""


@hookspec
def register_commands(register):
    """Register extra CLI commands: register(click.Command); its name becomes `toolkit NAME`."""
