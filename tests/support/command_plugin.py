"""A test plugin that adds a CLI command through register_commands."""

import click

from toolkit.hookspecs import hookimpl


@click.command("hello")
@click.option("--name", default="edge")
def hello(name):
    """Say hello (a plugin command)."""
    click.echo(f"hello {name}")


@hookimpl
def register_commands(register):
    register(hello)
