"""A segmentation or detection trial judged like a classification one.

Each task's scores become the same :class:`~gammatune.metrics.Evaluation` a classification
trial gets (precision, recall, F1, per-class lists, a confusion matrix where one exists, a
precision-recall curve), plus the task's own figures in ``task_metrics``: Dice and IoU, or
COCO AP and AR. The verdict compares two settings by :func:`paired_differences`, which
resamples whole images (or groups of them), never pixels or boxes, and recomputes the metric
on each resample.

- Segmentation (per-image pixel counts): precision, recall and F1 pool the foreground
  classes' counts; per-class lists are over every class (background first); ``confusion`` is
  the pooled 2x2 ``[[tn, fp], [fn, tp]]`` of a binary task, empty for more classes.
- Detection (per-image boxes): precision, recall and F1 at IoU 0.5 for the detections scoring
  at least the decision threshold, over all classes (per class in the lists); ``pr_curve`` is
  precision against recall at IoU 0.5 over every detection, ranked by score; no confusion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gammatune.bootstrap import PairedDifference
from gammatune.detection import (
    CheckedDetections,
    Detections,
    DetectionScores,
    GroundTruth,
    coco_metrics,
    detection_payload,
)
from gammatune.detection_bootstrap import ClassMatches, match, resampled_ap, summary
from gammatune.metrics import Evaluation
from gammatune.segmentation import (
    FN,
    FP,
    METRICS,
    TP,
    SegmentationScores,
    evaluate_segmentation,
    image_strata,
    image_weights,
    weighted_metric,
)
from gammatune.tasks import (
    Checked,
    CheckedCounts,
    SplitIds,
    classification_payload,
    payload_task,
    segmentation_payload,
)

TaskScores = SegmentationScores | DetectionScores
NAN = math.nan


def check_payload(
    payload: Any, split: SplitIds, gt: GroundTruth | None = None
) -> Checked | CheckedCounts | CheckedDetections:
    """Check a trainer's payload of the task it is (:func:`~gammatune.tasks.payload_task`);
    ``gt`` (``data.annotations``) serves detection payloads without ``gt_boxes``.

    Raises:
        PayloadError: Naming the field and what is wrong with it.
    """
    task = payload_task(payload)
    if task == "segmentation":
        return segmentation_payload(payload, split)
    if task == "detection":
        return detection_payload(payload, split, gt)
    return classification_payload(payload, split)


def task_of(scores: object) -> str:
    """``"segmentation"``, ``"detection"`` or ``"classification"``: the task of a trial's
    scores."""
    if isinstance(scores, SegmentationScores):
        return "segmentation"
    return "detection" if isinstance(scores, DetectionScores) else "classification"


def evaluate_task(
    scores: TaskScores, *, threshold: float = 0.5
) -> tuple[Evaluation, Evaluation | None]:
    """Both splits' evaluations (test None where the trainer returned none)."""
    if isinstance(scores, SegmentationScores):
        test = None if scores.test is None else counts_evaluation(scores.test)
        return counts_evaluation(scores.val), test
    test = None if scores.test is None else detections_evaluation(scores.test, threshold)
    return detections_evaluation(scores.val, threshold), test


def counts_evaluation(counts: np.ndarray) -> Evaluation:
    """A segmentation split's evaluation from its per-image counts ``(n, C, 4)``."""
    seg = evaluate_segmentation(counts)
    pooled = counts.sum(axis=0).astype(np.float64)  # (C, 4)
    tp, fp, fn = pooled[:, TP], pooled[:, FP], pooled[:, FN]
    precision, recall, f1 = _prf(tp, fp, fn)
    binary = counts.shape[1] == 2
    return _evaluation(
        precision=seg.precision,
        recall=seg.recall,
        f1=seg.f1,
        f1_macro=float(np.nanmean(f1)) if len(f1) else NAN,
        per_class=(precision, recall, f1),
        confusion=seg.confusion[1] if binary else [],
        task_metrics={
            "dice": seg.dice,
            "dice_micro": seg.dice_micro,
            "iou": seg.iou,
            "iou_micro": seg.iou_micro,
            "dice_per_class": seg.dice_per_class,
            "dice_micro_per_class": seg.dice_micro_per_class,
            "iou_per_class": seg.iou_per_class,
            "images_per_class": seg.images_per_class,
            **_found(counts[:, 1:, TP] + counts[:, 1:, FN], tp[1:].sum(), (tp + fp)[1:].sum()),
        },
    )


def detections_evaluation(dets: Detections, threshold: float) -> Evaluation:
    """A detection split's evaluation: COCO's figures (pycocotools) and, at IoU 0.5, the
    detections at or above ``threshold`` counted as predictions."""
    coco = coco_metrics(dets)
    matches = match(dets)
    kept = [c.score >= threshold for c in matches.classes]
    tp = np.array([c.tp[0][k].sum() for c, k in zip(matches.classes, kept, strict=True)], float)
    predicted = np.array([k.sum() for k in kept], float)
    truth = np.array([c.n_gt.sum() for c in matches.classes], float)
    precision, recall, f1 = _prf(tp, predicted - tp, truth - tp)
    all_p, all_r, all_f = _prf(*(np.array([x.sum()]) for x in (tp, predicted - tp, truth - tp)))
    present = truth > 0
    return _evaluation(
        precision=float(all_p[0]),
        recall=float(all_r[0]),
        f1=float(all_f[0]),
        f1_macro=float(f1[present].mean()) if present.any() else NAN,
        per_class=(precision, recall, f1),
        confusion=[],
        threshold=threshold,
        pr_curve=_pr_at_half(matches.classes, int(truth.sum())),
        task_metrics={
            "ap": coco.ap,
            "ap50": coco.ap50,
            "ap75": coco.ap75,
            "ar": coco.ar100,
            "ap_per_class": list(coco.per_class_ap),
            **_found(np.array([[len(g)] for g in dets.gt_labels]), tp.sum(), predicted.sum()),
        },
    )


def paired_differences(
    a: Sequence[TaskScores],
    b: Sequence[TaskScores],
    metric: str,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int | Sequence[int] = 0,
) -> np.ndarray | None:
    """``(n_resamples,)`` resampled validation differences of ``metric``, A minus B, averaged
    over paired repeats ``a[i]``, ``b[i]`` of one fold (same images), with the images (or
    ``groups`` of them) resampled, stratified by the classes each holds; None for a metric
    the resampling does not compute (the verdict then uses a t interval over repeats)."""
    if not supported(a[0], metric):
        return None
    weights = _weights(a[0], n_resamples, groups, seed)
    pairs = zip(a, b, strict=True)
    return np.mean(
        [_metric(x, weights, metric) - _metric(y, weights, metric) for x, y in pairs], 0
    )


def paired_test(
    a: Sequence[TaskScores],
    b: Sequence[TaskScores],
    metric: str,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 2000,
    seed: int | Sequence[int] = 0,
) -> PairedDifference | None:
    """The paired bootstrap of :func:`paired_differences` on the test split (every trial has
    test scores), with A's and B's values averaged over the repeats."""
    on_test = [[_test(x) for x in trials] for trials in (a, b)]
    differences = paired_differences(
        on_test[0], on_test[1], metric, groups=groups, n_resamples=n_resamples, seed=seed
    )
    if differences is None:
        return None
    ones = np.ones((1, _images(on_test[0][0])))
    value_a, value_b = (
        float(np.mean([_metric(x, ones, metric)[0] for x in trials])) for trials in on_test
    )
    low, high = map(float, np.percentile(differences, [2.5, 97.5]))
    return PairedDifference(
        metric, value_a, value_b, value_a - value_b, low, high, n_resamples,
        float(np.mean(differences <= 0)),
    )  # fmt: skip


def supported(scores: TaskScores, metric: str) -> bool:
    """Whether the image resampling computes ``metric`` for this task."""
    if isinstance(scores, SegmentationScores):
        return metric in METRICS
    return metric in ("ap", "ap50", "ap75")


def _metric(scores: TaskScores, weights: np.ndarray, metric: str) -> np.ndarray:
    """``(B,)`` the validation ``metric`` under image weights ``(B, n)``."""
    if isinstance(scores, SegmentationScores):
        return weighted_metric(scores.val, weights, metric)
    return summary(resampled_ap(match(scores.val), weights))[metric]


def _weights(
    scores: TaskScores, n_resamples: int, groups: np.ndarray | None, seed: int | Sequence[int]
) -> np.ndarray:
    """Image weights, stratified by the set of classes each image's truth holds."""
    if isinstance(scores, SegmentationScores):
        strata = image_strata(scores.val)
    else:
        strata = np.array([sum(1 << int(k) for k in np.unique(g)) for g in scores.val.gt_labels])
    return image_weights(strata, n_resamples, groups=groups, seed=seed)


def _images(scores: TaskScores) -> int:
    return len(scores.val) if isinstance(scores, SegmentationScores) else len(scores.val.ids)


def _test(scores: TaskScores) -> TaskScores:
    """The test split in the place of validation (the resampling reads ``val``)."""
    assert scores.test is not None, "the caller checks that test scores exist"
    if isinstance(scores, SegmentationScores):
        return SegmentationScores(scores.test, None)
    return DetectionScores(scores.test, None)


def _found(truth: np.ndarray, true: float, predicted: float) -> dict[str, int]:
    """What the verdict's "can this be measured" reads: ``positives`` (images holding a
    foreground pixel or object, from ``truth`` ``(n, k)``), ``true_positive`` and
    ``predicted_positive`` (foreground pixels or kept detections)."""
    images = int((np.asarray(truth).sum(axis=1) > 0).sum())
    return {"positives": images, "true_positive": int(true), "predicted_positive": int(predicted)}


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return precision, recall, f1


def _pr_at_half(
    classes: Sequence[ClassMatches], n_truth: int, max_points: int = 200
) -> list[list[float]]:
    """``[[recall, precision, score], ...]`` at IoU 0.5 (``tp`` row 0) over every class's
    detections."""
    scores = np.concatenate([np.zeros(0), *(c.score for c in classes)])
    hits = np.concatenate([np.zeros(0, bool), *(c.tp[0] for c in classes)])
    if not n_truth or not len(scores):
        return []
    order = np.argsort(-scores, kind="stable")
    tps = np.cumsum(hits[order])
    precision, recall = tps / np.arange(1, len(tps) + 1), tps / n_truth
    keep = np.unique(np.linspace(0, len(tps) - 1, min(max_points, len(tps))).astype(int))
    ranked = scores[order]
    return [
        [round(float(recall[i]), 5), round(float(precision[i]), 5), round(float(ranked[i]), 6)]
        for i in keep
    ]


def _evaluation(
    *,
    precision: float,
    recall: float,
    f1: float,
    f1_macro: float,
    per_class: tuple[np.ndarray, ...],
    confusion: list[list[int]],
    task_metrics: dict[str, object],
    threshold: float | None = None,
    pr_curve: list[list[float]] | None = None,
) -> Evaluation:
    """An Evaluation whose score-based fields (PR-AUC, ROC-AUC, calibration) are NaN."""
    return Evaluation(
        threshold=threshold,
        precision=precision,
        recall=recall,
        f1=f1,
        f1_macro=f1_macro,
        pr_auc=NAN,
        roc_auc=NAN,
        ece=NAN,
        brier=NAN,
        precision_per_class=[float(v) for v in per_class[0]],
        recall_per_class=[float(v) for v in per_class[1]],
        f1_per_class=[float(v) for v in per_class[2]],
        confusion=confusion,
        f1_at_0_5=None,
        best_threshold=None,
        f1_at_best_threshold=None,
        f1_ci_low=NAN,
        f1_ci_high=NAN,
        pr_curve=pr_curve or [],
        task_metrics=task_metrics,
    )
