"""Segmentation metrics from per-image counts, against a hand computation and scikit-learn on
flattened pixels; the empty-mask rule; the image bootstrap resamples images, not pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from gammatune.segmentation import (
    evaluate_segmentation,
    image_strata,
    image_weights,
    paired_image_bootstrap,
    resampled_dice_differences,
    weighted_dice,
)


def counts_of(masks: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, C, 4) tp, fp, fn, tn per image and class from integer masks (n, H, W)."""
    out = np.zeros((len(masks), n_classes, 4), dtype=np.int64)
    for c in range(n_classes):
        truth, predicted = masks == c, predictions == c
        for k, cells in enumerate(
            (truth & predicted, ~truth & predicted, truth & ~predicted, ~truth & ~predicted)
        ):
            out[:, c, k] = cells.reshape(len(masks), -1).sum(axis=1)
    return out


def test_hand_computation() -> None:
    # image 0: class 1 tp 2, fp 1, fn 1 -> Dice 4/6, IoU 2/4; image 1 holds no class 1 but 3
    # predicted: NaN (left out of the per-image mean), counted in the pooled figures.
    counts = np.array([[[5, 1, 1, 2], [2, 1, 1, 5]], [[6, 0, 3, 0], [0, 3, 0, 6]]])
    e = evaluate_segmentation(counts)
    assert e.dice == pytest.approx(4 / 6)
    assert e.iou == pytest.approx(2 / 4)
    assert e.dice_micro == pytest.approx(4 / (4 + 4 + 1))
    assert e.iou_micro == pytest.approx(2 / (2 + 4 + 1))
    assert e.precision == pytest.approx(2 / 6) and e.recall == pytest.approx(2 / 3)
    assert e.f1 == pytest.approx(e.dice_micro)  # one foreground class: F1 is pooled Dice
    assert e.images_per_class == [2, 1]
    assert e.confusion[1] == [[11, 4], [1, 2]]
    assert e.dice_per_class[0] == pytest.approx(np.mean([10 / 12, 12 / 15]))


def test_class_absent_everywhere_is_left_out() -> None:
    counts = np.zeros((2, 3, 4), dtype=int)
    counts[:, 0] = [10, 0, 0, 0]
    counts[:, 1] = [1, 0, 1, 8]  # class 1 Dice 2/3 in each image; class 2 never in a mask
    counts[0, 2] = [0, 2, 0, 8]
    e = evaluate_segmentation(counts)
    assert math.isnan(e.dice_per_class[2]) and e.dice == pytest.approx(2 / 3)
    assert e.dice_micro == pytest.approx(2 / 3)  # class 2 pooled: tp + fn = 0 -> NaN, left out


def test_against_scikit_learn_on_flattened_pixels() -> None:
    rng = np.random.default_rng(0)
    masks = rng.choice(3, size=(6, 8, 8), p=[0.8, 0.15, 0.05])
    predictions = np.where(rng.random(masks.shape) < 0.8, masks, rng.integers(0, 3, masks.shape))
    e = evaluate_segmentation(counts_of(masks, predictions, 3))
    labels = [0, 1, 2]
    flat = masks.ravel(), predictions.ravel()
    np.testing.assert_allclose(
        e.dice_micro_per_class, f1_score(*flat, labels=labels, average=None)
    )
    assert e.iou_micro == pytest.approx(jaccard_score(*flat, labels=[1, 2], average="macro"))
    per_image = [
        [f1_score(m.ravel() == c, p.ravel() == c, zero_division=0) for c in (1, 2)]
        for m, p in zip(masks, predictions, strict=True)
    ]
    holds = np.array([[(m == c).any() for c in (1, 2)] for m in masks])
    expected = [np.mean(np.array(per_image)[holds[:, k], k]) for k in range(2)]
    np.testing.assert_allclose(e.dice_per_class[1:], expected)
    assert e.dice == pytest.approx(np.mean(expected))


def test_image_weights_keep_strata_and_groups() -> None:
    strata = np.array([0, 1, 1, 1, 3, 3])
    w = image_weights(strata, 50, seed=1)
    assert w.shape == (50, 6)
    for s in (0, 1, 3):
        assert (w[:, strata == s].sum(axis=1) == (strata == s).sum()).all()
    groups = np.array([7, 7, 8, 8, 9, 9])
    g = image_weights(np.zeros(6, dtype=int), 50, groups=groups, seed=1)
    assert (g[:, 0] == g[:, 1]).all() and (g[:, 2] == g[:, 3]).all() and (g.sum(axis=1) == 6).all()


def test_strata_are_the_classes_an_image_holds() -> None:
    counts = np.zeros((3, 3, 4), dtype=int)
    counts[0, 1, 0], counts[1, 2, 2], counts[2, 1, 2], counts[2, 2, 0] = 1, 1, 1, 1
    assert image_strata(counts).tolist() == [1, 2, 3]


def test_weighted_dice_equals_dice_on_repeated_images() -> None:
    rng = np.random.default_rng(3)
    masks = rng.choice(2, size=(5, 6, 6), p=[0.7, 0.3])
    counts = counts_of(masks, np.where(rng.random(masks.shape) < 0.7, masks, 1 - masks), 2)
    w = np.array([[2, 0, 1, 1, 1]])
    repeated = np.repeat(counts, w[0], axis=0)
    assert weighted_dice(counts, w)[0] == pytest.approx(evaluate_segmentation(repeated).dice)


def test_bootstrap_resamples_images_not_pixels() -> None:
    # A beats B by a lot on one image of ten and ties elsewhere: 4,000 pixels differ, but one
    # image in ten cannot make a sure difference. A pixel bootstrap would call it certain.
    n, pixels = 10, 1000
    a = np.tile(np.array([[pixels, 0, 0, 0], [500, 100, 100, 300]]), (n, 1, 1))
    b = a.copy()
    b[0, 1] = [100, 500, 500, 300]  # same mask (tp + fn = 600), much worse prediction
    result = paired_image_bootstrap(a, b, n_resamples=2000, seed=0)
    assert result.difference == pytest.approx((500 / 600 - 100 / 600) / n)
    assert result.low == pytest.approx(0.0) and result.high > result.difference
    assert 0.2 < result.p_below_zero < 0.5  # image 0 left out of ~35% of resamples
    repeats = paired_image_bootstrap(np.stack([a, a]), np.stack([b, a]), n_resamples=200)
    assert repeats.difference == pytest.approx(result.difference / 2)


def test_bootstrap_refuses_other_masks() -> None:
    a = np.tile(np.array([[10, 0, 0, 0], [5, 1, 1, 3]]), (3, 1, 1))
    b = a.copy()
    b[0, 1] = [4, 1, 0, 5]
    with pytest.raises(ValueError, match="same masks"):
        paired_image_bootstrap(a, b)


def test_bootstrap_draws_whole_groups() -> None:
    # The better image's group (five images of ten) is left out of a resample of two groups
    # one time in four; drawn as single images, image 0 is left out ~35% of the time.
    a = np.tile(np.array([[1000, 0, 0, 0], [500, 100, 100, 300]]), (10, 1, 1))
    b = a.copy()
    b[0, 1] = [100, 500, 500, 300]
    groups = np.repeat([3, 8], 5)
    _, _, differences = resampled_dice_differences(a, b, groups=groups, n_resamples=4000)
    assert np.mean(differences <= 0) == pytest.approx(0.25, abs=0.03)
    assert set(np.round(differences * 10 / (400 / 600), 6)) <= {0.0, 1.0, 2.0}  # 0, 1, 2 copies
