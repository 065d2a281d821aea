"""Stages on real Optuna storage, with a stand-in objective (no training)."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from gammatune.config import Config
from gammatune.record import TrialRecord
from gammatune.storage import load_record, open_storage
from gammatune.tuning import run_stages
from tests.conftest import TINY


def _objective(settings: list, _reporters=None, _trials=None) -> list[tuple[TrialRecord, None]]:
    return [(TrialRecord(s, seed=0, value=s.gamma * (s.alpha or 0.5)), None) for s in settings]


def test_refine_budget_counts_trials_that_repeat_a_warm_start_point(tmp_path: Path) -> None:
    """A tiny window (9 points) and 12 trials: TPE must propose points it has seen, some of them
    the warm-start copy of the search trial. Each is still one trial of the budget."""
    config = Config.model_validate(
        {
            **TINY,
            "output_dir": str(tmp_path),
            "search": {"gamma": [0.5], "alpha": [0.75]},
            "refine": {"n_trials": 12, "gamma_window": 0.1, "alpha_window": 0.05},
        }
    )
    storage = open_storage(config)
    studies = run_stages(config, ["search", "refine"], _objective, storage=storage, parallel=4)
    trials = studies["refine"].get_trials(deepcopy=False)
    warm = [t for t in trials if load_record(t).warm_start_from is not None]
    run = [t for t in trials if load_record(t).warm_start_from is None]
    assert len(warm) == 1
    assert len(run) == 12 and all(t.state == TrialState.COMPLETE for t in run)
    assert any(load_record(t).reused_from is not None for t in run)  # reused, not retrained
    # A trial's results are one stored attribute (one write), beside who ran it.
    assert all(set(t.user_attrs) == {"host", "pid", "result"} for t in run)
    assert load_record(run[0]).setting.gamma == run[0].params["gamma"]


def test_a_study_of_an_earlier_version_is_one_clear_error(tmp_path: Path) -> None:
    """Earlier versions stored gamma as a categorical; Optuna refuses to mix kinds with a bare
    ValueError at the first new trial."""
    import optuna
    import pytest

    from gammatune.errors import StudyError

    config = Config.model_validate({**TINY, "output_dir": str(tmp_path)})
    storage = open_storage(config)
    old = optuna.create_study(study_name="tiny.search", storage=storage, direction="maximize")
    old.add_trial(
        optuna.trial.create_trial(
            params={"gamma": 0.5},
            distributions={"gamma": optuna.distributions.CategoricalDistribution([0.5, 2.0])},
            value=0.1,
        )
    )
    with pytest.raises(
        StudyError, match="'tiny.search' stores 'gamma' as Categorical.*new `name`"
    ):
        run_stages(config, ["search"], _objective, storage=storage)


def test_a_tie_on_the_objective_is_broken_by_validation_pr_auc() -> None:
    """Every weighted baseline at F1 0 (no positive predicted): the one whose scores rank the
    positives best is the reference confirm takes, not the first alpha."""
    import optuna

    from gammatune.storage import rank

    space = {"alpha": optuna.distributions.FloatDistribution(0.0, 1.0)}
    trials = [
        optuna.trial.create_trial(
            value=0.0,
            params={"alpha": alpha},
            distributions=space,
            user_attrs={"val_pr_auc": pr_auc},
        )  # fmt: skip
        for alpha, pr_auc in ((0.25, 0.12), (0.5, 0.43), (0.75, 0.30))
    ]
    assert max(trials, key=rank).params["alpha"] == 0.5
    better = optuna.trial.create_trial(value=0.1, params={"alpha": 0.9}, distributions=space)
    assert max([*trials, better], key=rank).params["alpha"] == 0.9  # the objective comes first
