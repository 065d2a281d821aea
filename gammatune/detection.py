"""Object detection: the per-image payload a detector returns, checked, and COCO AP of it.

A detection payload covers each image of a split (validation, test) by id: the predicted boxes
(``xyxy`` pixels), their scores and class labels, and the ground-truth boxes and labels, either
in the payload or from a COCO-style annotation file (:func:`load_coco`). Labels are class
indices ``0..C-1``; a COCO file's categories become indices in the order of their ``id``.

An image with no objects is allowed (empty ``gt_boxes``): it adds no ground truth, and every
detection in it counts as a false positive of its class. Crowd annotations (``iscrowd: 1``) are
refused rather than half-supported; AP is COCO's "all areas, 100 detections per image and class"
figure. :func:`coco_metrics` computes AP@[.5:.95], AP50, AP75, AR@100 and per-class AP with
pycocotools (the kept library); :mod:`gammatune.detection_bootstrap` reproduces its AP for
resampled images.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gammatune.errors import DataError
from gammatune.tasks import PayloadError, SplitIds, check_mapping, ids_order, kept

PAYLOAD_KEYS = ("ids", "boxes", "scores", "labels", "gt_boxes", "gt_labels")


@dataclass(frozen=True, slots=True)
class Detections:
    """One split's detections and ground truth, per image, in ascending image id order.

    ``boxes[i]`` is ``(k_i, 4)`` xyxy, ``scores[i]`` and ``labels[i]`` ``(k_i,)``;
    ``gt_boxes[i]`` ``(g_i, 4)`` and ``gt_labels[i]`` ``(g_i,)``; ``n_classes`` classes.
    """

    ids: np.ndarray
    boxes: tuple[np.ndarray, ...]
    scores: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    gt_boxes: tuple[np.ndarray, ...]
    gt_labels: tuple[np.ndarray, ...]
    n_classes: int


@dataclass(frozen=True, slots=True)
class DetectionScores:
    """One trial's detections on both splits; ``test`` None where the trainer returned none."""

    val: Detections
    test: Detections | None


@dataclass(frozen=True, slots=True)
class CheckedDetections:
    """A checked detection payload: per-image boxes of both splits."""

    scores: DetectionScores
    weights: str | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """Ground truth per image id: ``{id: (boxes (g, 4) xyxy, labels (g,))}``, and class names."""

    images: Mapping[int, tuple[np.ndarray, np.ndarray]]
    class_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CocoMetrics:
    """COCO's figures for one split: AP@[.5:.95], AP50, AP75, AR@100 (all areas) and per-class
    AP@[.5:.95]; NaN for a class with no ground truth (all NaN if the split has none)."""

    ap: float
    ap50: float
    ap75: float
    ar100: float
    per_class_ap: tuple[float, ...]


def detection_payload(
    payload: Any, split: SplitIds, gt: GroundTruth | None = None
) -> CheckedDetections:
    """Check a detection payload, :func:`detection_part` per split (``test`` optional).

    Raises:
        PayloadError: Naming the field, the image and what is wrong.
    """
    check_mapping(payload)
    val = detection_part(payload.get("val"), "val", split.val_ids, split.n_classes, gt)
    test = (
        None
        if payload.get("test") is None
        else detection_part(payload["test"], "test", split.test_ids, split.n_classes, gt)
    )
    weights, extra = kept(payload)
    return CheckedDetections(DetectionScores(val, test), weights, extra)


def detection_part(
    part: Any, name: str, ids: np.ndarray, n_classes: int, gt: GroundTruth | None = None
) -> Detections:
    """Check one split of a detection payload and return it in ascending id order.

    ``part`` is ``{"ids": [...], "boxes": [...], "scores": [...], "labels": [...],
    "gt_boxes": [...], "gt_labels": [...]}``, each list aligned with ``ids``; ``gt_*`` may be
    left out when ``gt`` (from :func:`load_coco`) holds every id.

    Raises:
        PayloadError: One line naming the field, the image and what is wrong.
    """
    if not isinstance(part, Mapping) or "ids" not in part:
        raise PayloadError(f'{name} must be a mapping with "ids", "boxes", ...; got {part!r:.60}')
    unknown = sorted(set(part) - set(PAYLOAD_KEYS))
    if unknown:
        raise PayloadError(
            f"{name}.{unknown[0]} is not a detection key ({', '.join(PAYLOAD_KEYS)})"
        )
    given = np.asarray(part["ids"])
    order = ids_order(given, name, np.sort(np.asarray(ids)), "the split's image ids")
    has_gt = "gt_boxes" in part or "gt_labels" in part
    if not has_gt and gt is None:
        raise PayloadError(f"{name}: no gt_boxes/gt_labels and no COCO annotation file given")
    columns = {key: _listed(part, key, name, len(given)) for key in PAYLOAD_KEYS[1:4]}
    if has_gt:
        columns |= {key: _listed(part, key, name, len(given)) for key in PAYLOAD_KEYS[4:]}
    else:
        assert gt is not None
        absent = [int(i) for i in given if int(i) not in gt.images]
        if absent:
            raise PayloadError(
                f"{name}.ids: {len(absent)} images have no entry in the annotation file "
                f"(e.g. {absent[:3]}); list an image with no objects under 'images' alone"
            )
        columns["gt_boxes"] = [gt.images[int(i)][0] for i in given]
        columns["gt_labels"] = [gt.images[int(i)][1] for i in given]
    out: dict[str, list[np.ndarray]] = {key: [] for key in PAYLOAD_KEYS[1:]}
    for i in order:
        image = int(given[i])
        for prefix in ("", "gt_"):
            boxes = _boxes(columns[prefix + "boxes"][i], f"{name}.{prefix}boxes", image)
            labels = _labels(columns[prefix + "labels"][i], f"{name}.{prefix}labels", image)
            if len(labels) != len(boxes):
                raise PayloadError(
                    f"{name}.{prefix}labels of image {image}: {len(labels)} labels for "
                    f"{len(boxes)} boxes"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
                bad = labels[(labels < 0) | (labels >= n_classes)][0]
                raise PayloadError(
                    f"{name}.{prefix}labels of image {image}: label {bad} is outside the "
                    f"classes 0..{n_classes - 1}"
                )
            out[prefix + "boxes"].append(boxes)
            out[prefix + "labels"].append(labels)
        scores = _scores(columns["scores"][i], f"{name}.scores", image, len(out["boxes"][-1]))
        out["scores"].append(scores)
    return Detections(
        ids=given[order].astype(np.int64),
        boxes=tuple(out["boxes"]),
        scores=tuple(out["scores"]),
        labels=tuple(out["labels"]),
        gt_boxes=tuple(out["gt_boxes"]),
        gt_labels=tuple(out["gt_labels"]),
        n_classes=n_classes,
    )


def load_coco(path: str | Path) -> GroundTruth:
    """Read a COCO-style annotation file (``images``, ``annotations``, ``categories``).

    ``bbox`` is COCO's ``[x, y, width, height]``, turned into xyxy; category ids map to class
    indices in ascending id order. Every image listed has an entry, with no boxes if it has no
    annotations.

    Raises:
        DataError: The file is missing, not JSON, lacks a key, or has a bad annotation.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        images = [int(image["id"]) for image in raw["images"]]
        categories = sorted(raw["categories"], key=lambda c: int(c["id"]))
        annotations = raw["annotations"]
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not a COCO annotation file: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a COCO annotation file: missing or bad {exc}") from None
    index = {int(c["id"]): k for k, c in enumerate(categories)}
    found: dict[int, tuple[list[list[float]], list[int]]] = {i: ([], []) for i in images}
    for number, ann in enumerate(annotations):
        where = f"{path}: annotations[{number}]"
        try:
            image, category = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: missing or bad {exc}") from None
        if ann.get("iscrowd", 0):
            raise DataError(f"{where}: iscrowd 1 is not supported; drop crowd regions")
        if image not in found:
            raise DataError(f"{where}: image_id {image} is not under 'images'")
        if category not in index:
            raise DataError(f"{where}: category_id {category} is not under 'categories'")
        if not np.isfinite([x, y, w, h]).all() or w < 0 or h < 0:
            raise DataError(f"{where}: bbox {[x, y, w, h]} must be finite with width, height >= 0")
        found[image][0].append([x, y, x + w, y + h])
        found[image][1].append(index[category])
    return GroundTruth(
        images={
            i: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(lab, np.int64))
            for i, (b, lab) in found.items()
        },
        class_names=tuple(str(c.get("name", c["id"])) for c in categories),
    )


def coco_metrics(dets: Detections) -> CocoMetrics:
    """COCO AP@[.5:.95], AP50, AP75, AR@100 and per-class AP of a split, by pycocotools.

    Raises:
        ImportError: pycocotools is not installed (``pip install gammatune[detection]``).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results = to_coco(dets)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results) if results else COCO()
        if not results:  # loadRes refuses an empty list: an empty result set has AP 0
            coco_dt.dataset = {**gt, "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K), all areas, 100 dets
    per_class = []
    for k in range(dets.n_classes):
        values = precision[:, :, k]
        per_class.append(float(values[values > -1].mean()) if (values > -1).any() else np.nan)
    # pycocotools writes -1 where no class has ground truth: no AP, so NaN
    ap, ap50, ap75, ar100 = (float(v) if v > -1 else np.nan for v in evaluator.stats[[0, 1, 2, 8]])
    return CocoMetrics(ap, ap50, ap75, ar100, tuple(per_class))


def to_coco(dets: Detections) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The split as a COCO ground-truth dataset and a result list (bbox ``[x, y, w, h]``)."""
    images = [{"id": int(i)} for i in dets.ids]
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, image in enumerate(dets.ids):
        for box, label in zip(dets.gt_boxes[i], dets.gt_labels[i], strict=True):
            xywh = _xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(image),
                    "category_id": int(label) + 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(dets.boxes[i], dets.scores[i], dets.labels[i], strict=True):
            results.append(
                {
                    "image_id": int(image),
                    "category_id": int(label) + 1,
                    "bbox": _xywh(box),
                    "score": float(score),
                }
            )
    categories = [{"id": k + 1, "name": str(k)} for k in range(dets.n_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _listed(part: Mapping[str, Any], key: str, name: str, n: int) -> Sequence[Any]:
    value = part.get(key)
    if value is None or isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        raise PayloadError(
            f"{name}.{key} must be a list with one entry per image; got {value!r:.40}"
        )
    if len(value) != n:
        raise PayloadError(f"{name}.{key} has {len(value)} entries for {n} image ids")
    return value


def _boxes(value: Any, field: str, image: int) -> np.ndarray:
    try:
        boxes = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{field} of image {image} is not numbers: {exc}") from None
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise PayloadError(
            f"{field} of image {image} must have shape (k, 4) xyxy; got {boxes.shape}"
        )
    if not np.isfinite(boxes).all():
        raise PayloadError(
            f"{field} of image {image}: {int((~np.isfinite(boxes)).sum())} NaN or infinite "
            "coordinates"
        )
    flipped = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if flipped.any():
        row = int(np.flatnonzero(flipped)[0])
        raise PayloadError(
            f"{field} of image {image}: box {row} {boxes[row].tolist()} has x2 < x1 or y2 < y1 "
            "(boxes are x1, y1, x2, y2)"
        )
    return boxes


def _labels(value: Any, field: str, image: int) -> np.ndarray:
    labels = np.asarray(value)
    if labels.size == 0:
        return np.zeros(0, np.int64)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PayloadError(
            f"{field} of image {image} must be integers (k,); got {labels.dtype} {labels.shape}"
        )
    return labels.astype(np.int64)


def _scores(value: Any, field: str, image: int, n: int) -> np.ndarray:
    try:
        scores = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{field} of image {image} is not numbers: {exc}") from None
    if len(scores) != n:
        raise PayloadError(f"{field} of image {image}: {len(scores)} scores for {n} boxes")
    if not np.isfinite(scores).all():
        raise PayloadError(f"{field} of image {image}: NaN or infinite scores")
    return scores
