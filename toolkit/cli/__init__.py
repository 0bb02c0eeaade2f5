"""The `toolkit` command line. Subcommands load lazily, so `toolkit --help` imports no ML framework.

This is the one place where domain errors (ToolkitError) become CLI errors: one line, an exit code
(2 bad input, 1 failed check or crash), and a traceback only with --traceback or TOOLKIT_DEBUG=1.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from typing import Any

import click

from ..errors import ToolkitError, debug_enabled, first_line, one_line_text

BUILTIN_COMMANDS = {
    "quickstart": ("toolkit.cli.quickstart_cmd", "quickstart", "Train, convert, quantize, verify and benchmark the CNN, offline."),
    "train": ("toolkit.cli.train_cmd", "train", "Train a model family on a dataset."),
    "convert": ("toolkit.cli.convert_cmd", "convert", "Convert a model to another format, checked against the source."),
    "quantize": ("toolkit.cli.quantize_cmd", "quantize", "Quantize a model (int8, ...), calibrated on real data."),
    "bench": ("toolkit.cli.bench_cmd", "bench", "Benchmark models on one or more backends; outputs checked."),
    "history": ("toolkit.cli.history_cmd", "history", "List saved benchmark runs (toolkit bench --save)."),
    "compare": ("toolkit.cli.compare_cmd", "compare", "Compare two saved runs: a verdict per pair; exit 1 on a regression."),
    "report": ("toolkit.cli.report_cmd", "report", "An HTML report with plots (or Markdown) of saved runs."),
    "inspect": ("toolkit.cli.inspect_cmd", "inspect", "Show a model's tensors, operators, weights, MACs and manifest."),
    "diff": ("toolkit.cli.diff_cmd", "diff", "Per-layer error of B against A (fp32 vs int8, or two backends), worst first."),
    "targets": ("toolkit.cli.targets_cmd", "targets", "Device profiles, and checks of a model against them."),
    "explain": ("toolkit.cli.explain_cmd", "explain", "Saliency heat maps of an image classifier on real samples (PNG, HTML)."),
    "plugins": ("toolkit.cli.plugins_cmd", "plugins", "List installed plugins and what they register."),
}


class CliError(click.ClickException):
    """A ToolkitError on its way out: one line on stderr and the error's exit code."""

    def __init__(self, error: ToolkitError):
        super().__init__(error.one_line())
        self.exit_code = error.exit_code


def report_traceback(error: BaseException) -> None:
    traceback.print_exception(error, file=sys.stderr)
    child_tb = getattr(error, "child_traceback", None)
    if child_tb:
        click.echo("--- in the child process ---\n" + child_tb, err=True)


class LazyGroup(click.Group):
    """Built-in commands import their module only when run; plugins add theirs through register_commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(BUILTIN_COMMANDS) + [n for n in self._plugin_commands() if n not in BUILTIN_COMMANDS]

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[Any, Any, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            import difflib

            name = args[0] if args else ""
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.6)
            if close and not name.startswith("-"):
                e.message = f"No such command '{name}'. Did you mean '{close[0]}'?"
            raise

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BUILTIN_COMMANDS:
            module, attr, _ = BUILTIN_COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        return self._plugin_commands().get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help without importing each command's module.
        rows = [(name, help_text) for name, (_, _, help_text) in BUILTIN_COMMANDS.items()]
        rows += [(n, c.get_short_help_str(60)) for n, c in self._plugin_commands().items() if n not in BUILTIN_COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    @staticmethod
    def _plugin_commands() -> dict[str, click.Command]:
        from .. import plugins

        return {c.name: c for c in plugins.registries().commands}

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ToolkitError as e:
            error = e
        except OSError as e:  # a path that cannot be read or written: the user's to fix
            error = ToolkitError(f"{e.strerror or first_line(e)}: '{e.filename}'" if e.filename else first_line(e),
                                 "Check the path and its permissions")
            error.__cause__ = e
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug: still one line, and the stack on request
            error = ToolkitError(f"internal error: {type(e).__name__}: {first_line(e)}",
                                 "Run again with --traceback and report it")
            error.exit_code = 1
            error.__cause__ = e
        if debug_enabled():
            report_traceback(error.__cause__ or error)
        raise CliError(error) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="edge-toolkit", prog_name="toolkit")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show the full traceback of an error.")
def cli(show_traceback: bool) -> None:
    """edge toolkit: from training to a quantized, verified, benchmarked model on a real device.

    \b
    Start here (offline, a few minutes on 2 cores):
      toolkit quickstart --output quickstart-out
    Then bring your own model:
      toolkit bench model.tflite model.onnx --format json
    """
    if show_traceback:
        # An environment variable, so that child processes and every module see the same switch.
        os.environ["TOOLKIT_DEBUG"] = "1"


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: stop now (children are killed on the way out), exit 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.exit_code = 128 + signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def click_error_line(error: click.ClickException) -> str:
    """Click's own errors (usage, bad values) as one line, like every other error: what is wrong, then where the
    fix is. Click prints a usage line, a "Try --help" line and a blank line first; its suggestions stay."""
    if isinstance(error, CliError):  # a ToolkitError, already one line
        return error.message
    text = one_line_text(error.format_message().strip() or type(error).__name__)
    # "No such option '--run'. (Did you mean one of: '--runner', '--runs'?)": the suggestion without brackets.
    text = re.sub(r"\s*\((Did you mean [^()]*\?)\)$", r" \1", text)
    if isinstance(error, click.UsageError):
        command = error.ctx.command_path if error.ctx is not None else "toolkit"
        hint = f"See '{one_line_text(command)} --help'."
        return f"{text} {hint}" if text.endswith("?") else f"{text.rstrip('.')}. {hint}"
    return text if text.endswith((".", "?", "!")) else f"{text}."


def main(argv: list[str] | None = None) -> None:
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    try:
        # Not standalone: click would turn Ctrl-C into "Aborted!" and exit 1.
        rv = cli.main(args=argv, prog_name="toolkit", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.NoArgsIsHelpError as e:  # `toolkit` alone: the help, not an error line
        e.show()
        code = e.exit_code
    except click.ClickException as e:
        click.echo(f"Error: {click_error_line(e)}", err=True)
        code = e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as e:
        cause = e if isinstance(e, KeyboardInterrupt) else e.__context__
        click.echo("Interrupted.", err=True)
        code = getattr(cause, "exit_code", 130)
    # The work is done and reported: a signal now must not turn the exit into a death by signal mid-shutdown.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)
