"""``FocalClassifier``: scikit-learn's estimator checks, and the tools that build on them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from gammatune import FocalClassifier

FAST = {"epochs": 4, "hidden": (8,), "batch_size": 64, "lr": 0.05, "min_epochs": 1, "patience": 2}
# Every check applies and passes: expected_failed_checks stays empty (add a check's name with
# its reason here only if one cannot apply).
EXPECTED_FAILED: dict[str, str] = {}


@parametrize_with_checks(
    [FocalClassifier(**FAST)], expected_failed_checks=lambda _estimator: EXPECTED_FAILED
)
def test_scikit_learn_estimator_checks(estimator: FocalClassifier, check) -> None:
    check(estimator)


def _imbalanced(n_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    weights = [0.85] if n_classes == 2 else [0.6, 0.3]
    return make_classification(
        n_samples=400, n_features=6, n_informative=4, n_classes=n_classes,
        weights=weights, random_state=0,
    )  # fmt: skip


def test_grid_search_over_gamma_refits_the_best() -> None:
    x, y = _imbalanced()
    search = GridSearchCV(FocalClassifier(**FAST), {"gamma": [0, 2]}, cv=2, scoring="f1")
    search.fit(x, y)
    assert set(search.cv_results_["param_gamma"]) == {0, 2}
    assert search.best_estimator_.gamma in (0, 2)
    assert search.best_estimator_.predict(x).shape == (400,)


def test_cross_val_score_in_a_pipeline_and_multiclass() -> None:
    x, y = _imbalanced(n_classes=3)
    pipeline = make_pipeline(StandardScaler(), FocalClassifier(**FAST))
    scores = cross_val_score(pipeline, x, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.6  # better than the majority class's share
    probs = pipeline.fit(x, y).predict_proba(x)
    assert probs.shape == (400, 3) and np.allclose(probs.sum(axis=1), 1)


def test_gamma_changes_the_model_and_the_seed_fixes_it() -> None:
    x, y = _imbalanced()
    base = FocalClassifier(**FAST)
    first, again = clone(base).fit(x, y), clone(base).fit(x, y)
    focal = clone(base).set_params(gamma=0.0, alpha=None).fit(x, y)
    np.testing.assert_array_equal(first.predict_proba(x), again.predict_proba(x))
    assert not np.allclose(first.predict_proba(x), focal.predict_proba(x))


@pytest.mark.parametrize("majority", ["ok", "clean"])  # after "fraud", then before it
def test_alpha_weights_the_minority_label_in_either_alphabetical_order(majority: str) -> None:
    x, y = _imbalanced()
    labels = np.where(y == 1, "fraud", majority)
    frauds = {}
    for alpha in (0.1, 0.9):
        model = FocalClassifier(**{**FAST, "alpha": alpha}).fit(x, labels)
        assert model.pos_label_ == "fraud" and list(model.classes_) == sorted(["fraud", majority])
        frauds[alpha] = int((model.predict(x) == "fraud").sum())
    assert frauds[0.9] > frauds[0.1]  # more weight on fraud finds more of it
    probs = model.predict_proba(x)
    fraud = list(model.classes_).index("fraud")
    assert np.allclose(probs.sum(axis=1), 1) and probs.shape == (400, 2)
    # the fraud column is the model's positive score, also when "fraud" sorts first
    assert np.corrcoef(probs[:, fraud], y)[0, 1] > 0.5
    model.threshold_ = 0.0  # everything reaches it: every row is the positive label
    assert set(model.predict(x)) == {"fraud"}


def test_an_explicit_pos_label_is_the_one_alpha_weights() -> None:
    x, y = _imbalanced()
    labels = np.where(y == 1, "fraud", "ok")
    model = FocalClassifier(**{**FAST, "alpha": 0.9, "pos_label": "ok"}).fit(x, labels)
    assert model.pos_label_ == "ok"
    default = FocalClassifier(**{**FAST, "alpha": 0.9}).fit(x, labels)
    assert (model.predict(x) == "fraud").sum() < (default.predict(x) == "fraud").sum()
    with pytest.raises(
        ValueError, match=r"pos_label must be one of the classes \['fraud', 'ok'\]"
    ):
        FocalClassifier(**{**FAST, "pos_label": "spam"}).fit(x, labels)


def test_repr_shows_gamma_and_alpha() -> None:
    assert repr(FocalClassifier()) == "FocalClassifier(gamma=2.0, alpha=0.25)"
    assert repr(FocalClassifier(alpha=None, epochs=9)) == (
        "FocalClassifier(gamma=2.0, alpha=None, epochs=9)"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"gamma": -1.0},
            "gamma must be >= 0, one such number per class, or a GammaSchedule; got -1.0",
        ),
        (
            {"alpha": 1.5},
            "alpha must be in [0, 1], one positive weight per class, or None; got 1.5",
        ),
        ({"validation_fraction": 0.0}, "validation_fraction must be in (0, 1); got 0.0"),
    ],
)
def test_invalid_parameters_name_themselves(params: dict, message: str) -> None:
    x, y = _imbalanced()
    with pytest.raises(ValueError, match=re.escape(message)):
        FocalClassifier(**{**FAST, **params}).fit(x, y)
