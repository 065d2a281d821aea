"""How a study samples (TPE, with ``constraints``), prunes (refine's ``refine.pruner``) and
hears each trial's epochs."""

from __future__ import annotations

import hashlib

import optuna
from optuna.trial import FrozenTrial

from gammatune.config import Config
from gammatune.errors import StudyError
from gammatune.storage import load_record
from gammatune.training import EpochEvent, Reporter
from gammatune.tuning._stages import StagePlan


def sampler(
    config: Config, plan: StagePlan, worker: int, opened: int = 0
) -> optuna.samplers.BaseSampler:
    """TPE for refine, seeded ``seed + worker`` for the first process that runs the stage
    (``opened`` 0: a single process's refine is reproducible); each later process gets a seed
    of its own, so that two processes started at once do not propose the same points."""
    if plan.kind == "points":  # every trial is enqueued: the sampler is never asked
        return optuna.samplers.RandomSampler(seed=config.seed)
    minimums = config.constraints

    def shortfalls(trial: FrozenTrial) -> list[float]:  # Optuna's convention: <= 0 is met
        record = load_record(trial)
        if record is None or record.val is None:
            return [1.0] * len(minimums)
        return [low - float(getattr(record.val, m)) for m, low in minimums.items()]

    seed = config.seed + worker
    if opened:
        digest = hashlib.sha256(f"{seed}/{opened}".encode()).digest()
        seed = int.from_bytes(digest[:4], "big") >> 1
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True, n_startup_trials=5,
        constraints_func=shortfalls if minimums else None,
    )  # fmt: skip


OPENED = "tpe_processes"  # a refine study's attribute: how many processes have run it


def own_sampler(study: optuna.Study, config: Config, plan: StagePlan, worker: int) -> None:
    """Give this process its own TPE seed: count it among the processes that opened the
    stage (the caller holds the claim lock, so that two at once count apart)."""
    if plan.kind != "tpe":
        return
    opened = int(study.user_attrs.get(OPENED, 0))
    study.set_user_attr(OPENED, opened + 1)
    if opened:
        study.sampler = sampler(config, plan, worker, opened)


def pruner(config: Config, plan: StagePlan) -> optuna.pruners.BasePruner:
    """Refine's ``refine.pruner``, from the epochs after ``train.min_epochs``; none elsewhere."""
    warmup = config.train.min_epochs
    match config.refine.pruner if plan.kind == "tpe" else "none":
        case "median":
            return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
        case "wilcoxon":
            return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=warmup)
    return optuna.pruners.NopPruner()


def check_directions(study: optuna.Study, config: Config) -> None:
    if len(study.directions) != len(config.objectives):
        raise StudyError(
            f"study {study.study_name!r} has {len(study.directions)} objective(s); the "
            f"experiment has {len(config.objectives)} ({', '.join(config.objectives)}): "
            "set a new `name` to start a new study."
        )


def reporter(
    config: Config, plan: StagePlan, trial: optuna.Trial, live: Reporter | None = None
) -> Reporter | None:
    """Refine's epochs to Optuna (the dashboard's learning curves) and its pruner's answer,
    after ``live`` (live tracking, any stage) hears them.

    Optuna hears the fixed points (baseline, search, confirm) only with
    ``train.report_epochs: all``: their curves are in the record, the report and the trackers,
    and a storage write per epoch, ~0.9 ms on SQLite, cost the demo's `run` 16%. A
    multi-objective study takes no intermediate values. Only refine prunes.
    """
    tpe = plan.kind == "tpe"
    if len(config.objectives) > 1 or not (tpe or config.train.report_epochs == "all"):
        return live
    prunes = tpe and config.refine.pruner != "none"
    warmup = config.train.min_epochs  # the pruners answer no before it (see `pruner`)

    def report(event: EpochEvent) -> bool:
        if live is not None:
            live(event)
        trial.report(event.score, event.epoch)
        # Optuna's pruners read every finished trial from the storage before they look at the
        # warm-up, ~24 ms a call on SQLite: ask only where the answer can be yes.
        return prunes and event.epoch >= warmup and trial.should_prune()

    return report
