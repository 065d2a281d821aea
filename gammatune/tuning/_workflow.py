"""The workflow as one call: storage, data, device and objective, then the stages in order."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import yaml

from gammatune.config import Config
from gammatune.data import Splits, load_data
from gammatune.device import autocast_dtype, resolve_device
from gammatune.errors import StudyError
from gammatune.storage import (
    RESULT,
    STAGES,
    Stage,
    check_fingerprint,
    load_study,
    make_run_dir,
    open_storage,
    redact,
    storage_errors,
    study_name,
)
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
IfChanged = Literal["refuse", "replace"]  # a stored study run on a different experiment


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
    storage = open_storage(config)
    trackers = tracking(config, tensorboard)  # an unusable one fails before any training
    if stages and stages[0] in ("refine", "confirm"):
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
            study_attrs=data_facts(splits),
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


def data_facts(splits: Splits) -> dict[str, Any]:
    """JSON-safe facts about the data, stored on each study for the report."""
    return {
        "class_names": list(splits.class_names),
        "class_counts": splits.class_counts(),
        "imbalance_ratio": round(splits.imbalance_ratio(), 4),
    }


# What a trial's result does not depend on: where the study lives, how much of it to run, how
# it is grouped or watched. Everything else of the experiment is in its fingerprint.
_NOT_RESULTS: dict[str, Any] = {
    "name": True,
    "storage": True,
    "output_dir": True,
    "data": {"path"},  # the file's content is hashed instead: it may move, or sit elsewhere
    "train": {"device", "parallel", "tensorboard", "mlflow", "wandb"},
    "baseline": True,
    "search": True,
    "refine": True,
    "confirm": {"top_k", "repeats", "min_positives"},
}


def fingerprint(config: Config, splits: Splits) -> dict[str, Any]:
    """Everything that changes a trial's result, flat (``{"train.lr": 0.001, ...}``): stored
    on each study, so that a rerun on an edited experiment is refused, not mixed in.

    The loaded data is in it as ``data.content``: a hash of the labels of each split, the
    feature shapes and, for a file source, the file's bytes. The standardized features are
    not hashed bit for bit: CPUs sharing a study may round them differently in the last bit.
    """
    facts = _flatten(config.model_dump(mode="json", exclude=_NOT_RESULTS))
    digest = hashlib.sha256()
    for labels in (splits.y_train, splits.y_val, splits.y_test):
        digest.update(np.ascontiguousarray(labels.cpu().numpy().astype(np.int64)).tobytes())
    shapes = [list(x.shape) for x in (splits.x_train, splits.x_val, splits.x_test)]
    digest.update(json.dumps([shapes, list(splits.class_names)]).encode())
    path = getattr(config.data, "path", None)
    if isinstance(path, Path) and path.is_file():
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    facts["data.content"] = f"sha256:{digest.hexdigest()[:16]}"
    return facts


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _write_resolved(config: Config) -> None:
    """The experiment as run, every default filled in; the storage's password hidden."""
    make_run_dir(config)
    resolved = config.model_dump(mode="json")
    if resolved.get("storage"):
        resolved["storage"] = redact(resolved["storage"])
    text = yaml.safe_dump(resolved, sort_keys=False)
    (config.run_dir / "config.resolved.yaml").write_text(text, encoding="utf-8")


def check_studies(
    config: Config,
    storage: optuna.storages.BaseStorage,
    facts: dict[str, Any],
    *,
    if_changed: IfChanged = "refuse",
) -> str | None:
    """Check every stored stage of the experiment against its :func:`fingerprint` before
    anything is added to one; ``replace`` sets those that differ aside (see
    :func:`set_aside`) and returns one line saying what was kept where.

    Raises:
        StudyError: A study was run on a different experiment (``refuse``).
    """
    changed: list[Stage] = []
    for stage in STAGES:  # also those run before: refine builds on search's trials
        if (study := load_study(config, stage, storage)) is None:
            continue
        try:
            check_fingerprint(study, facts)
        except StudyError:
            if if_changed == "refuse":
                raise
            changed.append(stage)
    if not changed:
        return None
    kept = set_aside(config, storage, changed)
    return f"--force-new: kept {kept} in {redact(config.storage_url)}; starting afresh."


def set_aside(config: Config, storage: optuna.storages.BaseStorage, stages: list[Stage]) -> str:
    """Keep the studies of ``stages`` under new names, ``<study>.replaced-<UTC time>``, and
    delete them, so that the stages start afresh; return the new names.

    Each copy (trials, their records and attributes) is complete before its original is
    deleted, and the trials' per-sample score files move with their records
    (``scores/<new name>-<number>.npz``), so that the new study's trials cannot overwrite
    them.

    Raises:
        StudyError: A copy came out incomplete; the original is kept.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    taken = set(optuna.get_all_study_names(storage))

    def free(name: str) -> str:  # set aside twice within a second: -2, -3, ...
        kept = f"{name}.replaced-{stamp}"
        return next(k for k in (kept, *(f"{kept}-{n}" for n in range(2, 99))) if k not in taken)

    names = {study_name(config, s): free(study_name(config, s)) for s in stages}
    moves: dict[str, str] = {}  # score files, old -> new, relative to the run folder

    def moved(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
        record = trial.user_attrs.get(RESULT)
        file = record.get("scores_file") if isinstance(record, dict) else None
        for name, kept in names.items():  # a refine warm-start copy names search's file
            if isinstance(record, dict) and file and file.startswith(f"scores/{name}-"):
                moves[file] = file.replace(f"scores/{name}-", f"scores/{kept}-", 1)
                trial.user_attrs = {
                    **trial.user_attrs,
                    RESULT: {**record, "scores_file": moves[file]},
                }
        return trial

    for name, kept in names.items():
        study = optuna.load_study(study_name=name, storage=storage)
        copy = optuna.create_study(study_name=kept, storage=storage, directions=study.directions)
        for key, value in study.user_attrs.items():
            copy.set_user_attr(key, value)
        copy.add_trials([moved(t) for t in study.get_trials(deepcopy=True)])
        if len(copy.get_trials(deepcopy=False)) != len(study.get_trials(deepcopy=False)):
            raise StudyError(f"study {name!r}: its copy {kept!r} is incomplete; nothing deleted.")
    for file, new in moves.items():
        if (config.run_dir / file).is_file():
            os.replace(config.run_dir / file, config.run_dir / new)
    for name in names:
        optuna.delete_study(study_name=name, storage=storage)
    return ", ".join(f"{name!r} as {kept!r}" for name, kept in names.items())
