"""The summary: which rows are compared, and a verdict that does not oversell noise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from gammatune.record import Setting
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


def _confirm(gains: dict[tuple[float, float | None], float], *, test: float = 0.5,
             predicted: int = 8, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Baseline and search trials, and a confirm stage of 5 paired repeats with these gains."""
    rng = np.random.default_rng(seed)
    rows = [_trial("baseline", 0, 0.0, None, 0.5, test, (0.4, 0.6)),
            _trial("search", 0, 2.0, 0.75, 0.7, test, (0.6, 0.8))]  # fmt: skip
    number = 0
    for repeat in range(1, 6):
        shared = rng.normal(0, 0.05)  # what a seed does to every setting: the paired part
        for (gamma, alpha), gain in gains.items():
            value = 0.5 + gain + shared + rng.normal(0, 0.005)
            row = _trial("confirm", number, gamma, alpha, value, test, (test - 0.1, test + 0.1))
            tp = min(predicted, 4)
            row.update(repeat=repeat, fold=0, best_epoch=5,
                       val_confusion=[[90, predicted - tp], [10 - tp, tp]])  # fmt: skip
            rows.append(row)
            number += 1
    return pd.DataFrame(rows)


FACTS = {"class_counts": {"train": [300, 30], "val": [100, 10], "test": [100, 10]}}
SETTINGS = [(2.0, 0.75), (0.0, 0.75), (0.0, None)]


def test_the_verdict_reads_the_confirm_stage_and_never_the_test_split() -> None:
    gains = dict(zip(SETTINGS, [0.10, 0.02, 0.0], strict=True))
    verdicts = [summarize(_confirm(gains, test=t), "f1", facts=FACTS) for t in (0.1, 0.9)]
    for summary in verdicts:
        assert summary.verdict.kind == "focal" and summary.verdict.recommended == Setting(
            2.0, 0.75
        )
        assert summary.recommended is not None and summary.recommended.n == 5
    assert verdicts[0].verdict == verdicts[1].verdict  # the test split changed, nothing else


def test_a_class_weight_gain_recommends_the_weighted_cross_entropy() -> None:
    gains = dict(zip(SETTINGS, [0.10, 0.10, 0.0], strict=True))  # gamma adds nothing
    summary = summarize(_confirm(gains), "f1", facts=FACTS)
    assert summary.verdict.kind == "class-weight" and summary.verdict.recommended == Setting(
        0.0, 0.75
    )
    assert summary.n_val_positives == 10 and summary.true_positives_found == (4, 4)
    assert "Validation holds 10 positives; the trials found 4 of them" in summary.text


def test_no_predicted_positive_is_not_measurable_and_said_so() -> None:
    gains = dict(zip(SETTINGS, [0.10, 0.02, 0.0], strict=True))
    summary = summarize(_confirm(gains, predicted=0), "f1", facts=FACTS)
    assert summary.verdict.kind == "not-measurable"
    assert "no model predicted a single positive" in summary.text
    assert "found 0 of them" in summary.text


def test_without_the_confirm_stage_there_is_no_verdict_yet() -> None:
    summary = summarize(_frame(0.8), "f1")
    assert summary.verdict.kind == "not-measurable" and summary.recommended is None
    assert "the confirm stage has not run" in summary.text


def test_a_multiclass_summary_names_the_rarest_class_not_positives() -> None:
    gains = dict(zip(SETTINGS, [0.10, 0.02, 0.0], strict=True))
    frame = _confirm(gains)
    frame["val_confusion"] = [[[40, 2, 3], [1, 30, 2], [2, 1, 4]]] * len(frame)
    facts = {
        "class_names": ["a", "b", "rare"],
        "class_counts": {"train": [120, 99, 21], "val": [45, 33, 7], "test": [45, 33, 7]},
    }
    summary = summarize(frame, "f1_macro", facts=facts)
    assert "Validation holds 7 samples of the rarest class (class rare)" in summary.text
    assert "predicted 4 of them correctly" in summary.text
    assert "positives" not in summary.text


def test_a_not_measurable_test_difference_is_never_printed_as_a_gain() -> None:
    from dataclasses import replace

    from gammatune.bootstrap import PairedDifference
    from gammatune.report import TestCheck

    gains = dict(zip(SETTINGS, [0.10, 0.02, 0.0], strict=True))
    summary = summarize(_confirm(gains, predicted=0), "f1", facts=FACTS)
    assert summary.verdict.kind == "not-measurable"
    difference = PairedDifference("f1", 0.9, 0.4, 0.502, 0.3, 0.7, 2000, 0.0)
    checked = replace(summary, test_checks=(TestCheck("plain cross-entropy", difference),))
    assert "descriptive only: the verdict is not-measurable, so no difference here is a gain" in (
        checked.text
    )
    assert "difference +0.502" in checked.text
    multiclass = replace(summary, test_checks=(
        TestCheck("plain cross-entropy", None, "a multiclass task has none: compare the per-class "
                  "figures"),
        TestCheck("cross-entropy at alpha 0.75", None, "a multiclass task has none: compare the "
                  "per-class figures"),
    ))  # fmt: skip
    assert "): no paired difference, a multiclass task has none" in multiclass.text
    assert ": multiclass:" not in multiclass.text


def test_printing_a_summary_or_verdict_prints_its_sentences() -> None:
    gains = dict(zip(SETTINGS, [0.10, 0.02, 0.0], strict=True))
    summary = summarize(_confirm(gains), "f1", facts=FACTS)
    assert str(summary) == summary.text and str(summary.verdict) == summary.verdict.sentence
    assert "Verdict(" not in str(summary) and len(str(summary)) < 1500


def test_python_and_the_cli_give_the_same_verdict_and_intervals(tmp_path: Path) -> None:
    """examples/api.py's path (study_summary) is the CLI's: the same bootstrap intervals and
    test checks; summarize() alone, without the study's spread, was what made them differ."""
    import json

    from typer.testing import CliRunner

    from gammatune.cli import app
    from gammatune.config import load_config
    from gammatune.report import study_summary
    from tests.conftest import write_config

    path = write_config(tmp_path)
    result = CliRunner().invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text("utf-8"))
    _, summary, _ = study_summary(load_config(path))
    assert json.loads(json.dumps(summary.verdict.to_json())) == written["verdict"]
    assert summary.text == written["text"]
