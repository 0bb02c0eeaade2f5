"""Saliency maths for `toolkit explain`, plain numpy with the model given as a function: patch positions,
occluded batches, probability drops turned into a map, and the Pearson correlation of two maps."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

CHUNK = 64  # occluded images per call on a dynamic batch: bounded memory for large images
# How far dequantized int8 probabilities may stray from a distribution (10 classes, half a step of 1/256 each).
PROBABILITY_TOLERANCE = 0.05


def image_layout(sample_shape: Sequence[int]) -> str | None:
    """"NHWC" or "NCHW" for one sample's shape (H, W, C) or (C, H, W), with 1, 3 or 4 channels; None otherwise."""
    if len(sample_shape) != 3:
        return None
    a, b, c = (int(d) for d in sample_shape)
    if c in (1, 3, 4) and min(a, b) >= 4:
        return "NHWC"
    if a in (1, 3, 4) and min(b, c) >= 4:
        return "NCHW"
    return None


def spatial(images: np.ndarray, layout: str) -> np.ndarray:
    """Images (N, ...) as (N, H, W, C), whatever their layout (a view, no copy)."""
    return images if layout == "NHWC" else np.moveaxis(images, 1, -1)


def default_patch(height: int, width: int) -> tuple[int, int]:
    """(patch, stride) for an image: about a seventh of its smaller side (2 pixels at least), half-overlapping.
    8x8 digits: 2, stride 1 (49 positions); 28x28: 4, stride 2 (169); 224x224: 32, stride 16 (169)."""
    side = min(height, width)
    patch = max(2, round(side / 7)) if side >= 4 else 1
    return patch, max(1, patch // 2)


def positions(size: int, patch: int, stride: int) -> list[int]:
    """Top (or left) edges of the patches along one side; the last patch always reaches the far edge."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def windows(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    return [(top, left) for top in positions(height, patch, stride) for left in positions(width, patch, stride)]


def occluded(image: np.ndarray, spots: Sequence[tuple[int, int]], patch: int, fill: np.ndarray) -> np.ndarray:
    """Copies of `image` (H, W, C), one per spot, each with a patch x patch square filled with `fill` (per channel)."""
    batch = np.repeat(image[None], len(spots), axis=0)
    for i, (top, left) in enumerate(spots):
        batch[i, top:top + patch, left:left + patch, :] = fill
    return batch


def occlusion_map(image: np.ndarray, score: Callable[[np.ndarray], np.ndarray], patch: int, stride: int,
                  fill: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """How much hiding each pixel lowers the score (H, W): `score` maps images (B, H, W, C) to the explained class's
    score (B,). A patch's drop goes to every pixel it hides, averaged over the patches that hide the pixel
    (Zeiler and Fergus' occlusion, aggregated as Captum does). Positive: evidence for the class."""
    height, width = image.shape[:2]
    base = float(score(image[None])[0])
    spots = windows(height, width, patch, stride)
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.float64)
    for lo in range(0, len(spots), chunk):
        part = spots[lo:lo + chunk]
        drops = base - np.asarray(score(occluded(image, part, patch, fill)), np.float64)
        for (top, left), drop in zip(part, drops):
            total[top:top + patch, left:left + patch] += drop
            count[top:top + patch, left:left + patch] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def is_probabilities(outputs: np.ndarray) -> bool:
    """Whether each row is already a distribution (in [0, 1], summing to 1 within dequantization's error)."""
    out = np.asarray(outputs, np.float64)
    return bool(out.min() >= -1e-3 and out.max() <= 1 + 1e-3
                and np.all(np.abs(out.sum(axis=-1) - 1.0) <= PROBABILITY_TOLERANCE))


def probabilities(outputs: np.ndarray, logits: bool) -> np.ndarray:
    """Rows of class probabilities: the softmax of logits, else the outputs as they are."""
    out = np.asarray(outputs, np.float64)
    if not logits:
        return out
    z = np.exp(out - out.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's correlation of two maps over their pixels; None when one is flat (no correlation is defined)."""
    x = np.asarray(a, np.float64).ravel() - np.mean(a)
    y = np.asarray(b, np.float64).ravel() - np.mean(b)
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / denom) if denom > 0 else None


def fill_values(train: np.ndarray, layout: str, how: str) -> np.ndarray:
    """What an occluding patch is filled with, per channel: the training images' mean, or zero."""
    channels = spatial(train[:1], layout).shape[-1]
    if how == "zero":
        return np.zeros(channels, np.float32)
    return spatial(np.asarray(train, np.float32), layout).reshape(-1, channels).mean(axis=0).astype(np.float32)
