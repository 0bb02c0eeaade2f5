"""Recognising model files through the registered formats: the core knows no format by name.

A file is recognised by its first bytes (each format's sniff), with its suffix deciding between formats whose
sniff accepts the same bytes and naming the format a damaged file was meant to be.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import plugins
from .errors import ModelFileError, UsageError
from .interfaces import ModelFormat
from .specs import TensorSpec


def all_formats() -> list[ModelFormat]:
    return list(plugins.registries().formats)


def get(name: str) -> ModelFormat:
    return plugins.registries().formats.get(name)


def suffix_of(name: str) -> str:
    """The suffix the toolkit gives files it writes in format `name`."""
    return get(name).suffixes[0]


def known_suffixes() -> str:
    return ", ".join(s for f in all_formats() for s in f.suffixes) or "none (no format plugin is loaded)"


def detect(path: str | os.PathLike) -> str:
    """The name of `path`'s format, from its bytes. Raises ModelFileError, with the fix, for anything else."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file '{p}' does not exist", "Check the path")
    formats = all_formats()
    dir_formats = [f for f in formats if f.is_directory]
    if p.is_dir():
        for fmt in dir_formats:
            if fmt.sniff(b"", p):
                return fmt.name
        raise ModelFileError(f"'{p}' is a folder, not a model file", f"Pass a model file ({known_suffixes()})")
    if not p.is_file():  # a FIFO or a device would block or never end: refused before it is opened
        raise ModelFileError(f"'{p}' is not a regular file (a pipe, socket or device)", "Pass a model file")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(max([fmt.head_size for fmt in formats] or [16]))
    if size == 0:
        raise ModelFileError(f"'{p}' is empty (0 bytes)", "Re-export the model, or check that the download finished")
    by_suffix = [f for f in formats if p.suffix.lower() in f.suffixes]
    matches = [f for f in formats if f.sniff(head, p)]
    for fmt in by_suffix:
        if fmt in matches:
            return fmt.name
    if by_suffix:
        fmt = by_suffix[0]
        raise ModelFileError(f"'{p}' is not a valid {fmt.name} file (it does not start the way {fmt.name} files do)",
                             "Re-export the model, or check that the download finished")
    if len(matches) == 1:
        return matches[0].name
    if matches:
        names = ", ".join(m.name for m in matches)
        raise ModelFileError(f"'{p}' could be any of {names}", "Give it the suffix of its format")
    raise ModelFileError(f"'{p}' is not a recognised model file", f"Known formats: {known_suffixes()}")


def read_specs(path: str | os.PathLike, format_name: str | None = None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs from the file itself, through its format's reader."""
    fmt = get(format_name or detect(path))
    av = fmt.available()
    if not av.ok:
        from .errors import MissingRuntimeError

        raise MissingRuntimeError(f"the reader of {fmt.name} files", av.extra, av.reason)
    return fmt.read_specs(Path(path))


def check_output_name(path: str | os.PathLike, format_name: str) -> Path:
    """`path` if its suffix fits `format_name`, else a UsageError naming the suffix to use."""
    p = Path(path)
    fmt = get(format_name)
    if p.suffix.lower() not in fmt.suffixes:
        raise UsageError(f"--output '{p}' does not end in {' or '.join(fmt.suffixes)}",
                         f"Name it like model{fmt.suffixes[0]}")
    return p
