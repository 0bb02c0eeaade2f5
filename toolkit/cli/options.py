"""Options and helpers shared by several commands."""

from __future__ import annotations

import os
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

keep_failed_option = click.option(
    "--keep-failed", is_flag=True,
    help="When the result fails its check, keep it as NAME.failed.EXT with a manifest marked failed.")


def _set_memory_limit(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        from ..child import MEMORY_LIMIT_ENV

        os.environ[MEMORY_LIMIT_ENV] = str(value)  # read by every child this command starts


memory_limit_option = click.option(
    "--memory-limit", type=click.IntRange(min=256), metavar="MB", expose_value=False, is_eager=True,
    callback=_set_memory_limit,
    help="Address-space limit of each child process in MB (default: from this machine's memory, or "
         "$TOOLKIT_CHILD_MEMORY_MB).")

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
    """One line on stderr, with plugin or file text shown as it is (never as markup)."""
    click.echo(f"{label}: {text}", err=True)
