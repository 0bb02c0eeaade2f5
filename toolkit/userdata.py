"""The user's own data as a dataset: `--dataset path/to/data.csv` or `data.npz` wherever a dataset name goes.

CSV: one row per sample with a header; the label is the column named `label` (else the last column). One text
column and the label make a text dataset (token ids, with a vocabulary fitted on the training rows); otherwise
every other column is a feature: numbers as they are, anything else as category codes (the mlp one-hots them in
its graph). A label of words, or of at most 20 distinct integers, is a class; other numbers make a regression.
NPZ: arrays `x` and `y`, or `x_train`, `y_train`, `x_test`, `y_test`, or, for a model with several inputs, one
array per input named after it and `y`; integer `y` is a class id.
Without a test split the rows are split 80/20 by a fixed shuffle. Needs numpy only (pandas is not required).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .interfaces import Availability, Dataset
from .text import WordTokenizer

SUFFIXES = (".csv", ".npz")
MAX_CLASSES = 20
TEXT_VOCABULARY, TEXT_LENGTH = 8000, 64
# Written in place of a number, these mean "no value": a column of numbers with one of them is refused. In a
# column of words they are a category like any other ("none" is one of German credit's).
MISSING = ("na", "n/a", "null", "none", "?", "-")


def is_data_file(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


@lru_cache(maxsize=8)
def file_dataset(name: str) -> Dataset:
    """The dataset in the file `name` (a path), read and checked once per process."""
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"data file '{name}' does not exist", "Check the path, or pass a dataset name")
    return (NpzDataset if path.suffix.lower() == ".npz" else CsvDataset)(path)


def _split(n: int, split: str) -> np.ndarray:
    order = np.random.default_rng(0).permutation(n)
    cut = int(n * 0.8)
    return order[:cut] if split == "train" else order[cut:]


class FileDataset(Dataset):
    """Data the user brought in a file; its name is the file's absolute path, so a manifest can find it again."""

    def __init__(self, path: Path):
        self.path = path
        self.name = str(path)  # type: ignore[misc]
        self.description = f"the user's data in {path.name}"  # type: ignore[misc]
        self.suggested_epochs = 10  # type: ignore[misc]
        self._splits: dict[str, tuple[Any, np.ndarray]] = {}

    def available(self) -> Availability:
        return Availability(self.path.is_file(), None if self.path.is_file() else f"{self.path} is gone")

    def load(self, split: str) -> tuple[Any, np.ndarray]:
        if split not in ("train", "test"):
            raise UsageError(f"dataset {self.path.name} has no split '{split}'", "Use train or test")
        return self._splits[split]

    def _set_task(self, y: np.ndarray) -> np.ndarray:
        """Class ids for a classification label, float32 rows for a regression target."""
        if y.dtype.kind in "OUS" or (y.dtype.kind in "iub" and len(np.unique(y)) <= MAX_CLASSES):
            classes, ids = np.unique(y.astype(str) if y.dtype.kind in "OUS" else y, return_inverse=True)
            self.task, self.num_classes = "classification", len(classes)  # type: ignore[misc]
            self.class_names = tuple(str(c) for c in classes)  # type: ignore[attr-defined]
            return ids.astype(np.int64)
        self.task, self.num_classes = "regression", 0  # type: ignore[misc]
        return y.astype(np.float32).reshape(len(y), -1)


class NpzDataset(FileDataset):
    def __init__(self, path: Path):
        super().__init__(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read '{path.name}' as .npz: {e}", "Save it with numpy.savez") from None
        if {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
            x = np.concatenate([arrays["x_train"], arrays["x_test"]])
            y_all = self._set_task(np.concatenate([arrays["y_train"], arrays["y_test"]]))
            n = len(arrays["x_train"])
            idx = {"train": np.arange(n), "test": np.arange(n, len(x))}
        elif {"x", "y"} <= set(arrays):
            x, y_all = arrays["x"], self._set_task(arrays["y"])
            idx = {s: _split(len(x), s) for s in ("train", "test")}
        elif "y" in arrays and len(arrays) > 1:  # several inputs, each named after the model's input
            inputs = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items() if k != "y"}
            y_all = self._set_task(arrays["y"])
            if any(len(v) != len(y_all) for v in inputs.values()):
                raise UsageError(f"the arrays in '{path.name}' hold different numbers of samples",
                                 "Save as many samples in each")
            for name, v in inputs.items():
                if v.dtype.kind == "f" and not np.isfinite(v).all():
                    raise UsageError(f"'{path.name}' has values in {name} that are not finite numbers",
                                     "Fill in or drop those samples")
            idx = {s: _split(len(y_all), s) for s in ("train", "test")}
            self._splits = {s: ({k: v[i] for k, v in inputs.items()}, y_all[i]) for s, i in idx.items()}
            return
        else:
            raise UsageError(f"'{path.name}' holds {', '.join(sorted(arrays)) or 'nothing'}, which is none of the "
                             "layouts a dataset file may have",
                             "Save with numpy.savez: arrays x and y; or all four of x_train, y_train, x_test and "
                             "y_test; or one array per input, named after it, and y")
        if len(x) != len(y_all):
            raise UsageError(f"'{path.name}' has {len(x)} samples in x and {len(y_all)} in y", "Save as many of each")
        x = x.astype(np.float32) if x.dtype.kind == "f" else x
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise UsageError(f"'{path.name}' has {int((~np.isfinite(x)).sum())} values in x that are not finite "
                             "numbers (NaN or infinity)", "Fill in or drop those samples")
        self._splits = {s: (x[i], y_all[i]) for s, i in idx.items()}


class CsvDataset(FileDataset):
    def __init__(self, path: Path):
        super().__init__(path)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise UsageError(f"cannot read '{path.name}' as CSV: {e}", "Save it as UTF-8 CSV with a header") from None
        if len(rows) < 11 or len(rows[0]) < 2:
            raise UsageError(f"'{path.name}' needs a header and at least 10 rows of 2 or more columns",
                             "One row per sample; a column named label holds the answer")
        header, body = rows[0], [r for r in rows[1:] if r]
        if any(len(r) != len(header) for r in body):
            bad = next(i for i, r in enumerate(body, 2) if len(r) != len(header))
            raise UsageError(f"'{path.name}' line {bad} has a different number of columns than its header",
                             "Fix the file")
        for line, row in enumerate(body, 2):
            for name, value in zip(header, row):
                if value.strip().lower() in ("", "nan"):
                    raise UsageError(f"'{path.name}' line {line}, column {name} has no value ({value!r})",
                                     "Fill in or drop the rows with missing values")
        label = header.index("label") if "label" in header else len(header) - 1
        columns = {name: np.array([r[i] for r in body]) for i, name in enumerate(header)}
        y = self._set_task(_typed(columns.pop(header[label])))
        typed = {name: _typed(col) for name, col in columns.items()}
        for name, col in typed.items():
            _check_numbers(path, name, col)
        idx = {s: _split(len(y), s) for s in ("train", "test")}
        if len(typed) == 1 and next(iter(typed.values())).dtype.kind in "OUS":  # one text column
            texts = next(iter(typed.values())).astype(str)
            tokenizer = WordTokenizer.fit(texts[idx["train"]], TEXT_VOCABULARY, TEXT_LENGTH)
            self.tokenizer = lambda: tokenizer
            x: np.ndarray = tokenizer.encode(list(texts))
        else:
            specs, cols = [], []
            for name, col in typed.items():
                if col.dtype.kind in "OUS":
                    cats = sorted(set(col.astype(str)))
                    codes = {c: i for i, c in enumerate(cats)}
                    cols.append(np.array([codes[v] for v in col.astype(str)], np.float32))
                    specs.append({"name": name, "categories": cats})
                else:
                    cols.append(col.astype(np.float32))
                    specs.append({"name": name})
            self.columns = lambda: specs
            self.categorical = lambda: {i: len(s["categories"]) for i, s in enumerate(specs) if "categories" in s}
            x = np.stack(cols, axis=1)
        self._splits = {s: (x[i], y[i]) for s, i in idx.items()}


def _check_numbers(path: Path, name: str, col: np.ndarray) -> None:
    """A column of numbers with "NA" or "?" in it (read as words), or with an infinity, cannot train a model."""
    if col.dtype.kind == "f" and not np.isfinite(col).all():
        line = int(np.flatnonzero(~np.isfinite(col))[0]) + 2
        raise UsageError(f"'{path.name}' line {line}, column {name} is not a finite number ({col[line - 2]})",
                         "Fill in or drop that row")
    if col.dtype.kind in "OUS":
        gaps = [i for i, v in enumerate(col) if str(v).strip().lower() in MISSING]
        if gaps and len(gaps) < len(col) and _typed(np.delete(col, gaps)).dtype.kind in "iuf":
            raise UsageError(f"'{path.name}' line {gaps[0] + 2}, column {name} has no value ({str(col[gaps[0]])!r})",
                             "Fill in or drop the rows with missing values")


def _typed(col: np.ndarray) -> np.ndarray:
    """A CSV column as integers or floats when every value is one, else as text."""
    for kind in (np.int64, np.float64):
        try:
            return col.astype(kind)
        except ValueError:
            continue
    return col.astype(str)
