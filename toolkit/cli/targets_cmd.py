"""`toolkit targets`: device profiles (list, show) and the checks of a model against them before deployment."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from .options import echo_json, format_option, stdout_console, traceback_option

MIB = 2**20


def _size(mb: float | None) -> str:
    if not mb:
        return ""
    if mb >= 1024:
        return f"{mb / 1024:.0f} GiB" if mb % 1024 == 0 else f"{mb / 1024:.1f} GiB"
    return f"{mb:g} MiB" if mb >= 1 else f"{mb * 1024:g} KiB"


def _connection(t: dict[str, Any]) -> str:
    conn = t["connection"]
    text = conn.get("kind", "")
    if conn.get("host"):
        who = f"{conn['user']}@" if conn.get("user") else ""
        text += f" {who}{conn['host']}" + (f":{conn['port']}" if conn.get("port") else "")
    return text


def _all_targets() -> list[Any]:
    from .. import plugins

    regs = plugins.registries().targets
    regs.check_user_profiles()
    return [regs.get(name) for name in regs.names()]


@click.group("targets", invoke_without_command=True)
@format_option
@traceback_option
@click.pass_context
def targets(ctx: click.Context, fmt: str) -> None:
    """Device profiles, and checks of a model against them before you ship it.

    With no subcommand, lists the profiles (as `targets list`). Profiles are TOML files: the shipped ones,
    the detected `host`, and your own from the folders in TOOLKIT_TARGETS_PATH (docs/targets.md).

    \b
    Examples:
      toolkit targets
      toolkit targets show raspberry-pi-4
      toolkit targets check cnn_int8.tflite --target raspberry-pi-4 --target coral-dev-board
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_targets, fmt=fmt)


@targets.command("list")
@format_option
@traceback_option
def list_targets(fmt: str) -> None:
    """List the device profiles: name, architecture, cores, RAM, storage, accelerators and connection
    (`targets show NAME` for the rest).

    \b
    Example:
      toolkit targets list --format json
    """
    items = [t.to_dict() for t in _all_targets()]
    if fmt == "json":
        echo_json({"targets": items})
        return
    from rich.table import Table

    table = Table(title="Targets", title_justify="left")
    table.add_column("name", no_wrap=True)
    for col in ("arch", "cores", "RAM", "storage", "accelerators", "connection"):
        table.add_column(col)
    for t in items:
        table.add_row(*(escape(cell) for cell in (
            t["name"], t["arch"], str(t["cores"] or ""), _size(t["ram_mb"]), _size(t["storage_mb"]),
            ", ".join(t["accelerators"]), _connection(t))))
    console = stdout_console()
    console.print(table)
    for t in items:
        if t["detected"]:
            runtimes = ", ".join(f"{k} {v}" for k, v in t["runtimes"].items()) or "none"
            console.print(f"[bold]{escape(t['name'])}[/] (detected): ISA {escape(' '.join(t['isa'])) or 'unknown'}; "
                          f"runtimes {escape(runtimes)}", soft_wrap=True)


@targets.command("show")
@click.argument("name")
@format_option
@traceback_option
def show_target(name: str, fmt: str) -> None:
    """Every field of one profile, and the file it came from.

    \b
    Example:
      toolkit targets show coral-dev-board
    """
    from .. import plugins
    from ..profiles import FIELDS

    regs = plugins.registries().targets
    regs.check_user_profiles()
    target = regs.get(name).to_dict()
    if fmt == "json":
        echo_json(target)
        return
    console = stdout_console()
    console.print(f"[bold]{escape(target['name'])}[/]" + (f": {escape(target['description'])}"
                                                          if target["description"] else ""), soft_wrap=True)
    for spec in FIELDS[2:]:
        value = target[spec.name]
        if value in (None, "", [], {}):
            continue
        if spec.name in ("ram_mb", "storage_mb"):
            shown = _size(value)
        elif spec.name == "ops":
            shown = "; ".join(f"{k}: {len(v)} operators ({', '.join(v[:6])}{', ...' if len(v) > 6 else ''})"
                              for k, v in value.items())
        elif spec.name == "connection":
            shown = _connection(target)
        elif isinstance(value, list):
            shown = ", ".join(value)
        elif isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
        else:
            shown = str(value)
        console.print(f"  {spec.name:18} {shown}", soft_wrap=True, highlight=False, markup=False)
    console.print(f"  {'from':18} {target['source']}", soft_wrap=True, highlight=False, markup=False)


@targets.command("check")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "target_names", multiple=True, required=True, metavar="NAME",
              help="A profile's name (see `toolkit targets`); repeat for several.")
@click.option("--results", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A `toolkit bench --format json` output: its measured p90 is held to the latency budget.")
@click.option("--latency-budget", "budget_ms", type=click.FloatRange(min=0, min_open=True), metavar="MS",
              help="Largest acceptable p90 latency in milliseconds (default: the profile's latency_budget_ms).")
@format_option
@traceback_option
def check_target(model: Path, target_names: tuple[str, ...], results: Path | None, budget_ms: float | None,
                 fmt: str) -> None:
    """Check MODEL against device profiles before deploying it: its format, file size against storage,
    estimated memory (weights + peak activations) against RAM, operators against what the runtime or
    accelerator runs, precision, fixed shapes, and a measured latency against a budget. Each check says
    pass, warn, fail (with the fix) or skip (with what it needs). Exits 1 when a check fails.

    \b
    Examples:
      toolkit targets check cnn_int8.tflite --target raspberry-pi-4
      toolkit targets check cnn.tflite --target coral-dev-board --target cortex-m7-mcu --format json
      toolkit bench cnn_int8.tflite --target raspberry-pi-4 --format json > results.json
      toolkit targets check cnn_int8.tflite --target raspberry-pi-4 --results results.json --latency-budget 5
    """
    from .. import plugins
    from ..target_check import check_all, model_facts, read_results

    regs = plugins.registries().targets
    regs.check_user_profiles()
    chosen = [regs.get(name) for name in dict.fromkeys(target_names)]  # unknown names fail before the model is read
    records = read_results(results) if results else []
    facts = model_facts(model)
    report = []
    for target in chosen:
        checks = check_all(facts, model, target, records, budget_ms)
        report.append({"target": target.name, "ok": not any(c.status == "fail" for c in checks),
                       "checks": [c.to_dict() for c in checks]})
    failed = any(not r["ok"] for r in report)
    if fmt == "json":
        echo_json({"model": str(model), "format": facts["format"], "precision": facts["precision"],
                   "size_bytes": facts["size_bytes"], "footprint": facts["footprint"], "ok": not failed,
                   "targets": report})
    else:
        from rich.table import Table
        from rich.text import Text

        console = stdout_console()
        style = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
        for r in report:
            verdict = "[green]passes[/]" if r["ok"] else "[bold red]fails[/]"
            table = Table(title=f"{escape(model.name)} on {escape(r['target'])}: {verdict}", title_justify="left")
            table.add_column("check")
            table.add_column("result")
            table.add_column("detail", overflow="fold")
            table.add_column("fix", overflow="fold")
            for c in r["checks"]:
                table.add_row(c["name"], Text(c["status"], style=style[c["status"]]), Text(c["detail"]),
                              Text(c["fix"] or ""))
            console.print(table)
    if failed:
        sys.exit(1)
