"""Classification metrics from labels and scores: pure NumPy, no torch, no scikit-learn import.

Scores are positive-class probabilities ``(N,)`` for binary tasks and class probabilities
``(N, C)`` for multiclass. For binary tasks the positive class (label 1) is the minority class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Objective name -> field of ``Evaluation``; every objective is higher-is-better.
OBJECTIVES: dict[str, str] = {
    "f1": "f1",
    "recall": "recall",
    "precision": "precision",
    "pr_auc": "pr_auc",
    "roc_auc": "roc_auc",
    "f1_macro": "f1_macro",
}
# How the report names each objective.
METRIC_NAMES = {
    "f1": "F1", "pr_auc": "PR-AUC", "roc_auc": "ROC-AUC", "f1_macro": "macro F1", "dice": "Dice",
    "dice_micro": "pooled Dice", "iou": "IoU", "iou_micro": "pooled IoU", "ap": "AP",
    "ap50": "AP50", "ap75": "AP75",
}  # fmt: skip
# The objectives segmentation and detection trials have: their own (read from
# ``Evaluation.task_metrics``), then the ones counted at the decision threshold.
_COUNTED = ("f1", "precision", "recall", "f1_macro")
TASK_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "segmentation": ("dice", "dice_micro", "iou", "iou_micro", *_COUNTED),
    "detection": ("ap", "ap50", "ap75", *_COUNTED),
}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one split says about one model; every field is JSON-safe.

    ``precision``/``recall``/``f1`` are the minority (positive) class's for binary tasks and
    macro averages for multiclass. ``confusion[i][j]`` counts true class i predicted as j.
    """

    threshold: float | None
    precision: float
    recall: float
    f1: float
    f1_macro: float
    pr_auc: float
    roc_auc: float
    ece: float
    brier: float
    precision_per_class: list[float]
    recall_per_class: list[float]
    f1_per_class: list[float]
    confusion: list[list[int]]
    f1_at_0_5: float | None
    best_threshold: float | None
    f1_at_best_threshold: float | None
    f1_ci_low: float
    f1_ci_high: float
    pr_curve: list[list[float]]
    # A segmentation or detection trial's own figures (Dice, IoU; AP, AR), per class as lists.
    task_metrics: dict[str, Any] = field(default_factory=dict)


def evaluate(
    targets: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Evaluate scores against labels.

    Args:
        targets: Labels ``(N,)`` in ``0..C-1``.
        scores: ``(N,)`` positive-class probabilities (binary) or ``(N, C)`` probabilities.
        threshold: Binary decision threshold on the positive-class probability. Default 0.5.
        n_bootstrap: Resamples for the 95% interval of ``f1`` (stratified). Default 1000.
        seed: Seed of the bootstrap. Default 0.

    Example:
        >>> e = evaluate(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.7, 0.4]))
        >>> e.f1, e.confusion, round(e.ece, 6), round(e.brier, 6)
        (0.5, [[1, 1], [1, 1]], 0.4, 0.205)
    """
    targets = np.asarray(targets, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    binary = scores.ndim == 1
    n_classes = 2 if binary else scores.shape[1]
    predictions = (scores >= threshold).astype(np.int64) if binary else scores.argmax(axis=1)
    matrix = confusion_matrix(targets, predictions, n_classes)
    precision, recall, f1 = per_class_prf(matrix)
    best_threshold, best_f1 = best_f1_threshold(targets, scores) if binary else (None, None)
    low, high = bootstrap_f1(matrix, n_bootstrap=n_bootstrap, seed=seed)
    return Evaluation(
        threshold=float(threshold) if binary else None,
        precision=float(precision[1] if binary else precision.mean()),
        recall=float(recall[1] if binary else recall.mean()),
        f1=float(f1[1] if binary else f1.mean()),
        f1_macro=float(f1.mean()),
        pr_auc=mean_average_precision(targets, scores),
        roc_auc=roc_auc(targets, scores) if binary else _mean_ovr(roc_auc, targets, scores),
        ece=expected_calibration_error(targets, scores),
        brier=brier_score(targets, scores),
        precision_per_class=precision.tolist(),
        recall_per_class=recall.tolist(),
        f1_per_class=f1.tolist(),
        confusion=matrix.tolist(),
        f1_at_0_5=float(per_class_prf(confusion_matrix(targets, scores >= 0.5, 2))[2][1])
        if binary
        else None,
        best_threshold=best_threshold,
        f1_at_best_threshold=best_f1,
        f1_ci_low=low,
        f1_ci_high=high,
        pr_curve=pr_curve(targets, scores) if binary else [],
    )


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Return ``(C, C)`` counts, rows the true class and columns the predicted one.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist()
        [[1, 0], [1, 1]]
    """
    flat = np.asarray(targets, dtype=np.int64) * n_classes + np.asarray(predictions, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_prf(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return precision, recall and F1 per class of ``(..., C, C)`` counts; 0 where undefined."""
    tp = np.diagonal(matrix, axis1=-2, axis2=-1).astype(np.float64)
    predicted, actual = matrix.sum(axis=-2), matrix.sum(axis=-1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return precision, recall, f1


def _ranked_counts(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """True and false positives at each distinct score, highest first, and those scores."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_targets = scores[order], targets[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tps = np.cumsum(sorted_targets)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64), sorted_scores[last_of_tie]


def average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum (sklearn's ``average_precision``).

    Example:
        >>> average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.8333333333333333
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    order, weights = np.argsort(-scores, kind="stable"), np.ones((1, len(scores)))
    return float(
        weighted_average_precision(weights, targets, scores, order)[0]
    )  # 0 without positives


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of binary scores ``(N,)``; the one-vs-rest mean for ``(N, C)``."""
    if scores.ndim == 1:
        return average_precision(targets, scores)
    return _mean_ovr(average_precision, targets, scores)


def _mean_ovr(
    metric: Callable[[np.ndarray, np.ndarray], float], targets: np.ndarray, scores: np.ndarray
) -> float:
    """Mean of a binary metric over the classes, one vs rest."""
    classes = range(scores.shape[1])
    return float(np.mean([metric((targets == c).astype(np.int64), scores[:, c]) for c in classes]))


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half).

    Example:
        >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    targets = np.asarray(targets)
    n_pos = int(targets.sum())
    n_neg = len(targets) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[targets == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based mean rank
    return ranks


def best_f1_threshold(targets: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Return the threshold that maximizes positive-class F1 on these scores, and that F1.

    Predicting positive where ``score >= threshold``; the threshold is one of the scores.
    """
    tps, fps, thresholds = _ranked_counts(np.asarray(targets), np.asarray(scores, np.float64))
    if len(tps) == 0 or tps[-1] == 0:
        return 0.5, 0.0
    f1 = 2 * tps / (tps + fps + tps[-1])
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def pr_curve(
    targets: np.ndarray, scores: np.ndarray, *, max_points: int = 200
) -> list[list[float]]:
    """Return ``[[recall, precision, threshold], ...]``, thinned to at most ``max_points``."""
    tps, fps, thresholds = _ranked_counts(np.asarray(targets), np.asarray(scores, np.float64))
    if len(tps) == 0 or tps[-1] == 0:
        return []
    keep = np.unique(np.linspace(0, len(tps) - 1, min(max_points, len(tps))).astype(int))
    precision, recall = tps / (tps + fps), tps / tps[-1]
    return [
        [round(float(recall[i]), 5), round(float(precision[i]), 5), round(float(thresholds[i]), 6)]
        for i in keep
    ]


def expected_calibration_error(
    targets: np.ndarray, scores: np.ndarray, *, n_bins: int = 15
) -> float:
    """Return the top-label expected calibration error (Guo et al. 2017); nan if empty.

    Confidence is ``max(p, 1 - p)`` for binary ``(N,)``, the top probability for ``(N, C)``;
    correct means the predicted label (``p >= 0.5``, or the argmax) is the target. Over
    ``n_bins`` (default 15) bins ``[k / n_bins, (k + 1) / n_bins)``, the last holding 1.0 too,
    ECE = sum of ``n_bin / N * |mean(correct) - mean(confidence)|``; lower is better.
    """
    targets, scores = np.asarray(targets, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    confidence = np.maximum(scores, 1 - scores) if scores.ndim == 1 else scores.max(axis=1)
    correct = ((scores >= 0.5) if scores.ndim == 1 else scores.argmax(axis=1)) == targets
    bins = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], confidence, side="right")
    gaps = np.bincount(bins, weights=correct - confidence, minlength=n_bins)  # n_bin * gap
    return float(np.abs(gaps).sum() / len(targets)) if len(targets) else float("nan")


def brier_score(targets: np.ndarray, scores: np.ndarray) -> float:
    """Return the mean squared error of the probabilities (Brier); lower is better, nan if empty.

    Binary ``(N,)``: ``mean((p - y) ** 2)``, as sklearn's ``brier_score_loss``. ``(N, C)``: the
    mean over rows of the squared error summed over classes against one-hot targets, in [0, 2].
    """
    targets, scores = np.asarray(targets, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    if len(targets) == 0:
        return float("nan")
    errors = (scores - (targets if scores.ndim == 1 else np.eye(scores.shape[1])[targets])) ** 2
    return float(errors.mean() if scores.ndim == 1 else errors.sum(axis=1).mean())


def bootstrap_f1(
    matrix: np.ndarray, *, n_bootstrap: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Return the 95% stratified bootstrap interval of F1 (positive class, or macro if multiclass).

    Resampling each true class with replacement, keeping its count, draws that row of counts
    from a multinomial with the row's shares; drawing counts directly is as exact and cheaper.

    Args:
        matrix: ``(C, C)`` confusion counts, rows the true class.
        n_bootstrap: Resamples. Default 1000.
        seed: Seed of the resampling. Default 0.
    """
    rows, rng = matrix.sum(axis=1), np.random.default_rng(seed)  # (C,)
    if n_bootstrap <= 0 or rows.sum() == 0:
        return float("nan"), float("nan")
    shares = matrix / np.maximum(rows, 1)[:, None]  # an empty row draws nothing anyway
    f1 = per_class_prf(rng.multinomial(rows, shares, size=(n_bootstrap, len(rows))))[2]  # (B, C)
    values = f1[:, 1] if len(rows) == 2 else f1.mean(axis=1)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def weighted_average_precision(
    w: np.ndarray, y: np.ndarray, s: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """Return ``(B,)`` average precisions, tied scores grouped as in ``average_precision``."""
    sorted_scores, sorted_y, w = s[order], y[order], np.take(w, order, axis=1)
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(s) - 1]  # last of each tie
    positive = np.flatnonzero(sorted_y)
    group_end = np.repeat(ends, np.diff(np.r_[-1, ends]))[positive]  # (n_pos,)
    positive_w = w[:, positive]  # (B, n_pos)
    tps = np.cumsum(w * sorted_y, axis=1)[:, group_end]
    seen = np.cumsum(w, axis=1, out=w)[:, group_end]  # in place: the sorted copy is spent
    precision = tps / np.maximum(seen, 1)  # counts: 0 seen means a 0 weight, so any value
    return (positive_w * precision).sum(axis=1) / np.maximum(positive_w.sum(axis=1), 1)


def objective_value(evaluation: Evaluation, objective: str) -> float:
    """Return the configured objective (higher is better) from an evaluation: NaN for a task
    metric the evaluation does not hold (Dice of a classification trial)."""
    if objective in OBJECTIVES:
        return float(getattr(evaluation, OBJECTIVES[objective]))
    return float(evaluation.task_metrics.get(objective, math.nan))
