"""The workflow as one call: storage, data, device and objective, then the stages in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml

from gammatune.config import Config
from gammatune.data import Splits, load_data
from gammatune.device import autocast_dtype, resolve_device
from gammatune.storage import Stage, make_run_dir, open_storage
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
        GammatuneError: Invalid data, an unreachable storage, or a stage before the ones it
            builds on (refine or confirm before search).
    """
    log_dir = tensorboard or (config.run_dir / "tensorboard" if config.train.tensorboard else None)
    if log_dir is not None:
        on_trial = _both(on_trial, tensorboard_logger(log_dir))
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


def _write_resolved(config: Config) -> None:
    make_run_dir(config)
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    (config.run_dir / "config.resolved.yaml").write_text(text, encoding="utf-8")
