"""`toolkit plugins`: installed plugins, what each registers, whether it loaded, and (--verbose) their options."""

from __future__ import annotations

import click

from .options import echo_json, format_option, stdout_console, traceback_option


@click.command("plugins")
@click.option("-v", "--verbose", is_flag=True, help="Also list each item's options, priority and availability.")
@format_option
@traceback_option
def plugins(verbose: bool, fmt: str) -> None:
    """List plugins (built-in and third-party) with their status and what they register.

    A plugin that fails to import or register shows as failed with the reason; the others keep working.
    TOOLKIT_LOAD_PLUGINS=a,b loads only those; TOOLKIT_BLOCK_PLUGINS=a,b blocks those;
    TOOLKIT_PLUGIN_MODULES=pkg.mod loads a module that is not installed (a plugin under development).

    \b
    Example:
      toolkit plugins --verbose
      toolkit plugins --format json
    """
    from rich.markup import escape

    from .. import plugins as plugin_manager
    from ..options import describe_options

    loaded = plugin_manager.loaded()
    regs = loaded.registries.kinds()
    records = [r.to_dict() for r in loaded.records]
    for r in records:
        r["items"] = {}
        for kind, names in r["registers"].items():
            for name in names:
                item = regs[kind].get(name)
                r["items"][f"{kind}/{name}"] = _item_info(item, describe_options(item))
    if fmt == "json":
        echo_json({"plugins": records})
        return
    from rich.table import Table

    table = Table(title="Plugins", title_justify="left")
    for col in ("name", "version", "status", "registers"):
        table.add_column(col)
    for r in records:
        status = "[green]ok[/]" if r["status"] == "ok" else f"[red]{r['status']}[/]"
        if r["error"]:
            status += ": " + escape(r["error"])
        lines = ["; ".join(f"{kind}: {', '.join(names)}" for kind, names in r["registers"].items())]
        for key, info in r["items"].items():
            if info.get("unavailable"):
                lines.append(f"[yellow]{escape(key.split('/')[1])} unavailable ({escape(info['unavailable'])})[/]")
            if verbose:
                details = [f"priority {info['priority']}"] if info.get("priority") is not None else []
                details += [f"-o {o['name']}={'|'.join(o['choices']) if o['choices'] else o['type']} "
                            f"(default {o['default']}): {o['help']}" for o in info["options"]]
                if details:
                    lines.append(f"  {escape(key)}: " + escape("; ".join(details)))
        table.add_row(escape(r["name"]), escape(r["version"] or ""), status, "\n".join(l for l in lines if l))
    stdout_console().print(table)


def _item_info(item, options: list[dict]) -> dict:
    info: dict = {"options": options, "priority": getattr(item, "priority", None)}
    available = getattr(item, "available", None)
    if callable(available):
        try:
            av = available()
            extra = av.extra or getattr(item, "extra", None)
            if not av.ok:
                info["unavailable"] = (f"{av.reason}; pip install 'edge-toolkit[{extra}]'" if extra else av.reason)
        except Exception as e:  # a plugin's own bug must not hide the others
            info["unavailable"] = f"available() raised {type(e).__name__}"
    return info
