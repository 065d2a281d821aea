"""The summary: which rows are compared, and a verdict that does not oversell noise."""

from __future__ import annotations

import math

import pandas as pd

from gammatune.report import summarize
from gammatune.report._table import _add_deltas


def _trial(stage: str, number: int, gamma: float, alpha: float | None, val: float, test: float,
           ci: tuple[float, float], model: str = "configured") -> dict:  # fmt: skip
    return {
        "stage": stage, "number": number, "state": "COMPLETE", "gamma": gamma, "alpha": alpha,
        "model": model, "objective": val, "val_precision": val, "val_recall": val, "val_f1": val,
        "val_pr_auc": val, "test_f1": test, "test_f1_ci_low": ci[0], "test_f1_ci_high": ci[1],
        "test_pr_auc": test,
    }  # fmt: skip


def _frame(focal_test: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            _trial("baseline", 0, 0.0, None, 0.50, 0.50, (0.40, 0.60)),
            _trial("baseline", 1, 0.0, 0.75, 0.55, 0.55, (0.45, 0.65)),
            _trial("baseline", 2, 0.0, None, 0.30, 0.30, (0.20, 0.40), model="logistic"),
            _trial("search", 0, 2.0, 0.75, 0.70, focal_test, (focal_test - 0.1, focal_test + 0.1)),
            _trial("search", 1, 1.0, 0.25, 0.60, 0.60, (0.50, 0.70)),
        ]
    )


def test_deltas_against_plain_and_same_alpha_cross_entropy() -> None:
    frame = _frame(0.80)
    _add_deltas(frame, "f1")
    focal = frame.iloc[3]
    assert math.isclose(focal["delta_vs_ce"], 0.20)
    assert math.isclose(focal["delta_vs_balanced_ce"], 0.15)
    assert math.isclose(focal["test_delta_vs_ce"], 0.30)
    assert math.isnan(frame.iloc[4]["delta_vs_balanced_ce"])  # no CE at alpha 0.25 was run


def test_a_clear_gain_is_reported_as_such() -> None:
    summary = summarize(_frame(0.80), "f1")
    assert summary.recommended is not None and summary.recommended.gamma == 2.0
    assert [r.label for r in summary.rows] == ["CE", "CE+alpha", "linear CE", "search best"]
    assert (
        "vs CE: F1 +0.300" in summary.verdict
        and "vs CE at alpha 0.75: F1 +0.250" in summary.verdict
    )
    assert "noise" not in summary.verdict


def test_a_gain_inside_the_baseline_interval_is_called_noise() -> None:
    summary = summarize(_frame(0.58), "f1")
    assert "(inside its 95% interval)" in summary.verdict
    assert "within the test split's noise: prefer cross-entropy" in summary.verdict
    # ... and the recommendation says the same: plain cross-entropy, not the noisy focal point.
    assert summary.recommended is not None
    assert (summary.recommended.gamma, summary.recommended.alpha) == (0.0, None)


def test_a_validation_gain_that_fails_on_test_is_called_out() -> None:
    summary = summarize(_frame(0.20), "f1")
    assert "cross-entropy did better on test" in summary.verdict
    assert summary.recommended is not None and summary.recommended.gamma == 0.0


def test_cross_entropy_best_on_validation() -> None:
    frame = _frame(0.80)
    frame.loc[3, "objective"] = 0.1
    frame.loc[4, "objective"] = 0.1
    verdict = summarize(frame, "f1").verdict
    assert verdict.startswith("Best on validation: cross-entropy (gamma=0, alpha=0.75)")
