"""The fast resampled AP against pycocotools, and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from gammatune.detection import Detections, coco_metrics
from gammatune.detection_bootstrap import match, paired_bootstrap, resampled_ap, summary

pytest.importorskip("pycocotools")


def random_detections(seed: int, n_images: int = 12, n_classes: int = 4) -> Detections:
    """Jittered copies of the ground truth plus false positives; some images empty, class
    ``n_classes - 1`` never detected, class ``n_classes - 2`` never in the ground truth of
    half the images; coarse coordinates so that IoU ties and near-threshold cases occur."""
    rng = np.random.default_rng(seed)
    boxes, scores, labels, gt_boxes, gt_labels = [], [], [], [], []
    for i in range(n_images):
        g = 0 if i % 5 == 0 else int(rng.integers(1, 6))
        xy = rng.integers(0, 40, (g, 2)).astype(float)
        gt = np.hstack([xy, xy + rng.integers(2, 12, (g, 2))])
        gl = rng.integers(0, n_classes, g)
        keep = rng.random(g) < 0.8
        jitter = rng.integers(-1, 2, (int(keep.sum()), 4)).astype(float)
        pred = gt[keep] + jitter
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2])
        pl = gl[keep].copy()
        f = int(rng.integers(0, 4))
        fxy = rng.integers(0, 40, (f, 2)).astype(float)
        pred = np.vstack([pred, np.hstack([fxy, fxy + rng.integers(1, 10, (f, 2))])])
        pl = np.concatenate([pl, rng.integers(0, n_classes, f)])
        pl[pl == n_classes - 1] = 0
        boxes.append(pred)
        labels.append(pl)
        scores.append(np.round(rng.random(len(pred)), 2))  # rounded: ties across images
        gt_boxes.append(gt)
        gt_labels.append(gl)
    return Detections(
        ids=np.arange(n_images) * 3 + 1,
        boxes=tuple(boxes),
        scores=tuple(scores),
        labels=tuple(labels),
        gt_boxes=tuple(gt_boxes),
        gt_labels=tuple(gt_labels),
        n_classes=n_classes,
    )


@pytest.mark.parametrize("seed", range(6))
def test_unit_weights_equal_pycocotools(seed: int) -> None:
    dets = random_detections(seed)
    expected = coco_metrics(dets)
    per = resampled_ap(match(dets), np.ones((1, len(dets.ids))))
    got = summary(per)
    assert got["ap"][0] == pytest.approx(expected.ap, abs=1e-6)
    assert got["ap50"][0] == pytest.approx(expected.ap50, abs=1e-6)
    assert got["ap75"][0] == pytest.approx(expected.ap75, abs=1e-6)
    per_class = np.nanmean(per[0], axis=0) if np.isfinite(per[0]).any() else per[0, 0]
    np.testing.assert_allclose(per_class, expected.per_class_ap, atol=1e-6, equal_nan=True)
    assert 0 < expected.ap < 1  # the case is not degenerate


@pytest.mark.parametrize("seed", range(3))
def test_multiplicities_equal_pycocotools_on_duplicated_images(seed: int) -> None:
    dets = random_detections(seed, n_images=10)
    counts = np.random.default_rng(seed + 100).integers(0, 4, len(dets.ids))
    picked = np.repeat(np.arange(len(dets.ids)), counts)
    copy = Detections(
        ids=np.arange(len(picked)),
        boxes=tuple(dets.boxes[i] for i in picked),
        scores=tuple(dets.scores[i] for i in picked),
        labels=tuple(dets.labels[i] for i in picked),
        gt_boxes=tuple(dets.gt_boxes[i] for i in picked),
        gt_labels=tuple(dets.gt_labels[i] for i in picked),
        n_classes=dets.n_classes,
    )
    expected = coco_metrics(copy)
    got = summary(resampled_ap(match(dets), counts[None]))
    assert got["ap"][0] == pytest.approx(expected.ap, abs=1e-6)


def test_no_detections_at_all_is_zero_ap() -> None:
    dets = random_detections(1)
    empty = Detections(
        dets.ids,
        tuple(np.zeros((0, 4)) for _ in dets.ids),
        tuple(np.zeros(0) for _ in dets.ids),
        tuple(np.zeros(0, np.int64) for _ in dets.ids),
        dets.gt_boxes,
        dets.gt_labels,
        dets.n_classes,
    )
    assert coco_metrics(empty).ap == 0.0
    assert summary(resampled_ap(match(empty), np.ones((1, len(dets.ids)))))["ap"][0] == 0.0


def test_paired_bootstrap_uses_the_same_resamples() -> None:
    dets = random_detections(4, n_images=30)
    same = paired_bootstrap(match(dets), match(dets), n_resamples=50, seed=1)
    assert same.shape == (50,) and np.all(same == 0)
    worse = Detections(
        dets.ids,
        tuple(b + np.array([2.0, 0.0, 2.0, 0.0]) for b in dets.boxes),  # shifted: lower IoU
        dets.scores,
        dets.labels,
        dets.gt_boxes,
        dets.gt_labels,
        dets.n_classes,
    )
    diff = paired_bootstrap(match(dets), match(worse), n_resamples=200, seed=1)
    point = coco_metrics(dets).ap - coco_metrics(worse).ap
    assert point > 0 and np.mean(diff > 0) > 0.9
    assert abs(np.median(diff) - point) < 0.05
    again = paired_bootstrap(match(dets), match(worse), n_resamples=200, seed=1)
    np.testing.assert_array_equal(diff, again)


def test_weights_of_the_wrong_length_are_refused() -> None:
    dets = random_detections(0)
    with pytest.raises(ValueError, match="weights must be"):
        resampled_ap(match(dets), np.ones((2, 3)))


def test_chunks_of_resamples_agree_and_models_must_share_images() -> None:
    dets = random_detections(2)
    matches = match(dets)
    counts = np.random.default_rng(0).integers(0, 3, (250, len(dets.ids)))  # 3 chunks
    whole = resampled_ap(matches, counts)
    np.testing.assert_array_equal(whole[120:130], resampled_ap(matches, counts[120:130]))
    with pytest.raises(ValueError, match="same images and classes"):
        paired_bootstrap(matches, match(random_detections(2, n_images=5)))
