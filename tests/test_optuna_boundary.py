"""The private Optuna names gammatune relies on, pinned by what they must do."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from gammatune.errors import StudyError
from gammatune.tuning._optuna import contains, pop_waiting_trial, waiting_params


def _study() -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    storage = optuna.storages.InMemoryStorage()
    return optuna.create_study(storage=storage), storage


def test_popping_claims_enqueued_trials_in_order_and_never_invents_one() -> None:
    study, storage = _study()
    study.enqueue_trial({"gamma": 0.5})
    study.enqueue_trial({"gamma": 2.0, "repeat": 3})
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [waiting_params(t) for t in waiting] == [{"gamma": 0.5}, {"gamma": 2.0, "repeat": 3}]
    first, second = pop_waiting_trial(study, storage), pop_waiting_trial(study, storage)
    assert first is not None and second is not None
    assert (first[1], second[1]) == ({"gamma": 0.5}, {"gamma": 2.0, "repeat": 3})
    assert first[0].suggest_float("gamma", 0, 20) == 0.5  # the enqueued value comes back
    assert pop_waiting_trial(study, storage) is None
    assert len(study.trials) == 2  # nothing created on an empty queue


def test_a_missing_private_name_is_a_clear_error(monkeypatch) -> None:
    study, storage = _study()
    monkeypatch.delattr(optuna.Study, "_pop_waiting_trial_id")
    with pytest.raises(StudyError, match=r"install optuna>=5,<6"):
        pop_waiting_trial(study, storage)


def test_contains_uses_the_public_bounds_and_step() -> None:
    window = FloatDistribution(0.5, 1.5, step=0.1)
    assert contains(window, 0.7000000000000001) and not contains(window, 0.75)
    assert not contains(window, 1.6) and not contains(window, None)
    assert not contains(IntDistribution(0, 3), 1)  # only float and categorical spaces
