"""Options shared by several commands."""

from __future__ import annotations

import click

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Output format; json is for scripts.")


def echo_json(obj: object) -> None:
    from ..atomic import json_text

    click.echo(json_text(obj), nl=False)


def stdout_console():
    """A rich console for results: terminal width on a terminal, 120 columns in a pipe or file."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)
