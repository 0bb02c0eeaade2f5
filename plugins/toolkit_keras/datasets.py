"""Datasets. Images: Fashion-MNIST (from Debian's dataset-fashion-mnist) and scikit-learn's digits work offline;
CIFAR-10 downloads through keras.datasets for users who are online. Tabular: scikit-learn's breast-cancer
diagnosis data, offline."""

from __future__ import annotations

import gzip
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from toolkit.api import Availability, DataUnavailableError, Dataset, UsageError

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


class SklearnDataset(Dataset):
    """A dataset that ships with scikit-learn, split 80/20 by a fixed shuffle."""

    def available(self) -> Availability:
        if importlib.util.find_spec("sklearn") is None:
            return Availability(False, "scikit-learn is not installed", "keras")
        return Availability(True)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sample as the model takes it, and its label."""
        raise NotImplementedError

    @lru_cache(maxsize=2)
    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        _check_split(self.name, split)
        self.require_available()
        x, y = self.arrays()
        idx = _fixed_split(len(x), split)
        return x[idx], y[idx]


class Digits(SklearnDataset):
    name = "digits"
    description = "scikit-learn's handwritten digits: 1,797 grey 8x8 images of 0-9 (80/20 split, fixed)"
    num_classes = 10
    suggested_epochs = 12  # 1,437 training images: two epochs leave the CNN at about 77%

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return (bunch.images.astype(np.float32) / 16.0)[..., None], bunch.target.astype(np.int64)


class BreastCancer(SklearnDataset):
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
