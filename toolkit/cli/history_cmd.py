"""`toolkit history`: the saved benchmark runs (`toolkit bench --save`), filtered, or one run in full."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from ..errors import UsageError
from .options import stdout_console, traceback_option

history_option = click.option(
    "--history", "history_path", type=click.Path(dir_okay=False, path_type=Path), envvar="TOOLKIT_HISTORY",
    help="The history database [$TOOLKIT_HISTORY; default ~/.local/share/edge-toolkit/history.sqlite].")


def _day_or_time(value: str | None, flag: str) -> str | None:
    """An ISO date (2026-12-01) or date and time (2026-12-01T14:00 or 2026-12-01 14:00), in UTC, checked to exist,
    as the history compares them (2026-12-01T14:00:00)."""
    if value is None:
        return None
    from datetime import date, datetime

    from datetime import timezone

    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text).isoformat()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?", text):
            moment = datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))
            if moment.tzinfo is not None:  # as `toolkit history` prints it: with its offset, turned into UTC
                moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
            return moment.isoformat(timespec="seconds")
    except ValueError:
        pass
    raise UsageError(f"{flag} {value} is not a date", f"Give an ISO date in UTC, e.g. {flag} 2026-12-01 or "
                                                      f"{flag} 2026-12-01T14:00")


def existing_history(path: Path | None):
    """The history to read: refused when it does not exist yet (reading must not create an empty one)."""
    from ..history import default_path, open_history

    where = path.expanduser() if path else default_path()
    if not where.is_file():
        raise UsageError(f"there is no benchmark history at '{where}' yet",
                         "Save a run first: toolkit bench MODEL --save" + ("" if path is None else
                                                                           f" --history {path}"))
    return open_history(where, readonly=True)


@click.command("history")
@click.argument("run", required=False)
@click.option("--model", metavar="NAME", help="Only this model (its file name, or the path as given).")
@click.option("--backend", metavar="NAME", help="Only this backend.")
@click.option("--target", metavar="NAME", help="Only this target (host for local runs).")
@click.option("--since", metavar="DATE", help="Only runs from this date or time on (UTC, e.g. 2026-12-01).")
@click.option("--until", metavar="DATE", help="Only runs up to this date (the whole day) or time (UTC).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many rows (records, newest run first).")
@history_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table",
              show_default=True, help="Output format; json and csv are for scripts.")
@traceback_option
def history(run, model, backend, target, since, until, limit, history_path, fmt) -> None:
    """List saved benchmark runs, newest first; with RUN (an id, latest, latest~1), show that run in full.

    Runs are saved by `toolkit bench --save`, with their records, environment and each model's sha256.

    \b
    Examples:
      toolkit history
      toolkit history --model cnn_int8.tflite --backend tflite --since 2026-12-01
      toolkit history latest --format json
    """
    from . import render

    since, until = _day_or_time(since, "--since"), _day_or_time(until, "--until")
    if since and until and since[:len(until)] > until:
        raise UsageError(f"--since {since} is after --until {until}", "Swap them")
    if run is not None and any(v is not None for v in (model, backend, target, since, until)):
        raise UsageError("RUN shows one run whole; the filters are for the list", "Drop RUN or the filters")
    with existing_history(history_path) as db:
        if run is not None:
            saved = db.run(run)
            title = f"Run {saved.run_id}, {saved.created}" + (f", {saved.label}" if saved.label else "")
            if fmt == "json":
                from ..atomic import json_text

                sys.stdout.write(json_text(saved.to_dict()))
            elif fmt == "csv":
                sys.stdout.write(render.to_csv(saved.records))
            elif fmt == "markdown":
                sys.stdout.write(render.to_markdown(saved.records, title=title))
            else:
                stdout_console().print(render.rich_table(saved.ok(), title=title))
                for r in saved.records:
                    if r.status != "ok":
                        click.echo(f"{r.status}: {r.error}")
                if saved.command:
                    click.echo(f"command: {saved.command}")
            return
        rows = db.rows(model=model, backend=backend, target=target, since=since, until=until, limit=limit)
    if fmt == "json":
        from ..atomic import json_text

        sys.stdout.write(json_text({"rows": [r.to_dict() for r in rows]}))
        return
    header = ["run", "date (UTC)", "label", "model", "backend", "batch", "p50", "p90", "status"]  # target in backend
    from ..units import fmt_us

    cells = [[str(r.run_id), r.created.replace("+00:00", ""), r.label or "", Path(r.model).name,
              r.backend + (f" @ {r.target}" if r.target else ""), str(r.batch or ""), fmt_us(r.p50_us),
              fmt_us(r.p90_us), r.status] for r in rows]
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["run", "created", "label", "model", "backend", "target", "batch", "p50_us", "p90_us",
                         "status"])
        writer.writerows([[r.run_id, r.created, r.label or "", r.model, r.backend, r.target or "", r.batch or "",
                           r.p50_us, r.p90_us, r.status] for r in rows])
        sys.stdout.write(buf.getvalue())
    elif fmt == "markdown":
        sys.stdout.write(render.markdown_table(header, cells))
    elif not rows:
        click.echo("No saved runs match." if any((model, backend, target, since, until)) else "No saved runs yet.",
                   err=True)
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="Saved runs", title_justify="left")
        for col in header:
            table.add_column(col, justify="right" if col in ("run", "batch", "p50", "p90") else "left")
        for row in cells:
            table.add_row(*(escape(c) for c in row))
        stdout_console().print(table)
