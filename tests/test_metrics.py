"""Metrics: agreement with scikit-learn, and invariances written once over the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as sk

from gammatune.metrics import (
    OBJECTIVES,
    average_precision,
    best_f1_threshold,
    evaluate,
    objective_value,
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


def test_binary_attrs_flatten_confusion_counts() -> None:
    attrs = evaluate(Y, S).to_attrs("val")
    (tn, fp), (fn, tp) = sk.confusion_matrix(Y, S >= 0.5)
    fields = attrs["val"]
    assert (fields["tn"], fields["fp"], fields["fn"], fields["tp"]) == (tn, fp, fn, tp)
    assert attrs["val_f1"] == fields["f1"] and attrs["val_pr_auc"] == fields["pr_auc"]
    json.dumps(attrs)  # JSON-safe, as Optuna's storage needs


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


def test_bootstrap_interval_matches_resampling_samples() -> None:
    """Drawing confusion cells from a multinomial is resampling the samples, in distribution."""
    e = evaluate(Y, S, n_bootstrap=2000)
    rng = np.random.default_rng(1)
    pred = S >= 0.5
    values = [sk.f1_score(Y[i], pred[i]) for i in rng.integers(0, len(Y), size=(2000, len(Y)))]
    low, high = np.percentile(values, [2.5, 97.5])
    assert abs(e.f1_ci_low - low) < 0.03 and abs(e.f1_ci_high - high) < 0.03
