"""Running stages on Optuna studies: what each runs comes from ``_stages``.

Fixed points are enqueued only where no completed, running or waiting trial has them, so a rerun
continues a stage: completed points are not retrained, failed or interrupted ones are.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from gammatune.config import Config
from gammatune.fingerprint import check_fingerprint, check_studies
from gammatune.record import Setting, TrialRecord
from gammatune.scores_files import Scores, save_scores
from gammatune.storage import (
    FINGERPRINT,
    GRACE_PERIOD_S,
    Stage,
    key_figures,
    load_record,
    save_record,
    study_name,
)
from gammatune.training import Reporter
from gammatune.tuning._optuna import (
    claim_lock,
    fail_dead,
    fail_trials,
    heartbeats,
    pop_waiting_trial,
    raise_if_terminated,
    running_elsewhere,
    sigterm_interrupts,
    suggest,
    tag,
    waiting_params,
)
from gammatune.tuning._samplers import check_directions, own_sampler, pruner, reporter, sampler
from gammatune.tuning._stages import (
    WARM_START,
    StagePlan,
    add_warm_start,
    check_spaces,
    plan_stage,
    rounds,
)

logger = logging.getLogger(__name__)

_ACTIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
Role = Literal["single", "worker"]
Outcome = tuple[TrialRecord, Scores | None]
# (settings, who hears each one's epochs, (stage, trial number) of each) -> one outcome per
# setting, in order.
Objective = Callable[[list[Setting], list[Reporter | None], list[tuple[str, int]]], list[Outcome]]
# (stage, trial number) -> who else hears that trial's epochs (live tracking), or None.
Live = Callable[[Stage, int], Reporter | None]


@dataclass(frozen=True, slots=True)
class TrialEvent:
    """What the progress callback hears when a trial ends."""

    stage: Stage
    number: int
    state: str
    value: float | None
    setting: Setting
    reason: str | None = None
    curves: dict[str, list[float | None]] | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # storage.key_figures


def run_stages(
    config: Config,
    stages: Sequence[Stage],
    objective: Objective,
    *,
    storage: optuna.storages.BaseStorage,
    parallel: int = 1,
    on_stage: Callable[[str, int], None] | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
    live: Live | None = None,
    study_attrs: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
    role: Role = "single",
    worker: int = 0,
) -> dict[Stage, optuna.Study]:
    """Run (or continue) ``stages`` until their points are done or refine reaches ``n_trials``.

    The fixed points of baseline and search are known up front, so they train together;
    refine then asks TPE for ``parallel`` trials a round (or ``refine.batch``, if smaller, to
    let TPE learn from more rounds; constant liar marks the trials in flight); confirm's points
    follow from the results of the others.

    Args:
        config: The experiment.
        stages: Some of ``baseline``, ``search``, ``refine``, ``confirm``, in that order.
        objective: ``[setting, ...] -> [(record, per-sample scores), ...]``.
        storage: From :func:`open_storage`.
        parallel: How many trials to hand the objective at once.
        on_stage: Hears each round's name and how many trials it will run.
        on_trial: Called when each trial ends.
        live: ``(stage, trial number) ->`` who hears that trial's epochs as they end
            (live tracking), or None.
        study_attrs: JSON-safe facts about the data, stored on each study for the report.
        fingerprint: Everything that changes a trial's result (flat, JSON-safe), stored on each
            study when it is created; a study that holds a different one is not continued.
        role: ``single`` prepares each stage (fails orphaned trials, adds refine's warm start,
            enqueues missing points) and runs it; ``worker`` only runs what a coordinating
            process prepared with :func:`prepare_stages`, so that workers sharing a storage
            never enqueue a point twice.
        worker: This worker's index (0 for a single process): TPE's seed is ``seed + worker``,
            so that workers do not all propose the same points.

    Returns:
        The studies, by stage.

    Raises:
        StudyError: A stored study was run on a different experiment (``fingerprint``).
        KeyboardInterrupt: Ctrl-C or SIGTERM; the trials in flight are marked failed.
    """
    if fingerprint is not None:  # every stage: refine builds on search's trials
        check_studies(config, storage, fingerprint)
    studies: dict[Stage, optuna.Study] = {}
    with sigterm_interrupts():
        for group in rounds(stages):
            _run_round(config, group, objective, storage=storage, parallel=parallel,
                       on_stage=on_stage, on_trial=on_trial, live=live, studies=studies,
                       attrs={**(study_attrs or {}), FINGERPRINT: fingerprint}, role=role,
                       worker=worker)  # fmt: skip
    return studies


def _run_round(
    config: Config,
    group: list[Stage],
    objective: Objective,
    *,
    storage: optuna.storages.BaseStorage,
    parallel: int,
    on_stage: Callable[[str, int], None] | None,
    on_trial: Callable[[TrialEvent], None] | None,
    live: Live | None,
    studies: dict[Stage, optuna.Study],
    attrs: dict[str, Any],
    role: Role,
    worker: int,
) -> None:
    opened = [
        _open(config, stage, storage, attrs, prepare=role == "single", worker=worker)
        for stage in group
    ]
    studies.update({plan.stage: study for plan, study in opened})
    if on_stage is not None:
        on_stage("+".join(group), sum(_remaining(study, plan) for plan, study in opened))
    batch = min(parallel, config.refine.batch or parallel) if group == ["refine"] else parallel
    while slots := _next_slots(storage, opened, batch):
        for event in _run_slots(config, storage, slots, objective, live):
            if on_trial is not None:
                on_trial(event)
    for _, study in opened if role == "single" else []:
        if hosts := running_elsewhere(study):
            logger.warning(
                "%s: %d point(s) still RUNNING in another process (%s): this run ends without "
                "them; if that process is gone, the next run retrains them once their "
                "heartbeat is %d s old.",
                study.study_name, len(hosts), ", ".join(sorted(set(hosts))), GRACE_PERIOD_S,
            )  # fmt: skip


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
    worker: int = 0,
) -> tuple[StagePlan, optuna.Study]:
    plan = plan_stage(config, stage, storage)
    name = study_name(config, stage)
    # One process at a time: two that prepare a stage at once would both enqueue its points.
    with claim_lock(storage, name):
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler(config, plan, worker),
            pruner=pruner(config, plan),
            directions=["maximize"] * len(config.objectives),
            load_if_exists=True,
        )
        check_directions(study, config)
        check_spaces(study, plan)
        own_sampler(study, config, plan, worker)
        fingerprint = (study_attrs or {}).get(FINGERPRINT)
        if fingerprint is not None:
            check_fingerprint(study, fingerprint)
        for key, value in (study_attrs or {}).items():
            if value is not None:
                study.set_user_attr(key, value)
        if prepare:
            fail_dead(study, plan.distributions)
            add_warm_start(study, plan)
            _enqueue_missing(study, plan)
            if plan.kind == "points":  # what the report judges: the current plan's points
                study.set_user_attr("plan", [p.params() for p in plan.points])
    return plan, study


def _enqueue_missing(study: optuna.Study, plan: StagePlan) -> None:
    """Enqueue fixed points without an active trial; for refine, retry failed points once."""
    trials = study.get_trials(deepcopy=False)
    active = {_setting(t).key() for t in trials if t.state in _ACTIVE}
    if plan.kind == "points":
        wanted = plan.points
    else:
        wanted = [_setting(t) for t in trials if t.state == TrialState.FAIL]
    for setting in wanted:
        if setting.key() not in active:
            study.enqueue_trial(setting.params())
            active.add(setting.key())


def _setting(trial: FrozenTrial) -> Setting:
    return Setting.from_params(waiting_params(trial))


def _remaining(study: optuna.Study, plan: StagePlan) -> int:
    """Trials this stage still has to run: its waiting points, or refine's unused budget."""
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    if plan.kind == "points":
        return waiting
    counted = sum(t.state in _SPENT and not _is_copy(t) for t in trials)
    return max(waiting, plan.n_trials - counted)


_SPENT = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)  # refine's budget


def _is_copy(trial: FrozenTrial) -> bool:
    return WARM_START in trial.user_attrs


@dataclass(frozen=True, slots=True)
class _Slot:
    """A trial in flight, with its study and plan."""

    plan: StagePlan
    study: optuna.Study
    trial: optuna.Trial
    setting: Setting


def _next_slots(
    storage: optuna.storages.BaseStorage,
    opened: list[tuple[StagePlan, optuna.Study]],
    batch: int,
) -> list[_Slot]:
    """Up to ``batch`` trials: waiting (enqueued) points first, then, for refine, TPE's."""
    slots: list[_Slot] = []
    claimed: list[tuple[optuna.Study, optuna.Trial]] = []
    try:
        for plan, study in opened:
            for _ in range(min(batch - len(slots), _remaining(study, plan))):
                started = _start(storage, study, plan)
                if started is None:  # another worker took the last one
                    break
                trial, fixed = started
                claimed.append((study, trial))
                names = plan.distributions if plan.kind == "tpe" else fixed
                params = {n: suggest(trial, n, plan.distributions[n]) for n in names}
                slots.append(_Slot(plan, study, trial, Setting.from_params(params)))
    except BaseException:
        fail_trials(claimed)  # Ctrl-C or SIGTERM while claiming: nothing is left RUNNING
        raise
    return slots


def _start(
    storage: optuna.storages.BaseStorage, study: optuna.Study, plan: StagePlan
) -> tuple[optuna.Trial, dict[str, Any]] | None:
    """Start a trial: an enqueued one, or for refine a new one from TPE; None when none is due.

    A fixed-point stage never lets ``Study.ask`` create a trial of its own: it claims enqueued
    trials, under :func:`claim_lock` so that processes sharing a storage never start the same
    point. Refine counts its budget under the same lock, so that ``n_trials`` is the total over
    all processes. The trial is tagged (host, pid, a first heartbeat) before the lock is let
    go. Returns the trial and its enqueued parameters (none for TPE's).
    """
    with claim_lock(storage, study.study_name):
        if plan.kind == "tpe":
            if _remaining(study, plan) <= 0:
                return None
            with warnings.catch_warnings():  # heartbeats are ours, not Study.optimize's
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                started: tuple[optuna.Trial, dict[str, Any]] | None = (study.ask(), {})
        else:
            started = pop_waiting_trial(study, storage)
        if started is not None:
            try:
                tag(storage, started[0])
            except BaseException:
                fail_trials([(study, started[0])])
                raise
        return started


def _run_slots(
    config: Config,
    storage: optuna.storages.BaseStorage,
    slots: list[_Slot],
    objective: Objective,
    live: Live | None,
) -> list[TrialEvent]:
    try:
        raise_if_terminated()
        twins = _completed_twins(slots)
        new = [s for s, twin in zip(slots, twins, strict=True) if not twin]
        with heartbeats(storage, [slot.trial for slot in slots]):
            hears = [
                reporter(config, s.plan, s.trial, live and live(s.plan.stage, s.trial.number))
                for s in new
            ]
            names: list[tuple[str, int]] = [(s.plan.stage, s.trial.number) for s in new]
            fresh = iter(objective([s.setting for s in new], hears, names))
            raise_if_terminated()
    except BaseException:
        # KeyboardInterrupt, SIGTERM or a bug: these points are retried on the next run.
        fail_trials([(slot.study, slot.trial) for slot in slots])
        raise
    return [
        _finish(config, slot, next(fresh) if twin is None else _reused(twin))
        for slot, twin in zip(slots, twins, strict=True)
    ]


def _finish(config: Config, slot: _Slot, outcome: Outcome) -> TrialEvent:
    """Store a trial's record (and scores) and tell Optuna how it ended."""
    record, scores = outcome
    stage, trial = slot.plan.stage, slot.trial
    record = replace(record, stage=stage)
    if scores is not None:
        name = f"{study_name(config, stage)}-{trial.number:05d}"
        record = replace(record, scores_file=save_scores(config, name, scores))
    try:
        save_record(trial, record)
        if record.failed or record.value is None:
            slot.study.tell(trial, state=TrialState.FAIL)
            state = "FAIL"
        elif record.stop_reason == "pruned":
            slot.study.tell(trial, state=TrialState.PRUNED)
            state = "PRUNED"
        else:
            slot.study.tell(trial, record.values or record.value)
            state = "COMPLETE"
    except optuna.exceptions.UpdateFinishedTrialError:
        # Its heartbeat looked stale (this process paused past the grace period) and another
        # process failed it; its point is retried there, so this result is not kept.
        logger.warning("trial %d of %s was failed by another process", trial.number, stage)
        state, record = "FAIL", replace(record, fail_reason="failed by another process")
    return TrialEvent(
        stage, trial.number, state, record.value, slot.setting, record.fail_reason, record.curves,
        key_figures(record),
    )  # fmt: skip


def _reused(twin: FrozenTrial) -> Outcome:
    record = load_record(twin)
    assert record is not None and twin.values is not None
    # A new trial of the refine budget even when its twin is a warm-start copy of a search trial.
    return replace(record, warm_start_from=None, reused_from=twin.number), None


def _completed_twins(slots: list[_Slot]) -> list[FrozenTrial | None]:
    """Each slot's first completed trial of the same setting (TPE on a stepped grid can
    propose one twice), reading each study once."""
    done: dict[str, dict[tuple[Any, ...], FrozenTrial]] = {}
    for study in {slot.study.study_name: slot.study for slot in slots}.values():
        first = done.setdefault(study.study_name, {})
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            first.setdefault(_setting(trial).key(), trial)
    return [done[slot.study.study_name].get(slot.setting.key()) for slot in slots]
