"""Precision/recall as a trade-off (multi-objective studies, constraints, the front) and pruning
(per-epoch reports to Optuna; a pruned stack member stops alone)."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import Config, TrainConfig, load_config
from gammatune.record import Setting, TrialRecord
from gammatune.report import study_summary
from gammatune.report._pareto import at_operating_point, pareto_front
from gammatune.report._verdict import decide
from gammatune.storage import load_study, open_storage
from gammatune.training import EpochEvent
from gammatune.training._stacked import fit_stacked
from gammatune.tuning import run_stages
from tests.conftest import TINY, write_config
from tests.test_ensemble import _data, _members

runner = CliRunner()
SMALL = {"source": "synthetic", "n_samples": 600, "n_features": 6, "minority_fraction": 0.15}
FAST = {**TINY["train"], "epochs": 3, "min_epochs": 1}


def test_a_list_objective_is_a_multi_objective_study_ranked_by_f1(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, data=SMALL, train=FAST, objective=["precision", "recall"],
        search={"gamma": [1.0, 2.0], "alpha": [0.5]},
    )  # fmt: skip
    result = runner.invoke(app, ["search", "-c", str(path)])
    assert result.exit_code == 0, result.output
    config = load_config(path)
    study = load_study(config, "search", open_storage(config))
    assert study is not None and len(study.directions) == 2
    frame, summary, _ = study_summary(config)
    search = frame[frame["stage"] == "search"]
    for trial, (_, row) in zip(study.get_trials(), search.iterrows(), strict=True):
        assert trial.values == pytest.approx([row["val_precision"], row["val_recall"]])
        assert row["objective"] == pytest.approx(row["val_f1"])  # no constraint: F1 ranks
    assert summary.pareto


def test_a_changed_objective_count_is_one_clear_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, data=SMALL, train=FAST, search={"gamma": [1.0], "alpha": [0.5]})
    assert runner.invoke(app, ["search", "-c", str(path)]).exit_code == 0
    multi = write_config(
        tmp_path, data=SMALL, train=FAST, search={"gamma": [1.0], "alpha": [0.5]},
        objective=["precision", "recall"],
    )  # fmt: skip
    result = runner.invoke(app, ["search", "-c", str(multi)])
    assert result.exit_code != 0
    assert "now ['precision', 'recall']" in result.output and "Traceback" not in result.output


def _confirm(rows: list[tuple[Setting, float, float]]) -> pd.DataFrame:
    """Confirm trials: per setting, an objective and a validation recall, over 4 repeats."""
    out = []
    for setting, objective, recall in rows:
        for repeat in range(4):
            out.append({
                "gamma": setting.gamma,
                "alpha": math.nan if setting.alpha is None else setting.alpha,
                "repeat": repeat, "fold": 1, "objective": objective + 0.01 * repeat,
                "val_recall": recall, "val_predicted_positive": 9, "best_epoch": 8,
            })  # fmt: skip
    return pd.DataFrame(out)


def test_the_verdict_recommends_only_a_setting_that_meets_the_constraints() -> None:
    plain, weighted, focal = Setting(0.0), Setting(0.0, 0.75), Setting(2.0, 0.75)
    confirm = _confirm([(plain, 0.9, 0.5), (weighted, 0.6, 0.85), (focal, 0.95, 0.6)])
    free = decide(confirm, n_val_positives=20, objective="precision")
    assert free.recommended != weighted  # without the constraint, precision alone decides
    bound = decide(confirm, n_val_positives=20, objective="precision", constraints={"recall": 0.8})
    assert bound.recommended == weighted
    none = decide(confirm, n_val_positives=20, objective="precision", constraints={"recall": 0.9})
    assert none.kind == "not-measurable"
    assert "no confirmed setting meets recall >= 0.9" in none.sentence


def test_the_front_keeps_the_undominated_and_names_the_operating_point() -> None:
    points = [(0.2, 0.9), (0.5, 0.8), (0.4, 0.7), (0.8, 0.5), (0.9, 0.3), (0.6, 0.4)]
    frame = pd.DataFrame(
        [{"state": "COMPLETE", "stage": "search", "model": "configured", "gamma": float(i),
          "alpha": 0.5, "val_recall": r, "val_precision": p, "objective": p}
         for i, (r, p) in enumerate(points)]
    )  # fmt: skip
    front = pareto_front(frame)
    assert sorted(zip(front["val_recall"], front["val_precision"], strict=True)) == [
        (0.2, 0.9), (0.5, 0.8), (0.8, 0.5), (0.9, 0.3),
    ]  # fmt: skip
    chosen = at_operating_point(front, {"recall": 0.75})
    assert chosen is not None and (chosen["val_recall"], chosen["val_precision"]) == (0.8, 0.5)
    assert at_operating_point(front, {"recall": 0.95}) is None


def _reporting(settings: list[Setting], reporters, _trials=None) -> list[tuple[TrialRecord, None]]:
    """Stand-in training: 8 epochs whose monitor is the trial's final value, reported each
    epoch; a pruned trial stops there."""
    out = []
    for setting, report in zip(settings, reporters or [None] * len(settings), strict=True):
        value, stop = 1.0 - abs(setting.gamma - 1.0), "max_epochs"
        for epoch in range(1, 9):
            if report is not None and report(EpochEvent(epoch, 8, 0.5, 0.5, value, value)):
                stop = "pruned"
                break
        record = TrialRecord(setting, seed=0, value=value, epochs_run=epoch, stop_reason=stop)
        out.append((record, None))
    return out


def test_refine_reports_every_epoch_and_prunes_hopeless_trials(tmp_path: Path) -> None:
    config = Config.model_validate({
        **TINY, "output_dir": str(tmp_path), "train": {**TINY["train"], "min_epochs": 2},
        "search": {"gamma": [1.0], "alpha": [0.5]},
        "refine": {"n_trials": 20, "batch": 2, "gamma_window": 1.0, "pruner": "median"},
    })  # fmt: skip
    studies = run_stages(config, ["search", "refine"], _reporting, storage=open_storage(config))
    trials = [t for t in studies["refine"].get_trials() if "warm_start_from" not in t.user_attrs]
    fresh = [t for t in trials if t.intermediate_values]
    assert fresh and all(len(t.intermediate_values) >= 2 for t in fresh)  # past the warm-up
    states = {t.state for t in trials}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 20


def test_a_pruned_stack_member_stops_alone_and_the_others_train_as_before() -> None:
    data = _data(2)
    config = TrainConfig(epochs=8, batch_size=32, lr=0.01, patience=20, min_epochs=1)
    members = _members(1, [(0.0, None, 0), (2.0, 0.25, 1), (1.0, 0.5, 2)])
    free = [replace(m, model=copy.deepcopy(m.model)) for m in members]
    pruned = [
        m if k != 1 else replace(m, report=lambda e: e.epoch >= 3) for k, m in enumerate(members)
    ]
    cpu = torch.device("cpu")
    expected = fit_stacked(free, data, n_classes=2, minority=1, config=config, device=cpu)
    found = fit_stacked(pruned, data, n_classes=2, minority=1, config=config, device=cpu)
    assert (found[1].stop_reason, found[1].epochs_run) == ("pruned", 3)
    for k in (0, 2):
        assert found[k].stop_reason == expected[k].stop_reason == "max_epochs"
        assert found[k].train_loss == expected[k].train_loss
        assert found[k].val_monitor == expected[k].val_monitor
