"""`toolkit targets`: device profiles, with `host` detected from this machine."""

from __future__ import annotations

import click

from .options import echo_json, format_option, stdout_console, traceback_option


@click.command("targets")
@format_option
@traceback_option
def targets(fmt: str) -> None:
    """List device profiles: the detected `host` and the shipped profiles.

    \b
    Example:
      toolkit targets --format json
    """
    from .. import plugins

    items = [t.to_dict() for t in plugins.registries().targets]
    if fmt == "json":
        echo_json({"targets": items})
        return
    from rich.table import Table

    table = Table(title="Targets", title_justify="left")
    for col in ("name", "arch", "cores", "RAM", "accelerators", "connection", "description"):
        table.add_column(col)
    for t in items:
        ram = f"{t['ram_mb'] / 1024:.1f} GiB" if t["ram_mb"] else ""
        conn = t["connection"].get("kind", "")
        if t["connection"].get("host"):
            conn += f" {t['connection'].get('user', '')}@{t['connection']['host']}"
        table.add_row(t["name"], t["arch"], str(t["cores"] or ""), ram, ", ".join(t["accelerators"]), conn,
                      t["description"])
    console = stdout_console()
    console.print(table)
    for t in items:
        if t["detected"]:
            runtimes = ", ".join(f"{k} {v}" for k, v in t["runtimes"].items()) or "none"
            console.print(f"[bold]{t['name']}[/] (detected): ISA {' '.join(t['isa']) or 'unknown'}; "
                          f"runtimes {runtimes}", soft_wrap=True)
