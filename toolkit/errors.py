"""Domain errors. Each says what is wrong and how to fix it; the CLI turns them into one line and an exit code."""

from __future__ import annotations

import difflib
import os
from typing import Iterable

# An error is read on one line: longer text is cut (the full text stays in `full_message`, for --traceback).
MAX_MESSAGE_CHARS = 400


def debug_enabled() -> bool:
    """--traceback or TOOLKIT_DEBUG=1: show stacks and the output of child processes."""
    return os.environ.get("TOOLKIT_DEBUG", "") not in ("", "0")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none: enough for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` as one bounded line. Messages quote names and text from model files and runtimes, which may hold
    newlines, terminal escapes or kilobytes: control characters are shown escaped (a name 'x\\ny' stays
    recognisable), and an overlong text is cut with "..." at `limit` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ToolkitError(Exception):
    """Base of every error the toolkit reports to a user. `hint` says how to fix it. Both are kept to one bounded
    line (one_line_text); `full_message` is the message as it was given."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        message = str(message)
        super().__init__(message)
        self.full_message = message
        self.message = one_line_text(message)
        self.hint = one_line_text(str(hint)) if hint is not None else None

    def one_line(self) -> str:
        """The line the CLI prints. Callers add context to `message` after construction (a file name, a step), so
        it is escaped and bounded again here: a name with a newline cannot split the line."""
        text = one_line_text(str(self.message)).rstrip(".")
        return f"{text}. {one_line_text(str(self.hint))}" if self.hint else f"{text}."


class UsageError(ToolkitError):
    """Bad input from the user: a wrong name, shape, flag combination or file. Exit 2."""


class UnknownNameError(UsageError):
    """A name that is not registered; suggests the nearest ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        if close:
            hint = f"Did you mean '{close[0]}'? Known: {', '.join(known)}"
        else:
            hint = f"Known: {', '.join(known)}" if known else "None is registered: check `toolkit plugins`"
        super().__init__(f"unknown {kind} '{name}'", hint)
        self.name = name


class ModelFileError(UsageError):
    """A model file that is missing, corrupt or of an unrecognised format."""


class MissingRuntimeError(UsageError):
    """A runtime or framework that is not installed; the hint names the pip extra."""

    def __init__(self, what: str, extra: str | None, reason: str | None = None):
        msg = f"{what} is not available: {reason}" if reason else f"{what} is not installed"
        hint = (f"Install it with: pip install 'edge-toolkit[{extra}]'" if extra
                else "Install the runtime its plugin needs (see the plugin's README)")
        super().__init__(msg, hint)
        self.extra = extra


class DataUnavailableError(UsageError):
    """A dataset that cannot be loaded here (offline, missing package)."""


class ConversionError(ToolkitError):
    """A converter or quantizer failed on a valid model (its own limits, an unsupported layer). Exit 1."""

    exit_code = 1


class CheckFailedError(ToolkitError):
    """An artifact failed a check against its source (parity, accuracy). Exit 1."""

    exit_code = 1


class ChildCrashedError(ToolkitError):
    """Native code died in a child process (a signal, a timeout, out of memory). Exit 1."""

    exit_code = 1
