"""Tuning: the stages as data, the stage runner, the objective, workers, and every call into
Optuna. Read top to bottom: ``_workflow`` (one call) -> ``_stages`` (what a stage runs) ->
``_runner`` (running it on a study) -> ``_objective`` (a group of trials -> records).
"""

from __future__ import annotations

from gammatune.tuning._objective import (
    loss_terms,
    make_objective,
    new_member,
    parallel_trials,
    train_members,
)
from gammatune.tuning._runner import TrialEvent, run_stages
from gammatune.tuning._stages import StagePlan, plan_stage
from gammatune.tuning._trainer import check_trainer, trial_spec
from gammatune.tuning._workers import run_with_workers
from gammatune.tuning._workflow import run_workflow

__all__ = [
    "StagePlan",
    "TrialEvent",
    "check_trainer",
    "loss_terms",
    "make_objective",
    "new_member",
    "parallel_trials",
    "plan_stage",
    "run_stages",
    "run_with_workers",
    "train_members",
    "trial_spec",
    "run_workflow",
]
