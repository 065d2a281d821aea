"""A few validation images with two detectors' boxes drawn: cross-entropy's and the
recommendation's, on the images where their errors differ most.

Each model's boxes are those scoring at least its own F1-best threshold on the validation
images at IoU 0.5 (focal loss lowers confidences, so one fixed threshold would hide one model's
boxes). A box is a hit when it takes a same-class ground-truth box of IoU >= 0.5, in descending
score order (COCO's greedy matching at one threshold); an image's errors are its false boxes
plus its missed objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gammatune.report._images import ImageSource
from gammatune.report._plots import _BEST, _figure
from gammatune.report._summary import SummaryRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gammatune.detection import Detections

_HIT, _FALSE, _TRUTH = "#2ca02c", "#d62728", "#ffdd00"


def box_iou(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of each box ``(k, 4)`` with each true box ``(g, 4)``, xyxy: ``(k, g)``."""
    low = np.maximum(boxes[:, None, :2], truth[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], truth[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    true_area = np.prod(truth[:, 2:] - truth[:, :2], axis=1)
    union = area[:, None] + true_area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def hits(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    *,
    iou: float = 0.5,
) -> np.ndarray:
    """Whether each box (in the given order) takes a free same-class true box of IoU >= ``iou``,
    boxes visited in descending score order, each taking the free true box of highest IoU."""
    hit = np.zeros(len(boxes), dtype=bool)
    if not len(boxes) or not len(gt_boxes):
        return hit
    overlaps = box_iou(np.asarray(boxes, float), np.asarray(gt_boxes, float))
    free = np.ones(len(gt_boxes), dtype=bool)
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        fits = free & (np.asarray(gt_labels) == labels[d]) & (overlaps[d] >= iou)
        if fits.any():
            j = int(np.argmax(np.where(fits, overlaps[d], -1.0)))
            free[j], hit[d] = False, True
    return hit


@dataclass(frozen=True, slots=True)
class Scored:
    """One model's validation detections with their hits and its F1-best threshold."""

    detections: Detections
    hits: tuple[np.ndarray, ...]
    threshold: float

    def errors(self, index: int) -> int:
        """False boxes plus missed objects of image ``index`` at the threshold."""
        shown = self.detections.scores[index] >= self.threshold
        found = int((self.hits[index] & shown).sum())
        return (
            int((shown & ~self.hits[index]).sum()) + len(self.detections.gt_boxes[index]) - found
        )


def score(detections: Detections) -> Scored:
    """Match each image's boxes once, and pick the score threshold of the best F1 at IoU 0.5."""
    d = detections
    matched = tuple(
        hits(d.boxes[i], d.scores[i], d.labels[i], d.gt_boxes[i], d.gt_labels[i])
        for i in range(len(d.ids))
    )
    scores = np.concatenate([np.zeros(0), *(np.asarray(s, float) for s in d.scores)])
    flags = np.concatenate([np.zeros(0, bool), *matched])
    if not len(scores):
        return Scored(d, matched, float("inf"))
    order = np.argsort(-scores, kind="stable")
    n_true = sum(len(g) for g in d.gt_boxes)
    f1 = 2 * np.cumsum(flags[order]) / (np.arange(1, len(order) + 1) + n_true)
    return Scored(d, matched, float(scores[order][int(np.argmax(f1))]))


def pick_images(first: Scored, second: Scored, n_images: int = 4) -> list[int]:
    """Positions (in ``first``'s id order) of the images whose errors differ most between the
    two models (then the most errors, then the lowest id); both must hold the same ids."""
    keys = [
        (-abs(first.errors(i) - second.errors(i)), -(first.errors(i) + second.errors(i)), i)
        for i in range(len(first.detections.ids))
    ]
    return [i for *_, i in sorted(keys)[:n_images]]


def detections_figure(
    pair: Sequence[tuple[SummaryRow, Detections]],
    images: ImageSource,
    class_names: Sequence[str],
    *,
    n_images: int = 4,
) -> Figure:
    """One row per model (cross-entropy, then the recommendation), one column per picked
    validation image: true boxes dashed yellow, hits green, false boxes red.

    Raises:
        ImageMissing: A picked image cannot be read.
    """
    scored = [score(dets) for _, dets in pair]
    picked = pick_images(scored[0], scored[-1], n_images)
    pictures = [images.image(int(scored[0].detections.ids[i])) for i in picked]
    figure, axes = _figure(2.6 * len(picked) + 0.6, 2.9 * len(pair), ncols=len(picked),
                           nrows=len(pair))  # fmt: skip
    for r, ((row, _), model) in enumerate(zip(pair, scored, strict=True)):
        for c, (i, picture) in enumerate(zip(picked, pictures, strict=True)):
            ax = axes[r][c]
            ax.imshow(picture, cmap="gray", interpolation="nearest")
            shown = _draw(ax, model, i, class_names)
            image_id = int(model.detections.ids[i])
            wrong = model.errors(i)
            boxes, errors = _counted(shown, "box", "boxes"), _counted(wrong, "error", "errors")
            ax.set_title(f"image {image_id}: {boxes}, {errors}", fontsize=8)
            ax.set(xticks=[], yticks=[])
        axes[r][0].set_ylabel(
            f"{row.label}\ngamma {row.gamma:g}\nboxes >= {model.threshold:.2f}",
            fontsize=8, color=_BEST if r == len(pair) - 1 else "black",
        )  # fmt: skip
    return figure


def _counted(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _draw(ax: Any, model: Scored, i: int, class_names: Sequence[str]) -> int:
    from matplotlib.patches import Rectangle

    d = model.detections
    for x1, y1, x2, y2 in np.asarray(d.gt_boxes[i], float).reshape(-1, 4):
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                               edgecolor=_TRUTH, lw=1.2, ls="--"))  # fmt: skip
    shown = np.flatnonzero(np.asarray(d.scores[i]) >= model.threshold)
    for k in shown:
        x1, y1, x2, y2 = np.asarray(d.boxes[i][k], float)
        color = _HIT if model.hits[i][k] else _FALSE
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                               edgecolor=color, lw=1.4))  # fmt: skip
        label = int(d.labels[i][k])
        name = class_names[label] if label < len(class_names) else str(label)
        ax.text(x1 - 0.5, y1 - 0.8, f"{name[:4]} {d.scores[i][k]:.2f}", color=color,
                fontsize=6, va="bottom")  # fmt: skip
    return len(shown)
