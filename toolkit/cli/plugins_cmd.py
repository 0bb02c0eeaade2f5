"""`toolkit plugins`: installed plugins, what each registers, and whether it loaded."""

from __future__ import annotations

import click

from .options import echo_json, format_option, stdout_console


@click.command("plugins")
@format_option
def plugins(fmt: str) -> None:
    """List plugins (built-in and third-party) with their status and what they register.

    A plugin that fails to import or register shows as failed with the reason; the others keep working.
    TOOLKIT_LOAD_PLUGINS=a,b loads only those; TOOLKIT_BLOCK_PLUGINS=a,b blocks those;
    TOOLKIT_PLUGIN_MODULES=pkg.mod loads a module that is not installed (a plugin under development).

    \b
    Example:
      toolkit plugins --format json
    """
    from .. import plugins as plugin_manager

    loaded = plugin_manager.loaded()
    backends = loaded.registries.backends
    records = [r.to_dict() for r in loaded.records]
    for r in records:
        r["backends_available"] = {
            name: _availability(backends.get(name)) for name in r["registers"].get("backends", [])
        }
    if fmt == "json":
        echo_json({"plugins": records})
        return
    from rich.table import Table

    table = Table(title="Plugins", title_justify="left")
    for col in ("name", "version", "status", "registers"):
        table.add_column(col)
    for r in records:
        status = "[green]ok[/]" if r["status"] == "ok" else f"[red]{r['status']}[/]: {r['error'] or ''}"
        regs = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in r["registers"].items())
        missing = [f"{n} unavailable ({why})" for n, why in r["backends_available"].items() if why]
        if missing:
            regs += "\n[yellow]" + "; ".join(missing) + "[/]"
        table.add_row(r["name"], r["version"] or "", status, regs)
    stdout_console().print(table)


def _availability(backend) -> str | None:
    av = backend.available()
    if av.ok:
        return None
    return f"{av.reason}; pip install 'edge-toolkit[{av.extra}]'" if av.extra else av.reason
