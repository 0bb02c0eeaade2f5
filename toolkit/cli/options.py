"""Options and helpers shared by several commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import click

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Output format; json is for scripts.")


def _set_traceback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        # An environment variable, so that child processes and every module see the same switch.
        os.environ["TOOLKIT_DEBUG"] = "1"


traceback_option = click.option("--traceback", is_flag=True, expose_value=False, is_eager=True,
                                callback=_set_traceback, help="Show the full traceback of an error.")

class OutputFile(click.Path):
    """An output file path: like click.Path(dir_okay=False), and a name ending in a slash (a folder) is refused
    instead of silently losing the slash."""

    def __init__(self, example: str = "model.onnx") -> None:
        super().__init__(dir_okay=False, path_type=Path)
        self.example = example

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.endswith(("/", os.sep)):
            self.fail(f"'{value}' ends in a slash, so it names a folder; name the file, e.g. {value}{self.example}",
                      param, ctx)
        return super().convert(value, param, ctx)


parity_option = click.option(
    "--parity", "parity", multiple=True, metavar="NAME=VALUE",
    help="Override a threshold of the check against the source: rtol, atol (fp32, fp16), top1 (least top-1 "
         "agreement of a quantized classifier, default 0.97), nrmse (largest error of a quantized regression as a "
         "share of the source's spread, default 0.1). Repeat for several.")

keep_failed_option = click.option(
    "--keep-failed", is_flag=True,
    help="When the result fails its check, keep it as NAME.failed.EXT with a manifest marked failed.")


def _set_memory_limit(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    from ..child import MEMORY_LIMIT_ENV, memory_limit_mb
    from ..errors import UsageError

    if value is None:  # no flag: the environment's value must be a limit too, checked before any work
        try:
            memory_limit_mb()
        except UsageError as e:
            raise click.UsageError(e.one_line()) from None
        return
    if 0 < value < 256:
        raise click.BadParameter(f"{value} MB is too little for any child; use 256 or more, or 0 for none")
    os.environ[MEMORY_LIMIT_ENV] = str(value)  # read by every child this command starts


memory_limit_option = click.option(
    "--memory-limit", type=click.IntRange(min=0, max=1 << 24), metavar="MB", expose_value=False, is_eager=True,
    callback=_set_memory_limit,
    help="Address-space limit of each child process in MB: 0 for none, else at least 256 (default: "
         "$TOOLKIT_CHILD_MEMORY_MB, or 3/4 of this machine's memory and at least 4096; GPU providers run "
         "without one).")

plugin_option = click.option("-o", "--option", "plugin_options", multiple=True, metavar="KEY=VALUE",
                             help="An option of the chosen plugin (see below); repeat for several.")


class PluginOptionsCommand(click.Command):
    """A command whose --help ends with the options the plugins of `kinds` declare (for `-o KEY=VALUE`)."""

    def __init__(self, *args: Any, kinds: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.kinds = kinds

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        rows = plugin_option_rows(self.kinds)
        if rows:
            with formatter.section("Plugin options (-o KEY=VALUE)"):
                formatter.write_dl(rows)


def plugin_option_rows(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    from .. import plugins

    try:
        regs = plugins.registries().kinds()
    except Exception:  # help must show even when a plugin is broken
        return []
    rows = []
    for kind in kinds:
        for item in regs[kind]:
            for opt in getattr(item, "options", ()):
                choices = f" [{'|'.join(opt.choices)}]" if opt.choices else ""
                rows.append((f"{item.name}: {opt.name}={opt.type.__name__}{choices}",
                             f"{opt.help} (default: {opt.default})"))
    return rows


def plugin_command(name: str, kinds: tuple[str, ...]) -> Callable[[Callable[..., Any]], click.Command]:
    return click.command(name, cls=PluginOptionsCommand, kinds=kinds)


def echo_json(obj: object) -> None:
    from ..atomic import json_text

    click.echo(json_text(obj), nl=False)


def stdout_console():
    """A rich console for results: terminal width on a terminal, 120 columns in a pipe or file."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def note(text: str, label: str = "Note") -> None:
    """One line on stderr, with plugin or file text shown as it is (never as markup), a newline in a file name
    escaped."""
    from ..errors import one_line_text

    click.echo(f"{label}: {one_line_text(text)}", err=True)
