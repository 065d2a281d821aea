"""The one boundary to Optuna's private API, and the lock that makes claiming trials atomic.

gammatune enqueues every fixed point itself and must claim exactly those (``Study.ask`` would
invent new points when none is waiting). Optuna has no public call for that, so this module
holds the two private names it needs, each checked: a missing one is a clear error naming the
Optuna versions gammatune is tested with, never a silent change of behaviour. The tests in
``tests/test_optuna_boundary.py`` pin what each must do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: one process per study there
    fcntl = None  # type: ignore[assignment]

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial

from gammatune.errors import StudyError

TESTED = "optuna>=5,<6"


def pop_waiting_trial(
    study: optuna.Study, storage: optuna.storages.BaseStorage
) -> tuple[optuna.Trial, dict[str, Any]] | None:
    """Claim the oldest enqueued (WAITING) trial; return it, running, with its enqueued
    parameters; None when none waits.

    Calls ``Study._pop_waiting_trial_id``, the first step of ``Study.ask``, which claims the
    trial in the storage (a row lock on a server database; see :func:`claim_lock` for SQLite).
    The parameters come from the trial's ``fixed_params`` system attribute, through the
    storage's public ``get_trial_system_attrs``.

    Raises:
        StudyError: This Optuna has no such method.
    """
    pop = getattr(study, "_pop_waiting_trial_id", None)
    if pop is None:
        raise StudyError(
            f"optuna {optuna.__version__} has no Study._pop_waiting_trial_id, which gammatune "
            f"needs to claim enqueued trials; install {TESTED}."
        )
    trial_id = pop()
    if trial_id is None:
        return None
    fixed = storage.get_trial_system_attrs(trial_id).get("fixed_params", {})
    return optuna.Trial(study, trial_id), dict(fixed)


def waiting_params(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters; an enqueued trial keeps them in its ``fixed_params`` system
    attribute until it starts (``FrozenTrial.params`` is empty then)."""
    if trial.params:
        return dict(trial.params)
    fixed = trial.system_attrs.get("fixed_params")
    if fixed is None and trial.state == optuna.trial.TrialState.WAITING:
        raise StudyError(
            f"optuna {optuna.__version__}: enqueued trial {trial.number} has no "
            f"'fixed_params'; install {TESTED}."
        )
    return dict(fixed or {})


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is one of ``distribution``'s values (public attributes only)."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if not isinstance(distribution, FloatDistribution) or value is None:
        return False
    low, high, step = distribution.low, distribution.high, distribution.step
    if not low - 1e-9 <= value <= high + 1e-9:
        return False
    return step is None or abs((value - low) / step - round((value - low) / step)) < 1e-6


@contextmanager
def claim_lock(storage_url: str) -> Iterator[None]:
    """Serialize claiming trials between processes that share a SQLite file.

    SQLite ignores ``SELECT ... FOR UPDATE``, so two workers could both see a waiting trial
    and both start it; a file lock beside the database makes the claim atomic. Server
    databases (PostgreSQL, MySQL) lock the row themselves, and need nothing here.
    """
    prefix = "sqlite:///"
    if not storage_url.startswith(prefix) or fcntl is None:
        yield
        return
    with open(f"{storage_url.removeprefix(prefix)}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
