"""Metrics: agreement with scikit-learn, and invariances written once over the registry."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as sk

from gammatune.bootstrap import _paired_means, _stratified_weights, paired_bootstrap
from gammatune.metrics import (
    OBJECTIVES,
    Evaluation,
    average_precision,
    best_f1_threshold,
    bootstrap_f1,
    brier_score,
    confusion_matrix,
    evaluate,
    expected_calibration_error,
    objective_value,
    per_class_prf,
    roc_auc,
)

RNG = np.random.default_rng(0)
Y = (RNG.random(400) < 0.1).astype(int)
S = np.clip(RNG.random(400) * 0.6 + Y * 0.3, 0, 1).round(2)  # with ties
YC = RNG.integers(0, 4, 300)
SC = RNG.dirichlet(np.ones(4), 300)


def test_binary_agrees_with_sklearn() -> None:
    e = evaluate(Y, S, threshold=0.5)
    pred = S >= 0.5
    assert e.f1 == pytest.approx(sk.f1_score(Y, pred))
    assert e.precision == pytest.approx(sk.precision_score(Y, pred))
    assert e.recall == pytest.approx(sk.recall_score(Y, pred))
    assert e.f1_macro == pytest.approx(sk.f1_score(Y, pred, average="macro"))
    assert e.pr_auc == pytest.approx(sk.average_precision_score(Y, S))
    assert e.roc_auc == pytest.approx(sk.roc_auc_score(Y, S))
    assert e.confusion == sk.confusion_matrix(Y, pred).tolist()
    assert e.f1_ci_low <= e.f1 <= e.f1_ci_high


def test_multiclass_agrees_with_sklearn() -> None:
    e = evaluate(YC, SC)
    pred = SC.argmax(1)
    assert e.f1 == pytest.approx(sk.f1_score(YC, pred, average="macro"))
    assert e.f1_per_class == pytest.approx(sk.f1_score(YC, pred, average=None).tolist())
    assert e.pr_auc == pytest.approx(
        sk.average_precision_score(np.eye(4)[YC], SC, average="macro")
    )
    assert e.roc_auc == pytest.approx(sk.roc_auc_score(YC, SC, multi_class="ovr"))
    assert e.threshold is None and e.best_threshold is None


def test_best_threshold_maximizes_f1() -> None:
    threshold, f1 = best_f1_threshold(Y, S)
    assert f1 == pytest.approx(sk.f1_score(Y, threshold <= S))
    for t in np.unique(S):
        assert sk.f1_score(Y, t <= S) <= f1 + 1e-12


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_is_one_for_perfect_scores(objective: str) -> None:
    assert objective_value(evaluate(Y, Y * 0.8 + 0.1), objective) == pytest.approx(1.0)
    assert objective_value(evaluate(YC, np.eye(4)[YC] * 0.9 + 0.025), objective) == pytest.approx(
        1.0
    )


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_is_in_unit_interval_and_higher_is_better(objective: str) -> None:
    good = objective_value(evaluate(Y, S), objective)
    bad = objective_value(evaluate(Y, 1 - S), objective)
    assert 0 <= bad <= good <= 1


@pytest.mark.parametrize("name", ["pr_auc", "roc_auc"])
def test_ranking_metrics_ignore_monotone_rescaling(name: str) -> None:
    fn = average_precision if name == "pr_auc" else roc_auc
    assert fn(Y, S) == pytest.approx(fn(Y, S**3 * 0.5))


def test_no_positives_gives_zero_not_nan() -> None:
    assert average_precision(np.zeros(5, int), np.linspace(0, 1, 5)) == 0.0
    assert evaluate(np.zeros(5, int), np.linspace(0, 1, 5)).f1 == 0.0


def test_bootstrap_interval_matches_stratified_resampling_of_samples() -> None:
    """Drawing each confusion row from a multinomial is resampling each class, in distribution."""
    e = evaluate(Y, S, n_bootstrap=2000)
    rng, pred = np.random.default_rng(1), S >= 0.5
    strata = [np.flatnonzero(Y == 0), np.flatnonzero(Y == 1)]
    draws = np.hstack([idx[rng.integers(0, len(idx), (2000, len(idx)))] for idx in strata])
    low, high = np.percentile([sk.f1_score(Y[i], pred[i]) for i in draws], [2.5, 97.5])
    assert abs(e.f1_ci_low - low) < 0.03 and abs(e.f1_ci_high - high) < 0.03


def test_bootstrap_keeps_row_totals() -> None:
    """Rows that each predict one column resample to themselves, so every table and F1 is fixed.

    Unstratified resampling would move samples between rows and give a non-degenerate interval.
    """
    assert bootstrap_f1(np.array([[0, 90], [0, 10]])) == pytest.approx((20 / 110, 20 / 110))
    macro = np.mean(per_class_prf(np.array([[5, 0, 0], [0, 0, 7], [3, 0, 0]]))[2])
    interval = bootstrap_f1(np.array([[5, 0, 0], [0, 0, 7], [3, 0, 0]]))
    assert interval == pytest.approx((macro, macro))


def test_bootstrap_with_every_positive_found_varies_only_false_positives() -> None:
    """Row [0, 10] is kept, so recall is 1 and F1 = 20 / (20 + fp), fp ~ Binomial(100, 0.1)."""
    low, high = bootstrap_f1(np.array([[90, 10], [0, 10]]), seed=3)
    fp = np.random.default_rng(0).binomial(100, 0.1, 10**6)
    f1_low, f1_high = 20 / (20 + np.percentile(fp, [97.5, 2.5]))
    assert low == pytest.approx(f1_low, abs=0.02) and high == pytest.approx(f1_high, abs=0.02)


def test_bootstrap_interval_brackets_point_f1() -> None:
    matrix = np.array([[400, 40], [20, 60]])
    f1 = per_class_prf(matrix)[2][1]
    low, high = bootstrap_f1(matrix)
    assert 0 <= low < f1 < high <= 1
    assert bootstrap_f1(matrix, seed=1) != (low, high) and bootstrap_f1(matrix) == (low, high)


def test_bootstrap_defaults_to_1000_resamples() -> None:
    assert inspect.signature(bootstrap_f1).parameters["n_bootstrap"].default == 1000
    assert inspect.signature(evaluate).parameters["n_bootstrap"].default == 1000


def test_per_class_prf_batches_over_leading_axes() -> None:
    tables = np.random.default_rng(0).integers(0, 9, (5, 3, 3))
    batched = per_class_prf(tables)
    for i, table in enumerate(tables):
        for got, expected in zip(batched, per_class_prf(table), strict=True):
            assert got[i] == pytest.approx(expected)


def test_ece_hand_computed() -> None:
    y, s = np.array([0, 1, 1, 0]), np.array([0.1, 0.75, 0.62, 0.7])
    # confidences 0.9, 0.75, 0.62, 0.7 in four bins, correct 1, 1, 1, 0
    assert expected_calibration_error(y, s) == pytest.approx((0.1 + 0.25 + 0.38 + 0.7) / 4)
    # two bins: all four confidences share [0.5, 1], so the gaps cancel inside it
    assert expected_calibration_error(y, s, n_bins=2) == pytest.approx(abs(0.75 - 0.7425))
    multiclass = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])  # top labels 0 and 1
    assert expected_calibration_error(np.array([0, 0]), multiclass) == pytest.approx(0.45)


def test_ece_puts_confidence_one_in_the_last_bin() -> None:
    ece = expected_calibration_error(np.array([1, 0, 0]), np.array([1.0, 0.0, 1.0]))
    assert ece == pytest.approx(1 / 3)


def test_ece_binary_equals_its_two_column_form() -> None:
    s = np.random.default_rng(2).random(len(Y))  # no score is exactly 0.5
    two_columns = np.stack([1 - s, s], axis=1)
    assert expected_calibration_error(Y, s) == pytest.approx(
        expected_calibration_error(Y, two_columns)
    )


def test_ece_separates_calibrated_from_overconfident() -> None:
    rng = np.random.default_rng(0)
    s = rng.random(200_000)
    calibrated = (rng.random(s.size) < s).astype(int)
    overconfident = (rng.random(s.size) < 0.5 + (s - 0.5) * 0.5).astype(int)
    assert expected_calibration_error(calibrated, s) < 0.01
    assert expected_calibration_error(overconfident, s) > 0.05


def test_brier_hand_computed_and_agrees_with_sklearn() -> None:
    assert brier_score(np.array([0, 1]), np.array([0.2, 0.6])) == pytest.approx(0.1)
    assert brier_score(np.array([0]), np.array([[0.7, 0.2, 0.1]])) == pytest.approx(0.14)
    assert brier_score(Y, S) == pytest.approx(sk.brier_score_loss(Y, S))
    assert brier_score(YC, SC) == pytest.approx(sk.brier_score_loss(YC, SC))


def test_binary_brier_is_half_its_two_column_form() -> None:
    assert 2 * brier_score(Y, S) == pytest.approx(brier_score(Y, np.stack([1 - S, S], axis=1)))


def test_calibration_of_empty_input_is_nan() -> None:
    empty = np.array([], dtype=int)
    assert np.isnan(expected_calibration_error(empty, np.array([])))
    assert np.isnan(expected_calibration_error(empty, np.zeros((0, 3))))
    assert np.isnan(brier_score(empty, np.array([])))


def test_evaluation_carries_calibration_after_roc_auc() -> None:
    names = [field.name for field in dataclasses.fields(Evaluation)]
    assert names[names.index("roc_auc") + 1 : names.index("roc_auc") + 3] == ["ece", "brier"]
    for y, s in [(Y, S), (YC, SC)]:
        e = evaluate(y, s)
        assert e.ece == expected_calibration_error(y, s) and e.brier == brier_score(y, s)


RP = np.random.default_rng(7)
YP = (RP.random(300) < 0.2).astype(int)
GOOD = np.clip(RP.random((3, 300)) * 0.7 + YP * 0.3, 0, 1).round(2)  # (R, N), with ties
NOISE = RP.random((3, 300)).round(2)
PAIRED_METRICS = ["f1", "precision", "recall", "pr_auc"]


def _reference(metric: str, y: np.ndarray, s: np.ndarray, threshold: float) -> float:
    if metric == "pr_auc":
        return average_precision(y, s)
    precision, recall, f1 = per_class_prf(confusion_matrix(y, s >= threshold, 2))
    return float({"precision": precision, "recall": recall, "f1": f1}[metric][1])


@pytest.mark.parametrize("metric", PAIRED_METRICS)
def test_paired_identical_models_differ_by_exactly_zero(metric: str) -> None:
    d = paired_bootstrap(YP, GOOD, GOOD, metric=metric, n_resamples=300)
    assert (d.difference, d.low, d.high, d.p_below_zero) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("metric", PAIRED_METRICS)
def test_paired_values_are_the_module_metrics_on_the_full_sample(metric: str) -> None:
    d = paired_bootstrap(YP, GOOD[0], NOISE[0], metric=metric, threshold=0.45, n_resamples=10)
    assert d.value_a == pytest.approx(_reference(metric, YP, GOOD[0], 0.45))
    assert d.value_b == pytest.approx(_reference(metric, YP, NOISE[0], 0.45))
    assert d.difference == pytest.approx(d.value_a - d.value_b)
    assert d.metric == metric and d.n_resamples == 10


def test_paired_values_average_the_repeats_with_their_own_thresholds() -> None:
    t_a, t_b = np.array([0.4, 0.5, 0.6]), 0.3
    d = paired_bootstrap(YP, GOOD, NOISE, threshold=(t_a, t_b), n_resamples=10)
    assert d.value_a == pytest.approx(
        np.mean([_reference("f1", YP, s, t) for s, t in zip(GOOD, t_a, strict=True)])
    )
    assert d.value_b == pytest.approx(np.mean([_reference("f1", YP, s, t_b) for s in NOISE]))


@pytest.mark.parametrize("metric", PAIRED_METRICS)
def test_count_weights_equal_resampling_the_samples(metric: str) -> None:
    """A weight row is a resample: the metric on the repeated samples, ties and all."""
    y = YP.astype(np.float64)
    scores = np.stack([GOOD[0], NOISE[0]])
    model = (scores, np.argsort(-scores, axis=1, kind="stable"), np.array([0.45, 0.45]))
    weights = _stratified_weights(y, 20, np.random.default_rng(0))
    means = _paired_means(weights, y, model, metric)  # (B, 2)
    for row, got in zip(weights, means, strict=True):
        idx = np.repeat(np.arange(len(y)), row.astype(int))
        expected = [_reference(metric, YP[idx], s[idx], 0.45) for s in scores]
        assert got == pytest.approx(expected)


def test_paired_bootstrap_mean_of_pr_auc_difference_is_near_the_point_difference() -> None:
    y = YP.astype(np.float64)
    scores = np.stack([GOOD[0], NOISE[0] * 0.5 + GOOD[0] * 0.5])
    model = (scores, np.argsort(-scores, axis=1, kind="stable"), np.array([0.5, 0.5]))
    means = _paired_means(
        _stratified_weights(y, 4000, np.random.default_rng(1)), y, model, "pr_auc"
    )
    d = paired_bootstrap(YP, scores[0], scores[1], metric="pr_auc")
    resampled = means[:, 0] - means[:, 1]
    assert abs(resampled.mean() - d.difference) < 0.1 * resampled.std()
    assert d.low < d.difference < d.high


@pytest.mark.parametrize("metric", PAIRED_METRICS)
def test_paired_bootstrap_finds_the_clearly_better_model(metric: str) -> None:
    better = paired_bootstrap(YP, GOOD, NOISE, metric=metric, n_resamples=500)
    worse = paired_bootstrap(YP, NOISE, GOOD, metric=metric, n_resamples=500)
    assert better.low > 0 and better.p_below_zero == 0.0
    assert worse.high < 0 and worse.p_below_zero == 1.0
    assert better.difference == pytest.approx(-worse.difference)


def test_stratified_weights_keep_every_class_count() -> None:
    y = YP.astype(np.float64)
    weights = _stratified_weights(y, 500, np.random.default_rng(0))
    assert weights.shape == (500, len(y)) and (weights == weights.round()).all()
    assert (weights @ y == y.sum()).all() and (weights @ (1 - y) == (1 - y).sum()).all()
    assert (weights != 1).any(axis=1).all()  # every row is a real resample, not the sample
    assert abs(weights.mean(axis=0) - 1).max() < 0.3  # each sample drawn once on average


def test_paired_bootstrap_is_deterministic_in_seed() -> None:
    first = paired_bootstrap(YP, GOOD, NOISE * 0.5 + GOOD * 0.5, n_resamples=200, seed=4)
    assert first == paired_bootstrap(YP, GOOD, NOISE * 0.5 + GOOD * 0.5, n_resamples=200, seed=4)
    other = paired_bootstrap(YP, GOOD, NOISE * 0.5 + GOOD * 0.5, n_resamples=200, seed=5)
    assert (other.low, other.high) != (first.low, first.high)
    assert (other.value_a, other.difference) == (first.value_a, first.difference)


def test_paired_bootstrap_takes_one_dimensional_scores_as_one_repeat() -> None:
    flat = paired_bootstrap(YP, GOOD[1], NOISE[1], metric="pr_auc", n_resamples=200)
    assert flat == paired_bootstrap(YP, GOOD[1:2], NOISE[1:2], metric="pr_auc", n_resamples=200)


def test_paired_bootstrap_chunks_large_inputs() -> None:
    """At 2**19 samples a chunk holds 16 resamples, so 40 take three chunks."""
    rng = np.random.default_rng(0)
    y = (rng.random(2**19) < 0.1).astype(int)
    d = paired_bootstrap(y, rng.random(2**19) * 0.5 + y * 0.5, rng.random(2**19), n_resamples=40)
    assert d.low > 0 and d.p_below_zero == 0.0 and d.n_resamples == 40


@pytest.mark.parametrize(
    ("targets", "scores_a", "scores_b", "kwargs", "message"),
    [
        (YP, GOOD, NOISE[:2], {}, "scores must be binary (N,) or (R, N), N = 300"),
        (YP[:299], GOOD, NOISE, {}, "scores must be binary (N,) or (R, N), N = 299"),
        (YP, GOOD.T, NOISE.T, {}, "scores must be"),
        (YP, np.zeros((2, 3, 300)), np.zeros((2, 3, 300)), {}, "scores must be"),
        (RP.integers(0, 3, 300), SC[:, 0], SC[:, 1], {}, "binary only"),
        (YP, SC[:300], SC[:300], {}, "scores must be"),
        (YP, GOOD, NOISE, {"metric": "roc_auc"}, "metric must be in"),
        (YP, GOOD, NOISE, {"n_resamples": 0}, "n_resamples must be > 0; got 0"),
        (YP, GOOD, NOISE, {"threshold": (0.5, 0.5, 0.5)}, "unpack"),
        (YP, GOOD, NOISE, {"threshold": np.array([0.5, 0.5])}, "broadcast"),
    ],
)
def test_paired_bootstrap_rejects_bad_input(
    targets: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        paired_bootstrap(targets, scores_a, scores_b, **kwargs)


def test_kept_resamples_give_what_a_fresh_draw_gives() -> None:
    """The verdict's comparisons share one sample and seed: the resamples kept from the first
    must be exactly those a fresh draw makes (same intervals, same decisions)."""
    import gammatune.bootstrap as bootstrap

    rng = np.random.default_rng(3)
    y = (rng.random(600) < 0.1).astype(int)
    a, b, c = (rng.random((2, 600)) for _ in range(3))
    bootstrap._KEPT.clear()
    first = bootstrap.resampled_differences(y, a, b, n_resamples=300, seed=[0, 1])[2]
    kept = bootstrap.resampled_differences(y, a, c, n_resamples=300, seed=[0, 1])[2]
    assert len(bootstrap._KEPT) == 1
    bootstrap._KEPT.clear()
    fresh = bootstrap.resampled_differences(y, a, c, n_resamples=300, seed=[0, 1])[2]
    assert np.array_equal(kept, fresh) and not np.array_equal(first, fresh)
    other_seed = bootstrap.resampled_differences(y, a, c, n_resamples=300, seed=[0, 2])[2]
    assert not np.array_equal(other_seed, fresh)
