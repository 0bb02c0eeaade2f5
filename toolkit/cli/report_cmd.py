"""`toolkit report`: saved benchmark runs as one self-contained HTML file with plots, or as Markdown."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .history_cmd import existing_history, history_option
from .options import OutputFile, traceback_option


@click.command("report")
@click.argument("refs", nargs=-1, required=True, metavar="RUN...")
@history_option
@click.option("--output", type=OutputFile("report.html"), help="The file to write: needed for html; md prints without it.")
@click.option("--format", "fmt", type=click.Choice(["html", "md", "markdown"]), default=None,
              help="html: one self-contained file with plots (the default; .md output files get md); md: a "
                   "Markdown summary for pull requests, no images.")
@traceback_option
def report(refs: tuple[str, ...], history_path: Path | None, output: Path | None, fmt: str | None) -> None:
    """Report saved benchmark runs (toolkit bench --save): RUN is a run id from `toolkit history`, latest, or
    latest~N (the Nth before the latest). Several runs go in one report.

    The HTML report is one file with no script and nothing to download: the runs (date, host, CPU,
    toolkit version), a table of every measured record (latency percentiles, robust spread, throughput,
    GFLOP/s, stability), and three plots: the latency distribution of each record, accuracy against
    latency with the Pareto front (file size against latency when nothing was evaluated), and
    throughput against batch size when a run swept batches.

    \b
    Examples:
      toolkit report latest --output report.html
      toolkit report latest~1 latest --output report.html
      toolkit report 12 --format md >> pr-comment.md
    """
    from ..errors import UsageError
    from ..report import load_runs, render_html, render_markdown

    fmt = "md" if fmt == "markdown" else fmt
    if fmt is None:
        fmt = "md" if output is not None and output.suffix.lower() in (".md", ".markdown") else "html"
    if fmt == "html" and output is None:
        raise UsageError("an HTML report is a file, and no --output was given",
                         "Add --output report.html, or use --format md to print Markdown")
    with existing_history(history_path) as history:
        runs = load_runs(history, refs)
    text = render_html(runs) if fmt == "html" else render_markdown(runs)
    if output is None:
        sys.stdout.write(text)
        return
    from ..atomic import write_text

    write_text(output, text)
    records = sum(len(run.ok()) for run in runs)
    click.echo(f"Wrote {output} ({fmt}: {records} record(s) from run(s) "
               f"{', '.join(str(run.run_id) for run in runs)}).", err=True)
