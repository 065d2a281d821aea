"""Segmentation scored per image and class: metrics and the image bootstrap from pixel counts.

A segmentation trial is kept as per-image, per-class pixel counts ``(images, classes, 4)`` in
the order ``tp, fp, fn, tn`` (smp's ``get_stats`` layout, stacked). Column 0 is the background;
the foreground classes are columns ``1..C-1``. Everything here derives from those counts, so a
resample of images is a weighting of rows, never of pixels.

The empty-mask rule (MONAI ``DiceMetric(ignore_empty=True)``): an image whose ground truth
holds no pixel of a class (``tp + fn == 0``) has Dice and IoU NaN for that class, whatever was
predicted, and is left out of that class's per-image mean. A class absent from every image has
a NaN mean and is left out of the mean over classes. Pooled ("micro") figures sum the counts
over images first, so false positives on empty images count there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gammatune.bootstrap import PairedDifference

TP, FP, FN, TN = range(4)


@dataclass(frozen=True, slots=True)
class SegmentationScores:
    """Per-image counts ``(n, C, 4)`` of both splits of one trial, ``tp, fp, fn, tn``;
    ``test`` None where the trainer returned none."""

    val: np.ndarray
    test: np.ndarray | None


@dataclass(frozen=True, slots=True)
class SegmentationEvaluation:
    """What one split's counts say; JSON-safe. ``dice`` (the default objective) is the mean
    over foreground classes of the per-image mean Dice; ``*_micro`` pool counts over images;
    ``precision``/``recall``/``f1`` pool the foreground classes' counts;
    ``confusion[c]`` is class c's pooled ``[[tn, fp], [fn, tp]]``."""

    dice: float
    dice_micro: float
    iou: float
    iou_micro: float
    precision: float
    recall: float
    f1: float
    dice_per_class: list[float]
    dice_micro_per_class: list[float]
    iou_per_class: list[float]
    images_per_class: list[int]
    confusion: list[list[list[int]]]


def dice_per_image(counts: np.ndarray) -> np.ndarray:
    """``(n, C)`` Dice ``2tp / (2tp + fp + fn)``; NaN where the image's mask lacks the class.

    Example:
        >>> c = np.array([[[0, 0, 0, 9], [2, 1, 1, 5]], [[9, 0, 0, 0], [0, 3, 0, 6]]])
        >>> dice_per_image(c).round(3).tolist()
        [[nan, 0.667], [1.0, nan]]
    """
    tp, fp, fn = (counts[..., k].astype(np.float64) for k in (TP, FP, FN))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)


def iou_per_image(counts: np.ndarray) -> np.ndarray:
    """``(n, C)`` IoU ``tp / (tp + fp + fn)``; NaN where the image's mask lacks the class."""
    tp, fp, fn = (counts[..., k].astype(np.float64) for k in (TP, FP, FN))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp + fn > 0, tp / (tp + fp + fn), np.nan)


def evaluate_segmentation(counts: np.ndarray) -> SegmentationEvaluation:
    """Evaluate per-image counts ``(n, C, 4)`` (column 0 background).

    Example:
        >>> c = np.array([[[0, 0, 0, 9], [2, 1, 1, 5]], [[9, 0, 0, 0], [0, 3, 0, 6]]])
        >>> e = evaluate_segmentation(c)
        >>> round(e.dice, 4), round(e.dice_micro, 4), e.images_per_class
        (0.6667, 0.4444, [1, 1])
    """
    counts = _checked(counts)
    per_image, iou = dice_per_image(counts), iou_per_image(counts)
    pooled = counts.sum(axis=0)  # (C, 4)
    fore = pooled[1:].sum(axis=0)
    dice_mean, iou_mean = _class_means(per_image), _class_means(iou)
    dice_micro, iou_micro = dice_per_image(pooled), iou_per_image(pooled)
    precision = _ratio(fore[TP], fore[TP] + fore[FP])
    recall = _ratio(fore[TP], fore[TP] + fore[FN])
    return SegmentationEvaluation(
        dice=_mean(dice_mean[1:]),
        dice_micro=_mean(dice_micro[1:]),
        iou=_mean(iou_mean[1:]),
        iou_micro=_mean(iou_micro[1:]),
        precision=precision,
        recall=recall,
        f1=_ratio(2 * fore[TP], 2 * fore[TP] + fore[FP] + fore[FN]),
        dice_per_class=[float(v) for v in dice_mean],
        dice_micro_per_class=[float(v) for v in dice_micro],
        iou_per_class=[float(v) for v in iou_mean],
        images_per_class=[int(v) for v in (counts[..., TP] + counts[..., FN] > 0).sum(axis=0)],
        confusion=[[[int(c[TN]), int(c[FP])], [int(c[FN]), int(c[TP])]] for c in pooled],
    )


def image_strata(counts: np.ndarray) -> np.ndarray:
    """``(n,)`` stratum of each image: which foreground classes its mask holds (a bit set)."""
    holds = counts[:, 1:, TP] + counts[:, 1:, FN] > 0  # (n, C-1)
    return (holds * (1 << np.arange(holds.shape[1]))).sum(axis=1)


def image_weights(
    strata: np.ndarray,
    n_resamples: int,
    *,
    groups: np.ndarray | None = None,
    seed: int | Sequence[int] = 0,
) -> np.ndarray:
    """``(n_resamples, n)`` count weights of images: each stratum's images (or, with
    ``groups``, each stratum's groups, an image's weight its group's) drawn with replacement,
    keeping the stratum's count. A group's stratum is the first of its images'."""
    rng = np.random.default_rng(list(np.atleast_1d(np.asarray(seed)).astype(int)))
    units = np.arange(len(strata)) if groups is None else np.unique(groups, return_inverse=True)[1]
    first = np.unique(units, return_index=True)[1]
    unit_strata = np.asarray(strata)[first]
    drawn = np.zeros((n_resamples, len(first)))
    for stratum in np.unique(unit_strata):
        idx = np.flatnonzero(unit_strata == stratum)
        drawn[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), n_resamples)
    return drawn[:, units]


METRICS = ("dice", "dice_micro", "iou", "iou_micro", "f1", "precision", "recall")


def weighted_dice(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(B,)`` mean foreground per-image Dice (:func:`evaluate_segmentation`'s ``dice``) of
    ``counts`` ``(n, C, 4)`` under image weights ``(B, n)``: an image drawn k times counts k
    times in each class's mean; empty-mask images stay out."""
    return weighted_metric(counts, weights, "dice")


def weighted_metric(counts: np.ndarray, weights: np.ndarray, metric: str) -> np.ndarray:
    """``(B,)`` one of :data:`METRICS` (as :func:`evaluate_segmentation` computes it) under
    image weights ``(B, n)``: per-image means weight each image's value, pooled figures sum
    weighted counts."""
    if metric in ("dice", "iou"):
        per_image = (dice_per_image if metric == "dice" else iou_per_image)(counts)[:, 1:]
        valid = ~np.isnan(per_image)
        sums, seen = weights @ np.where(valid, per_image, 0.0), weights @ valid  # (B, C-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(seen > 0, sums / np.maximum(seen, 1e-300), np.nan)
        return _row_means(means)
    pooled = np.einsum("bn,nck->bck", weights, counts.astype(np.float64))  # (B, C, 4)
    if metric in ("dice_micro", "iou_micro"):
        per_class = (dice_per_image if metric == "dice_micro" else iou_per_image)(pooled)
        return _row_means(per_class[:, 1:])
    if metric not in METRICS:
        raise ValueError(f"segmentation metric must be one of {METRICS}; got {metric!r}")
    tp, fp, fn = (pooled[:, 1:, k].sum(axis=1) for k in (TP, FP, FN))
    numerator, denominator = {
        "f1": (2 * tp, 2 * tp + fp + fn), "precision": (tp, tp + fp), "recall": (tp, tp + fn),
    }[metric]  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _row_means(values: np.ndarray) -> np.ndarray:
    """Each row's mean over its non-NaN columns (0 where none, as the empty-mask rule drops a
    class no image holds)."""
    present = ~np.isnan(values)
    return np.where(present, values, 0.0).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def paired_image_bootstrap(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 2000,
    seed: int | Sequence[int] = 0,
) -> PairedDifference:
    """Compare two segmenters on the same images by resampling images (stratified on the
    classes each mask holds; whole groups when ``groups`` is given), recomputing the mean
    foreground Dice of each from the resampled per-image counts.

    Args:
        counts_a: Model A's counts ``(n, C, 4)`` or ``(R, n, C, 4)`` for R repeats.
        counts_b: Model B's, shaped as ``counts_a``, on the same images (same masks).
        groups: ``(n,)`` group of each image (patients), or None.
        n_resamples: Resamples, > 0. Default 2000.
        seed: Seed of the resampling. Default 0.

    Raises:
        ValueError: Shapes differ, or the two do not share the masks (``tp + fn``).
    """
    value_a, value_b, differences = resampled_dice_differences(
        counts_a, counts_b, groups=groups, n_resamples=n_resamples, seed=seed
    )
    low, high = map(float, np.percentile(differences, [2.5, 97.5]))
    return PairedDifference(
        "dice", value_a, value_b, value_a - value_b, low, high, n_resamples,
        float(np.mean(differences <= 0)),
    )  # fmt: skip


def resampled_dice_differences(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 2000,
    seed: int | Sequence[int] = 0,
    metric: str = "dice",
) -> tuple[float, float, np.ndarray]:
    """A's and B's ``metric`` (one of :data:`METRICS`; default the mean foreground Dice,
    averaged over repeats) on all images, and the ``(n_resamples,)`` resampled differences
    behind :func:`paired_image_bootstrap` (same arguments), for a caller that pools several
    folds' differences as the verdict does."""
    a, b = (_repeats(x) for x in (counts_a, counts_b))
    if a.shape != b.shape:
        raise ValueError(f"paired_image_bootstrap: shapes differ: {a.shape} and {b.shape}.")
    truth = a[0, ..., TP] + a[0, ..., FN]
    if not all(np.array_equal(x[..., TP] + x[..., FN], truth) for x in (*a, *b)):
        raise ValueError("paired_image_bootstrap: the counts are not on the same masks.")
    if n_resamples <= 0:
        raise ValueError(f"paired_image_bootstrap: n_resamples must be > 0; got {n_resamples}.")
    weights = image_weights(image_strata(a[0]), n_resamples, groups=groups, seed=seed)
    ones = np.ones((1, a.shape[1]))
    value_a = float(np.mean([weighted_metric(x, ones, metric)[0] for x in a]))
    value_b = float(np.mean([weighted_metric(x, ones, metric)[0] for x in b]))
    differences = np.mean(
        [
            weighted_metric(x, weights, metric) - weighted_metric(y, weights, metric)
            for x, y in zip(a, b, strict=True)
        ],
        axis=0,
    )
    return value_a, value_b, differences


def _repeats(counts: np.ndarray) -> np.ndarray:
    x = np.asarray(counts)
    return _checked(x)[None] if x.ndim == 3 else np.stack([_checked(r) for r in x])


def _checked(counts: np.ndarray) -> np.ndarray:
    x = np.asarray(counts)
    if x.ndim != 3 or x.shape[2] != 4 or x.shape[1] < 2:
        raise ValueError(f"segmentation counts must be (images, classes >= 2, 4); got {x.shape}.")
    return x


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else float("nan")


def _class_means(values: np.ndarray) -> np.ndarray:
    """Column means over the non-NaN rows; NaN for an all-NaN column."""
    valid = ~np.isnan(values)
    count = valid.sum(axis=0)
    total = np.where(valid, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _mean(values: np.ndarray) -> float:
    """The mean of the non-NaN values; NaN where there are none."""
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if len(valid) else float("nan")
