"""Parse a model file once per version of it: a command reads a file's specs and then describes it (or a backend
reads both), and a large graph should not be parsed twice for that."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def parse_once(parse: Callable[[Path], T]) -> Callable[[str | os.PathLike], T]:
    """`parse(path)`, remembered for the last file (by path, modification time and size). Callers must not
    modify what it returns."""

    @functools.lru_cache(maxsize=1)
    def cached(path: str, mtime_ns: int, size: int) -> T:
        return parse(Path(path))

    @functools.wraps(parse)
    def wrapper(path: str | os.PathLike) -> T:
        try:
            st = os.stat(path)
        except OSError:  # let the parser say what is wrong with the path, in its words
            return parse(Path(path))
        return cached(os.fspath(path), st.st_mtime_ns, st.st_size)

    return wrapper
