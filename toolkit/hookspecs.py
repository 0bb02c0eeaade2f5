"""Plugin hooks. Each receives `register`, a callable that adds one item to the matching typed registry;
`register` checks the item's type and required attributes, and a wrong item fails its plugin at load time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from .interfaces import Backend, Converter, Dataset, Model, ModelFormat, Quantizer, Runner, Target

hookspec = pluggy.HookspecMarker("toolkit")
hookimpl = pluggy.HookimplMarker("toolkit")


@hookspec
def register_formats(register: Callable[[ModelFormat], None]) -> None:
    """Register model file formats: register(ModelFormat instance): name, suffixes, sniff, spec reader."""


@hookspec
def register_models(register: Callable[[Model], None]) -> None:
    """Register model families: register(Model instance)."""


@hookspec
def register_datasets(register: Callable[[Dataset], None]) -> None:
    """Register datasets: register(Dataset instance)."""


@hookspec
def register_converters(register: Callable[[Converter], None]) -> None:
    """Register format converters: register(Converter instance)."""


@hookspec
def register_quantizers(register: Callable[[Quantizer], None]) -> None:
    """Register quantizers: register(Quantizer instance), with the schemes each offers."""


@hookspec
def register_backends(register: Callable[[Backend], None]) -> None:
    """Register runtimes: register(Backend instance)."""


@hookspec
def register_targets(register: Callable[[Target], None]) -> None:
    """Register device profiles: register(Target instance)."""


@hookspec
def register_runners(register: Callable[[Runner], None]) -> None:
    """Register benchmark runners (where a benchmark runs: local, ssh, adb...): register(Runner instance)."""


@hookspec
def register_commands(register: Callable[[click.Command], None]) -> None:
    """Register extra CLI commands: register(click.Command); its name becomes `toolkit NAME`."""
