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


def test_string_labels_keep_their_order_and_threshold() -> None:
    x, y = _imbalanced()
    labels = np.where(y == 1, "fraud", "ok")
    model = FocalClassifier(**FAST).fit(x, labels)
    assert list(model.classes_) == ["fraud", "ok"]
    probs = model.predict_proba(x)
    model.threshold_ = 0.0  # everything reaches it: every row is classes_[1]
    assert set(model.predict(x)) == {"ok"} and probs.shape == (400, 2)


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
