"""Paired, stratified bootstrap of the difference between two binary models on one sample.

Used twice: to decide (on validation, over the confirm repeats) and to report the decision once
on the test split. Pure NumPy: resamples are count weights, so no loop over resamples. With
group keys (patients, sites: ``data.groups``) whole groups are resampled, since the samples of
one group are alike and resampling them one by one gives too narrow an interval.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from gammatune.metrics import weighted_average_precision

PairedMetric = Literal["f1", "precision", "recall", "pr_auc"]
_Model = tuple[np.ndarray, np.ndarray, np.ndarray]  # scores (2R, N), their argsort, thresholds


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """A metric of models A and B (averaged over repeats) and a bootstrap of their difference."""

    metric: str
    value_a: float
    value_b: float
    difference: float  # value_a - value_b
    low: float  # 2.5% percentile of the resampled difference
    high: float  # 97.5% percentile
    n_resamples: int
    p_below_zero: float  # share of resamples whose difference is <= 0


def paired_bootstrap(
    targets: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    metric: PairedMetric = "f1",
    threshold: float | np.ndarray | tuple[float | np.ndarray, float | np.ndarray] = 0.5,
    n_resamples: int = 2000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> PairedDifference:
    """Compare two binary models scored on the same samples by a paired, stratified bootstrap.

    A resample draws positives and negatives apart, with replacement, keeping both counts, for
    both models and all R repeats; it scores the mean over r of ``metric(A_r) - metric(B_r)``.
    Resamples are ``(B, N)`` count weights; PR-AUC groups tied scores as ``average_precision``.
    With ``groups``, a resample draws whole groups instead (those holding a positive apart from
    the others, keeping both counts), and a sample's weight is its group's count.

    Args:
        targets: Labels ``(N,)`` in {0, 1}.
        scores_a: Model A's positive-class probabilities, ``(R, N)`` for R repeats, or ``(N,)``.
        scores_b: Model B's, shaped as ``scores_a``; its repeat r pairs with A's repeat r.
        metric: "f1", "precision", "recall" or "pr_auc"; 0 where undefined. Default "f1".
        threshold: Positive at ``score >= threshold``; scalar, ``(R,)``, or a tuple (for A, for
            B) of those. Unused by "pr_auc". Default 0.5.
        n_resamples: Resamples, > 0. Default 2000.
        seed: Seed of the resampling. Default 0.
        groups: ``(N,)`` group of each sample (any hashable keys), or None to resample samples.
            With every group a single sample, the resamples are exactly the samples'.

    Raises:
        ValueError: Unknown metric, non-binary targets, multiclass or mismatched shapes.
    """
    value_a, value_b, differences = resampled_differences(
        targets, scores_a, scores_b, metric=metric, threshold=threshold,
        n_resamples=n_resamples, seed=seed, groups=groups,
    )  # fmt: skip
    low, high = map(float, np.percentile(differences, [2.5, 97.5]))
    p_below_zero = float(np.mean(differences <= 0))
    return PairedDifference(
        metric, value_a, value_b, value_a - value_b, low, high, n_resamples, p_below_zero
    )


def resampled_differences(
    targets: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    metric: PairedMetric = "f1",
    threshold: float | np.ndarray | tuple[float | np.ndarray, float | np.ndarray] = 0.5,
    n_resamples: int = 2000,
    seed: int | Sequence[int] = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float, np.ndarray]:
    """A's and B's metric on the full sample, and the ``(n_resamples,)`` resampled
    differences behind :func:`paired_bootstrap` (same arguments; ``seed`` may be a sequence)."""
    y, where = np.asarray(targets), "paired_bootstrap:"
    a, b = (np.atleast_2d(np.asarray(x, dtype=np.float64)) for x in (scores_a, scores_b))
    threshold_a, threshold_b = threshold if isinstance(threshold, tuple) else (threshold,) * 2
    if metric not in get_args(PairedMetric):
        raise ValueError(f"{where} metric must be in {get_args(PairedMetric)}; got {metric!r}.")
    if n_resamples <= 0:
        raise ValueError(f"{where} n_resamples must be > 0; got {n_resamples}.")
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{where} targets must be (N,) labels in {{0, 1}} (binary only).")
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != len(y):
        shape = np.shape(scores_a), np.shape(scores_b)
        raise ValueError(f"{where} scores must be binary (N,) or (R, N), N = {len(y)}: {shape}.")
    if groups is not None and np.shape(groups) != y.shape:
        raise ValueError(f"{where} groups must be (N,), N = {len(y)}: {np.shape(groups)}.")
    units = None if groups is None else group_units(groups)
    thresholds = [np.broadcast_to(t, a.shape[:1]) for t in (threshold_a, threshold_b)]  # (R,)
    scores, y = np.concatenate([a, b]), y.astype(np.float64)  # (2R, N): A's repeats, then B's
    model = (scores, np.argsort(-scores, axis=1, kind="stable"), np.concatenate(thresholds))
    value_a, value_b = map(float, _paired_means(np.ones((1, len(y))), y, model, metric)[0])
    # Count metrics sum integer weights (at most 255 a sample, as kept): float32 holds every
    # partial sum exactly below 2^24, so the counts are the float64 ones, at half the traffic.
    exact32 = metric != "pr_auc" and 255 * len(y) < 2**24
    resamples = _resamples(y, n_resamples, seed, units, np.float32 if exact32 else np.float64)
    means = [_paired_means(w, y, model, metric) for w in resamples]
    return value_a, value_b, np.concatenate(means) @ np.array([1.0, -1.0])  # (B,)


# The verdict compares every candidate with its references on one sample with one seed: the
# same resamples each time. The latest are kept, as uint8 counts (1/8 of the weights), up to
# 64 MB in all; drawing them was 90% of `report` on 8,000 validation rows.
_KEPT: OrderedDict[tuple[object, ...], list[np.ndarray]] = OrderedDict()
_KEEP_BYTES = 2**26


def group_units(groups: np.ndarray) -> np.ndarray:
    """``(N,)`` the group of each sample as 0..G-1, numbered in order of first appearance (so
    that groups of one sample each are numbered as the samples are)."""
    _, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse.reshape(-1)]


def _resamples(
    y: np.ndarray,
    n_resamples: int,
    seed: int | Sequence[int],
    units: np.ndarray | None = None,
    dtype: type[np.floating] = np.float64,
) -> Iterator[np.ndarray]:
    """The ``(k, N)`` count weights of ``n_resamples`` stratified resamples (of samples, or of
    the groups ``units`` numbers), in chunks of at most 67 MB, drawn from ``seed`` (the same
    for the same sample, groups and seed); kept ones in ``dtype``, fresh ones in float64."""
    seeds = tuple(int(s) for s in np.atleast_1d(np.asarray(seed)))
    grouped = "" if units is None else hashlib.sha1(units.astype(np.int64).tobytes()).hexdigest()
    key = (hashlib.sha1(y.tobytes()).hexdigest(), len(y), n_resamples, seeds, grouped)
    if key in _KEPT:
        _KEPT.move_to_end(key)
        yield from (counts.astype(dtype) for counts in _KEPT[key])
        return
    rng, rows = np.random.default_rng(list(seeds)), max(1, 2**23 // max(len(y), 1))
    sizes = [min(rows, n_resamples - start) for start in range(0, n_resamples, rows)]
    keep = n_resamples * len(y) <= _KEEP_BYTES
    kept = []
    for k in sizes:
        weights = _stratified_weights(y, k, rng, units)
        if keep:  # a count above 255 has probability below 1e-500 (about Poisson(1))
            kept.append(weights.astype(np.uint8))
        yield weights
    if keep:
        _KEPT[key] = kept
        while sum(c.nbytes for chunks in _KEPT.values() for c in chunks) > _KEEP_BYTES:
            _KEPT.popitem(last=False)


def _stratified_weights(
    targets: np.ndarray, n: int, rng: np.random.Generator, units: np.ndarray | None = None
) -> np.ndarray:
    """Return ``(n, N)`` multiplicities of resamples that keep every class's count; with
    ``units`` (each sample's group, 0..G-1), of resamples of whole groups that keep the count
    of each stratum (a group's highest label: for a binary task, whether it holds a positive),
    each sample weighted by its group's count."""
    strata = targets
    if units is not None:
        strata = np.full(int(units.max(initial=-1)) + 1, -np.inf)
        np.maximum.at(strata, units, targets)
    weights = np.zeros((n, len(strata)))
    for idx in (np.flatnonzero(strata == label) for label in np.unique(strata)):
        weights[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=n)
    return weights if units is None else weights[:, units]


def _paired_means(w: np.ndarray, y: np.ndarray, model: _Model, metric: str) -> np.ndarray:
    """Return ``(B, 2)``: A's and B's metric, averaged over repeats, under count weights ``w``."""
    scores, order, threshold = model  # (2R, N), its argsort, thresholds (2R,)
    if metric == "pr_auc":
        values = np.stack(
            [weighted_average_precision(w, y, s, o) for s, o in zip(scores, order, strict=True)]
        )
    else:
        predicted = (scores >= threshold[:, None]).astype(np.float64)  # (2R, N)
        # One pass over the weights for every count (sums of integers, so exact in any order).
        counts = np.concatenate([predicted * y, predicted, y[None]]).astype(w.dtype) @ w.T
        counts = counts.astype(np.float64)  # (4R + 1, B)
        tp, n_predicted = np.split(counts[:-1], 2)  # (2R, B) each
        n_actual = np.broadcast_to(counts[-1], tp.shape)
        ratios = {"precision": (tp, n_predicted), "recall": (tp, n_actual)}
        numerator, denominator = ratios.get(metric, (2 * tp, n_predicted + n_actual))
        values = numerator / np.maximum(denominator, 1)  # counts, so 0 where undefined
    return values.reshape(2, -1, len(w)).mean(axis=1).T
