"""Running the three stages on Optuna studies: what each runs comes from ``plan``.

- ``baseline``: gamma 0 (the loss is plain cross-entropy), alpha off, ``baseline.repeats`` seeds;
  alpha-balanced cross-entropy at each alpha of the search grid; a linear model as a yardstick.
- ``search``: the grid gamma x alpha.
- ``refine``: TPE inside a window around the best search trial, warm-started with the search
  trials that fall inside it; ``refine.n_trials`` is the stage's total.

Fixed points are enqueued only where no completed, running or waiting trial has them, so a rerun
continues a stage: completed points are not retrained, failed or interrupted ones are.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from gammatune.config import Config
from gammatune.storage import Stage, claim_lock, save_result, study_name, trial_attrs
from gammatune.tuning._stages import StagePlan, complete_params, plan_stage, rounds

logger = logging.getLogger(__name__)

_ACTIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
Role = Literal["single", "worker"]


@dataclass(frozen=True, slots=True)
class TrialEvent:
    """What the progress callback hears when a trial ends."""

    stage: Stage
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    reason: str | None = None
    curves: dict[str, list[float | None]] | None = None


class TrialFailed(Exception):
    """A trial that ends without a result (NaN loss, out of memory); the study goes on."""

    def __init__(self, reason: str, attrs: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attrs = attrs


Outcome = tuple[float, dict[str, Any]] | TrialFailed
Objective = Callable[[list[dict[str, Any]]], list[Outcome]]


def run_stages(
    config: Config,
    stages: Sequence[Stage],
    objective: Objective,
    *,
    storage: optuna.storages.BaseStorage,
    parallel: int = 1,
    on_stage: Callable[[str, int], None] | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
    study_attrs: dict[str, Any] | None = None,
    role: Role = "single",
) -> dict[Stage, optuna.Study]:
    """Run (or continue) ``stages`` until their points are done or refine reaches ``n_trials``.

    The fixed points of baseline and search are known up front, so they train together;
    refine then asks TPE for ``parallel`` trials a round (or ``refine.batch``, if smaller, to
    let TPE learn from more rounds; constant liar marks the trials in flight).

    Args:
        config: The experiment.
        stages: Some of ``baseline``, ``search``, ``refine``, in that order.
        objective: ``[params, ...] -> [(value, user_attrs) or TrialFailed, ...]``.
        storage: From :func:`open_storage`.
        parallel: How many trials to hand the objective at once.
        on_stage: Hears each round's name and how many trials it will run.
        on_trial: Called when each trial ends.
        study_attrs: JSON-safe facts about the data, stored on each study for the report.
        role: ``single`` prepares each stage (fails orphaned trials, adds refine's warm start,
            enqueues missing points) and runs it; ``worker`` only runs what a coordinating
            process prepared with :func:`prepare_stages`, so that workers sharing a storage
            never enqueue a point twice.

    Returns:
        The studies, by stage.
    """
    studies: dict[Stage, optuna.Study] = {}
    for group in rounds(stages):
        opened = [
            _open(config, stage, storage, study_attrs, prepare=role == "single") for stage in group
        ]
        studies.update({plan.stage: study for plan, study in opened})
        if on_stage is not None:
            on_stage("+".join(group), sum(_remaining(study, plan) for plan, study in opened))
        # TPE asks up to `parallel` trials a round; constant liar marks the ones in flight.
        batch = min(parallel, config.refine.batch or parallel) if group == ["refine"] else parallel
        while slots := _next_slots(opened, batch):
            for event in _run_slots(slots, objective):
                if on_trial is not None:
                    on_trial(event)
    return studies


def prepare_stages(
    config: Config, stages: Sequence[Stage], storage: optuna.storages.BaseStorage
) -> None:
    """Make ``stages`` ready for workers: fail orphans, add the warm start, enqueue points."""
    for stage in stages:
        _open(config, stage, storage, None, prepare=True)


def _open(
    config: Config,
    stage: Stage,
    storage: optuna.storages.BaseStorage,
    study_attrs: dict[str, Any] | None,
    *,
    prepare: bool,
) -> tuple[StagePlan, optuna.Study]:
    plan = plan_stage(config, stage, storage)
    study = optuna.create_study(
        study_name=study_name(config, stage),
        storage=storage,
        sampler=_sampler(config, plan),
        direction="maximize",
        load_if_exists=True,
    )
    for key, value in (study_attrs or {}).items():
        study.set_user_attr(key, value)
    if prepare:
        _fail_orphans(study)
        _add_warm_start(study, plan)
        _enqueue_missing(study, plan)
    return plan, study


def _sampler(config: Config, plan: StagePlan) -> optuna.samplers.BaseSampler:
    if plan.points is not None:  # every trial is enqueued: the sampler is never asked
        return optuna.samplers.RandomSampler(seed=config.seed)
    # Workers (see workers.py) draw from different seeds, or all would propose the same points.
    seed = config.seed + int(os.environ.get("GAMMATUNE_WORKER", "0"))
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True, n_startup_trials=5
    )


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    assert isinstance(dist, FloatDistribution)
    # Round off the step's binary noise (0.8500000000000001).
    return round(trial.suggest_float(name, dist.low, dist.high, step=dist.step), 10)


def _fail_orphans(study: optuna.Study) -> None:
    """Fail RUNNING trials whose process on this host has ended (killed, machine restarted)."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") == host and not _alive(int(attrs.get("pid", -1))):
            study.tell(trial.number, state=TrialState.FAIL)
            logger.info(
                "trial %d of %s: its process ended; marked failed", trial.number, study.study_name
            )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()  # a trial of this very process cannot be running yet


def _add_warm_start(study: optuna.Study, plan: StagePlan) -> None:
    """Copy the search trials inside the refine window into the refine study, once each."""
    copied = {t.user_attrs.get("warm_start_from") for t in study.get_trials(deepcopy=False)}
    for source in plan.warm_start:
        if source.number in copied:
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params={k: source.params[k] for k in plan.distributions},
                distributions=plan.distributions,
                value=source.value,
                user_attrs={**source.user_attrs, "warm_start_from": source.number},
            )
        )


def _enqueue_missing(study: optuna.Study, plan: StagePlan) -> None:
    """Enqueue fixed points without an active trial; for refine, retry failed points once."""
    trials = study.get_trials(deepcopy=False)
    active = {_key(_params(t)) for t in trials if t.state in _ACTIVE}
    if plan.points is not None:
        wanted = plan.points
    else:
        wanted = [t.params for t in trials if t.state == TrialState.FAIL]
    for params in wanted:
        if _key(params) not in active:
            study.enqueue_trial(dict(params))
            active.add(_key(params))


def _params(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters; a waiting (enqueued) trial keeps them in ``fixed_params``."""
    return trial.params or dict(trial.system_attrs.get("fixed_params", {}))


def _key(params: dict[str, Any]) -> tuple[Any, ...]:
    full = complete_params(params)
    return tuple((k, round(v, 9) if isinstance(v, float) else v) for k, v in sorted(full.items()))


def _remaining(study: optuna.Study, plan: StagePlan) -> int:
    """Trials this stage still has to run: its waiting points, or refine's unused budget."""
    trials = study.get_trials(deepcopy=False)
    if plan.points is not None:
        return sum(t.state == TrialState.WAITING for t in trials)
    counted = sum(
        t.state in (TrialState.COMPLETE, TrialState.RUNNING)
        and "warm_start_from" not in t.user_attrs
        for t in trials
    )
    retries = sum(t.state == TrialState.WAITING for t in trials)
    return max(retries, plan.n_trials - counted)


@dataclass(frozen=True, slots=True)
class _Slot:
    """A trial in flight, with its study and plan."""

    plan: StagePlan
    study: optuna.Study
    trial: optuna.Trial
    params: dict[str, Any]


def _next_slots(opened: list[tuple[StagePlan, optuna.Study]], batch: int) -> list[_Slot]:
    """Up to ``batch`` trials: waiting (enqueued) points first, then, for refine, TPE's."""
    slots: list[_Slot] = []
    for plan, study in opened:
        for _ in range(min(batch - len(slots), _remaining(study, plan))):
            trial = _start(study, plan)
            if trial is None:  # another worker took the last one
                break
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("pid", os.getpid())
            params = {n: _suggest(trial, n, d) for n, d in plan.distributions.items()}
            slots.append(_Slot(plan, study, trial, complete_params(params)))
    return slots


def _start(study: optuna.Study, plan: StagePlan) -> optuna.Trial | None:
    """Start a trial: an enqueued one, or for refine a new one from TPE; None when none is due.

    A fixed-point stage never lets ``Study.ask`` create a trial of its own: it pops enqueued
    trials, under :func:`claim_lock` so that workers sharing a SQLite file never start the
    same point. Refine counts its budget under the same lock, so that ``n_trials`` is the
    total over all workers.
    """
    with claim_lock(study._storage):
        if plan.points is None:
            return study.ask() if _remaining(study, plan) > 0 else None
        trial_id = study._pop_waiting_trial_id()  # ask()'s first step; no public form
        return None if trial_id is None else optuna.Trial(study, trial_id)


def _run_slots(slots: list[_Slot], objective: Objective) -> list[TrialEvent]:
    twins = _completed_twins(slots)
    try:
        fresh = iter(
            objective([s.params for s, twin in zip(slots, twins, strict=True) if not twin])
        )
    except BaseException:
        # KeyboardInterrupt or a bug: these points are retried on the next run.
        for slot in slots:
            slot.study.tell(slot.trial, state=TrialState.FAIL)
        raise
    events = []
    for slot, twin in zip(slots, twins, strict=True):
        outcome = next(fresh) if twin is None else _reused(twin)
        stage, trial = slot.plan.stage, slot.trial
        if isinstance(outcome, TrialFailed):
            _set_attrs(trial, {**outcome.attrs, "stage": stage, "fail_reason": outcome.reason})
            slot.study.tell(trial, state=TrialState.FAIL)
            event = TrialEvent(
                stage,
                trial.number,
                "FAIL",
                None,
                slot.params,
                outcome.reason,
                outcome.attrs.get("curves"),
            )
        else:
            value, attrs = outcome
            _set_attrs(trial, {**attrs, "stage": stage})
            slot.study.tell(trial, value)
            event = TrialEvent(
                stage, trial.number, "COMPLETE", value, slot.params, curves=attrs.get("curves")
            )
        events.append(event)
    return events


def _reused(twin: FrozenTrial) -> Outcome:
    assert twin.value is not None
    # A new trial of the refine budget even when its twin is a warm-start copy of a search trial.
    attrs = {k: v for k, v in trial_attrs(twin).items() if k != "warm_start_from"}
    return twin.value, {**attrs, "reused_from": twin.number}


def _completed_twins(slots: list[_Slot]) -> list[FrozenTrial | None]:
    """Each slot's first completed trial of the same point (TPE on a stepped grid can propose
    one twice), reading each study once."""
    done: dict[str, dict[tuple[Any, ...], FrozenTrial]] = {}
    for study in {slot.study.study_name: slot.study for slot in slots}.values():
        first = done.setdefault(study.study_name, {})
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            first.setdefault(_key(trial.params), trial)
    return [done[slot.study.study_name].get(_key(slot.params)) for slot in slots]


def _set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    save_result(trial, {k: v for k, v in attrs.items() if k not in ("host", "pid")})
