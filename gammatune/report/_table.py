"""Trials -> one tidy DataFrame -> CSV: every trial of every stage, read from the storage."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from gammatune.config import Config
from gammatune.errors import StudyError, redact
from gammatune.metrics import OBJECTIVES, Evaluation
from gammatune.outputs import write_whole
from gammatune.record import EXTRA_FIELDS, Setting
from gammatune.report._arms import arm_key
from gammatune.storage import STAGES, load_record, load_study, open_storage, trial_value

_LEADING = [
    "stage", "number", "state", "gamma", "alpha", *EXTRA_FIELDS, "repeat", "fold", "model", "seed",
    "objective", "test_objective", "task",
]  # fmt: skip
_FACTS = ("class_names", "class_counts", "imbalance_ratio", "scored_classes")
_SPLIT_FIELDS = [
    "threshold",
    "precision",
    "recall",
    "f1",
    "f1_macro",
    "pr_auc",
    "roc_auc",
    "ece",
    "brier",
    "f1_at_0_5",
    "best_threshold",
    "f1_at_best_threshold",
    "f1_ci_low",
    "f1_ci_high",
    "tn",
    "fp",
    "fn",
    "tp",
]
_PER_CLASS = ["precision_per_class", "recall_per_class", "f1_per_class", "confusion"]
# Segmentation and detection trials' own figures (Evaluation.task_metrics), where there are.
_TASK_FIELDS = [
    "dice", "dice_micro", "iou", "iou_micro", "ap", "ap50", "ap75", "ar", "dice_per_class",
    "dice_micro_per_class", "iou_per_class", "images_per_class", "ap_per_class", "positives",
    "true_positive", "predicted_positive",
]  # fmt: skip
# For the plots and the verdict; not in the CSV.
_OBJECTS = ["val_pr_curve", "test_pr_curve", "curves", "plan_key", "arm"]
_TRAILING = [
    "curve_flags",
    "undertrained",
    "delta_vs_ce",
    "delta_vs_balanced_ce",
    "test_delta_vs_ce",
    "test_delta_vs_balanced_ce",
    "epochs_run",
    "best_epoch",
    "stop_reason",
    "duration_s",
    "device",
    "fail_reason",
    "warm_start_from",
    "reused_from",
    "scores_file",
    "feasible",
    "repeat_difference",
]


def trials_frame(
    config: Config, storage: optuna.storages.BaseStorage | None = None
) -> pd.DataFrame:
    """Return one row per trial of every stage, read from the study storage alone.

    ``objective`` is the validation objective. ``delta_vs_ce`` compares it with plain
    cross-entropy (gamma 0, alpha off; the mean over its repeats) and ``delta_vs_balanced_ce``
    with cross-entropy at the trial's own alpha; ``test_*`` deltas do the same on the test split.

    Raises:
        StudyError: No stage of this experiment has been run in the storage.
    """
    storage = storage or open_storage(config)
    rows = []
    for stage in STAGES:
        study = load_study(config, stage, storage)
        for trial in [] if study is None else study.get_trials(deepcopy=False):
            if trial.state != TrialState.WAITING:  # enqueued, not started: not a trial yet
                rows.append(_row(stage, trial))
    if not rows:
        raise StudyError(
            f"report: no trials of {config.name!r} in {redact(config.storage_url)}; "
            "run `gammatune baseline` (or `gammatune run`) with this config first."
        )
    frame = pd.DataFrame(rows)
    _add_deltas(frame, OBJECTIVES.get(config.metric, config.metric))
    ordered = _LEADING + [f"{split}_{f}" for split in ("val", "test") for f in _TASK_FIELDS]
    ordered += [f"{split}_{f}" for split in ("val", "test") for f in _SPLIT_FIELDS]
    ordered += [f"{split}_{f}" for split in ("val", "test") for f in _PER_CLASS] + _TRAILING
    ordered += _OBJECTS
    # A test column wherever its validation one is: empty for trials without test scores.
    mirrored = {c for c in ordered if "val_" + c.removeprefix("test_") in frame.columns}
    return frame.reindex(columns=[c for c in ordered if c in frame.columns or c in mirrored])


def confirm_plan(config: Config, storage: optuna.storages.BaseStorage) -> set[str]:
    """The keys (see ``plan_key``) of the confirm stage's current points."""
    study = load_study(config, "confirm", storage)
    plan = [] if study is None else study.user_attrs.get("plan", [])
    return {_plan_key(Setting.from_params(p)) for p in plan}


def _plan_key(setting: Setting) -> str:
    return repr(setting.key())


def curve_flags(curves: dict[str, list[float | None]], best_epoch: int | None = None) -> str:
    """Name what the training curves show, up to the kept (best) epoch; '' if nothing.

    ``overconfident``: by the kept epoch the validation loss had risen 20 % above its minimum
    while the training loss kept falling. The kept epoch is the monitor's best, so with a
    threshold-free monitor (PR-AUC) this is the model ranking better while its scores grow
    more extreme: a calibration matter, not an overfit model (with ``val_loss`` as the monitor
    it cannot happen).
    ``unstable``: the validation monitor changed direction on most epochs, by more than 0.05
    on average.
    """
    train = [v for v in curves.get("train_loss", []) if v is not None]
    val = [v for v in curves.get("val_loss", []) if v is not None]
    monitor = [v for v in curves.get("val_monitor", []) if v is not None]
    kept = min(best_epoch or len(val), len(val), len(train))
    flags = []
    if kept >= 3:
        lowest = min(range(kept), key=val.__getitem__)
        if val[kept - 1] > 1.2 * val[lowest] and train[kept - 1] < train[lowest]:
            flags.append("overconfident")
    steps = [b - a for a, b in zip(monitor, monitor[1:], strict=False)]
    if len(steps) >= 3:
        turns = sum(x * y < 0 for x, y in zip(steps, steps[1:], strict=False)) / (len(steps) - 1)
        if turns > 0.6 and sum(map(abs, steps)) / len(steps) > 0.05:
            flags.append("unstable")
    return ";".join(flags)


def undertrained(best_epoch: int, epochs_run: int, stop_reason: str) -> bool:
    """Whether a trial stopped at the epoch limit while its validation monitor still rose.

    "Still rising" is read robustly, from the kept epoch rather than the last step or two: the
    trial ran to ``train.epochs`` (``stop_reason == "max_epochs"``) and its best epoch lies
    among the last ``max(2, ceil(epochs_run / 10))`` epochs (the last 4 of 40).
    """
    if stop_reason != "max_epochs" or epochs_run < 1:
        return False
    window = max(2, math.ceil(epochs_run / 10))
    return best_epoch > epochs_run - window


def experiment_facts(
    config: Config, storage: optuna.storages.BaseStorage | None = None
) -> dict[str, Any]:
    """The data facts the stages stored on their studies (class names and counts, imbalance)."""
    storage = storage or open_storage(config)
    for stage in STAGES:
        study = load_study(config, stage, storage)
        if study is not None and study.user_attrs:
            return {k: v for k, v in study.user_attrs.items() if k in _FACTS}
    return {}


def _row(stage: str, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    record = load_record(trial)
    row: dict[str, Any] = {"stage": stage, "number": trial.number, "state": trial.state.name}
    if record is None and "gamma" not in trial.params:  # died before its first suggestion
        return {**row, "objective": math.nan, "fail_reason": "interrupted before it started"}
    setting = record.setting if record else Setting.from_params(trial.params)
    row.update(dataclasses.asdict(setting), plan_key=_plan_key(setting), arm=arm_key(setting))
    value = trial_value(trial) if trial.state == TrialState.COMPLETE else None
    row["objective"] = math.nan if value is None else value
    if record is None:
        if trial.state == TrialState.FAIL:
            row["fail_reason"] = "interrupted (the process ended during the trial)"
        return row
    row.update(
        {k: getattr(record, k) for k in _RECORD_FIELDS},
        curves=record.curves,
        curve_flags=curve_flags(record.curves, record.best_epoch),
        undertrained=undertrained(record.best_epoch, record.epochs_run, record.stop_reason),
    )
    row["task"] = _task(record.val)
    for split, evaluation in (("val", record.val), ("test", record.test)):
        if evaluation is not None:
            # Lists (per class, confusion, PR curve) stay objects here; write_csv encodes them.
            row.update({f"{split}_{k}": v for k, v in _split_fields(evaluation).items()})
    return row


def _task(evaluation: Evaluation | None) -> str:
    """What a trial scored, read from its figures: segmentation (Dice), detection (AP) or
    classification."""
    figures = {} if evaluation is None else evaluation.task_metrics
    return (
        "segmentation"
        if "dice" in figures
        else "detection"
        if "ap" in figures
        else ("classification")
    )


_RECORD_FIELDS = (
    "seed", "device", "duration_s", "epochs_run", "best_epoch", "stop_reason", "fail_reason",
    "warm_start_from", "reused_from", "scores_file", "feasible", "repeat_difference",
)  # fmt: skip


def _split_fields(evaluation: Evaluation) -> dict[str, Any]:
    # Shallow: asdict would deep-copy every list (PR curves, confusion), 0.5 s on 87 trials.
    fields = {f.name: getattr(evaluation, f.name) for f in dataclasses.fields(evaluation)}
    fields.update(fields.pop("task_metrics"))
    if len(evaluation.confusion) == 2:  # binary: flat counts too
        (fields["tn"], fields["fp"]), (fields["fn"], fields["tp"]) = evaluation.confusion
    return fields


def _add_deltas(frame: pd.DataFrame, field: str) -> None:
    """Add the validation-objective and test deltas against plain and alpha-balanced CE."""
    for column in ("objective", f"test_{field}", "alpha", "model"):
        if column not in frame:
            frame[column] = math.nan
    frame["test_objective"] = frame[f"test_{field}"]
    done = frame["state"] == "COMPLETE"
    ce = frame[done & (frame["stage"] == "baseline") & (frame["model"] == "configured")]
    plain = ce[ce["alpha"].isna()]
    for prefix, column in (("", "objective"), ("test_", f"test_{field}")):
        frame[f"{prefix}delta_vs_ce"] = frame[column] - plain[column].mean()
        balanced = ce.groupby(ce["alpha"].fillna(-1.0))[column].mean()  # -1: alpha off
        reference = frame["alpha"].fillna(-1.0).map(balanced)
        frame[f"{prefix}delta_vs_balanced_ce"] = frame[column] - reference


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the trials to ``path`` (folders created) and return it.

    Per-class lists and confusion matrices are written as JSON; curves and PR curves, which
    the HTML report draws, are left out.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame.drop(columns=[c for c in _OBJECTS if c in frame])
    for column in table.columns:
        if table[column].map(lambda v: isinstance(v, list)).any():
            table[column] = table[column].map(
                lambda v: json.dumps(v) if isinstance(v, list) else v
            )
    write_whole(path, table.to_csv(index=False))
    return path
