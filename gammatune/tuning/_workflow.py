"""The workflow as one call: storage, data, device and objective, then the stages in order."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from gammatune.config import Config
from gammatune.data import Splits, load_data
from gammatune.device import autocast_dtype, resolve_device
from gammatune.storage import Stage, make_run_dir, open_storage, redact, storage_errors
from gammatune.training._loop import EpochEvent
from gammatune.tuning._monitor import tensorboard_logger
from gammatune.tuning._objective import make_objective, parallel_trials
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
) -> dict[Stage, optuna.Study]:
    """Run (or continue) ``stages`` in order and return their studies.

    Writes ``config.resolved.yaml`` into the run folder. ``on_stage`` hears each round's name
    (``baseline+search`` train together) and how many trials it will run. Curves go to
    TensorBoard when ``train.tensorboard`` is set (into ``runs/<name>/tensorboard``) or
    ``tensorboard`` names a folder. ``role="worker"`` runs what a coordinating process
    prepared (see ``workers``); ``worker`` is its index. ``splits`` replaces the configured
    data source, for callers that hold their data in memory.

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
                    splits=splits)  # fmt: skip


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
) -> dict[Stage, optuna.Study]:
    log_dir = tensorboard or (config.run_dir / "tensorboard" if config.train.tensorboard else None)
    if log_dir is not None:
        on_trial = _both(on_trial, tensorboard_logger(log_dir, experiment=config.name))
    storage = open_storage(config)
    if stages and stages[0] in ("refine", "confirm"):
        plan_stage(config, stages[0], storage)  # fail before loading data if search is missing
    splits = splits or load_data(config)
    if on_data is not None:
        on_data(splits)
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
    return run_stages(
        config,
        stages,
        objective,
        storage=storage,
        parallel=parallel,
        on_stage=on_stage,
        on_trial=on_trial,
        study_attrs=data_facts(splits),
        fingerprint=fingerprint(config, splits),
        role=role,
        worker=worker,
    )


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
    "train": {"device", "parallel", "tensorboard"},
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
