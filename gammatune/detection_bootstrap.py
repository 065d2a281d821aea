"""COCO AP of resampled images, fast: match once, then a weighted sort-free cumulative sum.

COCO AP is not a mean of per-image values, so a bootstrap over images must recompute AP on each
resample. :func:`match` does COCO's matching once per image, class and IoU threshold (detections
greedily by score, each taking the unmatched ground-truth box of highest IoU at or above the
threshold; 100 detections per image and class; all areas; no crowd regions, which
:mod:`gammatune.detection` refuses). Detections are sorted by score once per class. A resample
is a weight (multiplicity) per image: its AP is a cumulative sum of weighted true and false
positives, COCO's precision envelope and its 101-point recall interpolation. With every weight
1 this is pycocotools' AP (tests check it to 1e-6); a weight k counts an image k times.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from gammatune.detection import Detections

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # as pycocotools: np.linspace(.5, .95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 100
EPS = float(np.spacing(1))
CHUNK = 100  # resamples at once


@dataclass(frozen=True, slots=True)
class ClassMatches:
    """One class's detections over all images, sorted by score (descending, stable).

    ``image`` ``(D,)`` is each detection's image index, ``tp`` ``(T, D)`` whether it matched at
    each IoU threshold, ``n_gt`` ``(n_images,)`` the class's ground-truth boxes per image,
    ``score`` ``(D,)`` each detection's score.
    """

    image: np.ndarray
    tp: np.ndarray
    n_gt: np.ndarray
    score: np.ndarray


@dataclass(frozen=True, slots=True)
class Matches:
    """Every class's matches for one model on one split of ``n_images`` images."""

    classes: tuple[ClassMatches, ...]
    n_images: int


def match(dets: Detections) -> Matches:
    """Match each image's detections to its ground truth once per class and IoU threshold."""
    n, n_classes = len(dets.ids), dets.n_classes
    images: list[list[np.ndarray]] = [[] for _ in range(n_classes)]
    scores: list[list[np.ndarray]] = [[] for _ in range(n_classes)]
    tps: list[list[np.ndarray]] = [[] for _ in range(n_classes)]
    n_gt = np.zeros((n_classes, n), np.int64)
    for i in range(n):
        for k in np.union1d(dets.labels[i], dets.gt_labels[i]):  # classes present in image i
            gt = dets.gt_boxes[i][dets.gt_labels[i] == k]
            n_gt[k, i] = len(gt)
            mine = dets.labels[i] == k
            score = dets.scores[i][mine]
            order = np.argsort(-score, kind="mergesort")[:MAX_DETS]
            images[k].append(np.full(len(order), i))
            scores[k].append(score[order])
            tps[k].append(_greedy(dets.boxes[i][mine][order], gt))
    classes = []
    for k in range(n_classes):
        score_all = np.concatenate([np.zeros(0), *scores[k]])
        order = np.argsort(-score_all, kind="mergesort")
        classes.append(
            ClassMatches(
                image=np.concatenate([np.zeros(0, np.int64), *images[k]])[order].astype(np.int64),
                tp=np.concatenate([np.zeros((len(IOU_THRESHOLDS), 0), bool), *tps[k]], 1)[
                    :, order
                ],
                n_gt=n_gt[k],
                score=score_all[order],
            )
        )
    return Matches(tuple(classes), n)


def _greedy(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(T, len(boxes))``: whether each detection (by descending score) takes a ground-truth
    box at each IoU threshold, as COCO matches them."""
    tp = np.zeros((len(IOU_THRESHOLDS), len(boxes)), bool)
    if not len(gt) or not len(boxes):
        return tp
    ious = _iou(boxes, gt)
    for t, threshold in enumerate(np.minimum(IOU_THRESHOLDS, 1 - 1e-10)):
        taken = np.zeros(len(gt), bool)
        for d in range(len(boxes)):
            # COCO keeps the last gt of the highest IoU >= threshold among the untaken
            candidates = np.where(taken, -1.0, ious[d])
            best = len(gt) - 1 - int(np.argmax(candidates[::-1]))
            if candidates[best] >= threshold:
                taken[best] = True
                tp[t, d] = True
    return tp


def resampled_ap(matches: Matches, weights: np.ndarray) -> np.ndarray:
    """AP per resample, per IoU threshold and class: ``(B, T, K)``, NaN where a resample holds
    no ground truth of the class.

    ``weights`` is ``(B, n_images)``: how many times each image is drawn (1 everywhere: the
    split itself). Mean over T and the non-NaN classes is AP@[.5:.95]; T index 0 is AP50,
    5 is AP75.
    """
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    if weights.shape[1] != matches.n_images:
        raise ValueError(f"weights must be (B, {matches.n_images}); got {weights.shape}")
    if len(weights) > CHUNK:  # bounds memory: (CHUNK, T, D) arrays per class
        return np.concatenate(
            [resampled_ap(matches, weights[i : i + CHUNK]) for i in range(0, len(weights), CHUNK)]
        )
    b, t = len(weights), len(IOU_THRESHOLDS)
    out = np.full((b, t, len(matches.classes)), np.nan)
    for k, cls in enumerate(matches.classes):
        n_gt = weights @ cls.n_gt  # (B,)
        present = n_gt > 0
        if not present.any():
            continue
        out[present, :, k] = 0.0
        if not len(cls.image):
            continue
        w = weights[present][:, cls.image]  # (B', D)
        tp = np.cumsum(w[:, None, :] * cls.tp[None], axis=2)  # (B', T, D)
        fp = np.cumsum(w, axis=1)[:, None, :] - tp  # exact: weights are counts
        recall = tp / n_gt[present][:, None, None]
        precision = tp / (fp + tp + EPS)
        envelope = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1]
        reached = np.searchsorted(RECALL_THRESHOLDS, recall, side="right")
        gained = np.diff(reached, axis=2, prepend=0)  # recall thresholds first reached here
        out[present, :, k] = (envelope * gained).sum(axis=2) / len(RECALL_THRESHOLDS)
    return out


def summary(per: np.ndarray) -> dict[str, np.ndarray]:
    """AP@[.5:.95], AP50 and AP75 per resample from :func:`resampled_ap`'s ``(B, T, K)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no class present
        return {
            "ap": np.nanmean(per.reshape(len(per), -1), axis=1),
            "ap50": np.nanmean(per[:, 0], axis=1),
            "ap75": np.nanmean(per[:, 5], axis=1),
        }


def paired_bootstrap(
    a: Matches, b: Matches, *, n_resamples: int = 1000, seed: int = 0, metric: str = "ap"
) -> np.ndarray:
    """Resampled ``metric`` differences, model ``a`` minus model ``b``, ``(n_resamples,)``.

    Both models are scored on the same resamples of images (drawn with replacement, as
    multiplicities), so the spread is that of the paired difference.
    """
    if a.n_images != b.n_images or len(a.classes) != len(b.classes):
        raise ValueError("the two models must be matched on the same images and classes")
    rng = np.random.default_rng(seed)
    n = a.n_images
    counts = np.stack(
        [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_resamples)]
    )
    return summary(resampled_ap(a, counts))[metric] - summary(resampled_ap(b, counts))[metric]


def _iou(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU ``(len(dt), len(gt))`` as pycocotools computes it from ``[x, y, w, h]``."""
    dx, dy, dw, dh = dt[:, 0:1], dt[:, 1:2], dt[:, 2:3] - dt[:, 0:1], dt[:, 3:4] - dt[:, 1:2]
    gx, gy, gw, gh = gt[:, 0], gt[:, 1], gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = dw * dh + gw * gh - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / union, 0.0)
