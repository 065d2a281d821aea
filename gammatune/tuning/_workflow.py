"""The workflow as one call: storage, data, device and objective, then the stages in order."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml

from gammatune.config import Config, dump_without_secrets
from gammatune.data import Splits, load_data
from gammatune.device import autocast_dtype, resolve_device, use_threads
from gammatune.fingerprint import IfChanged, check_studies, fingerprint
from gammatune.storage import Stage, make_run_dir, open_storage, storage_errors
from gammatune.training._loop import EpochEvent
from gammatune.tuning._monitor import tracking
from gammatune.tuning._objective import make_objective, parallel_trials
from gammatune.tuning._ray import Executor, ray_objective
from gammatune.tuning._runner import Role, TrialEvent, run_stages
from gammatune.tuning._stages import plan_stage


def run_workflow(
    config: Config,
    stages: Sequence[Stage],
    *,
    on_data: Callable[[Splits], None] | None = None,
    on_stage: Callable[[str, int], None] | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
    on_epoch: Callable[[EpochEvent], None] | None = None,
    role: Role = "single",
    worker: int = 0,
    tensorboard: Path | None = None,
    splits: Splits | None = None,
    executor: Executor = "local",
    address: str | None = None,
    if_changed: IfChanged = "refuse",
    on_set_aside: Callable[[str], None] | None = None,
) -> dict[Stage, optuna.Study]:
    """Run (or continue) ``stages`` in order and return their studies.

    Writes ``config.resolved.yaml`` into the run folder. ``on_stage`` hears each round's name
    (``baseline+search`` train together) and how many trials it will run. Each trial is a
    run of the trackers ``train`` asks for (``tensorboard``, ``mlflow``, ``wandb``; TensorBoard
    also when ``tensorboard`` names a folder), its curves written as each epoch ends.
    ``role="worker"`` runs what a coordinating process prepared (see ``workers``); ``worker``
    is its index. ``splits`` replaces the configured data source, for callers that hold their
    data in memory. ``executor="ray"`` trains each
    group of trials as a task on the Ray cluster at ``address`` (see :func:`ray_objective`;
    ``on_epoch`` and pruning then stay silent); the study stays in the storage. A stored study
    run on a different experiment is refused, or with ``if_changed="replace"`` set aside
    (``on_set_aside`` hears where, see :func:`check_studies`).

    Raises:
        GammatuneError: Invalid data, an unreachable or lost storage, a stage before the ones
            it builds on (refine or confirm before search), or a study run on a different
            experiment (see :func:`fingerprint`).
    """
    if role == "worker" and WORKER_STORAGE in os.environ:
        # From the coordinating process, through the environment: never on a command line.
        config = config.model_copy(update={"storage": os.environ[WORKER_STORAGE]})
    with storage_errors(config.storage_url):
        return _run(config, stages, on_data=on_data, on_stage=on_stage, on_trial=on_trial,
                    on_epoch=on_epoch, role=role, worker=worker, tensorboard=tensorboard,
                    splits=splits, executor=executor, address=address,
                    if_changed=if_changed, on_set_aside=on_set_aside)  # fmt: skip


WORKER_STORAGE = "GAMMATUNE_WORKER_STORAGE"  # the storage URL a worker is handed


def _run(
    config: Config,
    stages: Sequence[Stage],
    *,
    on_data: Callable[[Splits], None] | None,
    on_stage: Callable[[str, int], None] | None,
    on_trial: Callable[[TrialEvent], None] | None,
    on_epoch: Callable[[EpochEvent], None] | None,
    role: Role,
    worker: int,
    tensorboard: Path | None,
    splits: Splits | None,
    executor: Executor = "local",
    address: str | None = None,
    if_changed: IfChanged = "refuse",
    on_set_aside: Callable[[str], None] | None = None,
) -> dict[Stage, optuna.Study]:
    builds_on_search = bool(stages) and stages[0] in ("refine", "confirm")
    if not builds_on_search:  # bad data (or text encoder) fails before the storage is created
        splits = splits or load_data(config)
    storage = open_storage(config)
    trackers = tracking(config, tensorboard)  # an unusable one fails before any training
    if builds_on_search:
        plan_stage(config, stages[0], storage)  # fail before loading data if search is missing
    splits = splits or load_data(config)
    if on_data is not None:
        on_data(splits)
    facts = fingerprint(config, splits)
    if (kept := check_studies(config, storage, facts, if_changed=if_changed)) and on_set_aside:
        on_set_aside(kept)
    if executor == "ray":
        objective, parallel = ray_objective(config, splits, address=address)
    else:
        use_threads(config.train.threads)
        device = resolve_device(config.train.device)
        parallel = parallel_trials(config, splits, device)
        objective = make_objective(
            config,
            splits,
            device=device,
            autocast=autocast_dtype(device, config.train.precision),
            on_epoch=on_epoch,
        )
    _write_resolved(config)
    try:
        return run_stages(
            config,
            stages,
            objective,
            storage=storage,
            parallel=parallel,
            on_stage=on_stage,
            on_trial=on_trial if trackers is None else _both(on_trial, trackers.end),
            live=None if trackers is None else trackers.live(),
            study_attrs=data_facts(splits, getattr(config.data, "classes", None)),
            fingerprint=facts,
            role=role,
            worker=worker,
        )
    finally:
        if trackers is not None:
            trackers.close()


def _both(
    first: Callable[[TrialEvent], None] | None, second: Callable[[TrialEvent], None]
) -> Callable[[TrialEvent], None]:
    def call(event: TrialEvent) -> None:
        if first is not None:
            first(event)
        second(event)

    return call


def data_facts(splits: Splits, scored: list[str] | None = None) -> dict[str, Any]:
    """JSON-safe facts about the data, stored on each study for the report; ``scored``: the
    pixel or object classes of a segmentation or detection trainer (``data.classes``), whose
    labels are then the images' strata."""
    return {
        "class_names": list(splits.class_names),
        "class_counts": splits.class_counts(),
        "imbalance_ratio": round(splits.imbalance_ratio(), 4),
        **({} if scored is None else {"scored_classes": list(scored)}),
    }


def _write_resolved(config: Config) -> None:
    """The experiment as run, every default filled in; the passwords in its URLs hidden."""
    make_run_dir(config)
    text = yaml.safe_dump(dump_without_secrets(config), sort_keys=False)
    (config.run_dir / "config.resolved.yaml").write_text(text, encoding="utf-8")
