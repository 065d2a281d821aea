"""The user's trainer behind the objective: a function in a process of its own, or a command.

Each trial gets a :class:`~gammatune.spec.TrialSpec` (setting, seed, split ids, loss, report
callback), runs in a fresh process (a function) or subprocess (a command), one at a time, and
its payload goes through :mod:`gammatune.tasks` into the same record and per-sample scores as a
built-in trial: nothing after this module knows who trained.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from gammatune.config import Config
from gammatune.data import Splits, refold
from gammatune.detection import GroundTruth, load_coco
from gammatune.errors import ConfigError, DataError
from gammatune.metrics import TASK_OBJECTIVES
from gammatune.record import Setting, TrialRecord, scored
from gammatune.spec import Job, Report, TrialSpec, child_main, load_function, one_line
from gammatune.task_scores import TaskScores, check_payload, evaluate_task, task_of
from gammatune.tasks import (
    Checked,
    PayloadError,
    SplitIds,
    classification_payload,
)
from gammatune.training import EpochEvent, Reporter
from gammatune.tuning._objective import _Context, _evaluated, _minority, loss_terms
from gammatune.tuning._runner import Objective, Outcome

Trial = tuple[str, int]  # (stage, number)


@dataclass(frozen=True, slots=True)
class Ended:
    """How a user's trial ended: ``payload`` (done), ``reason`` (failed) or ``pruned``."""

    payload: object = None
    reason: str | None = None
    pruned: tuple[int, float] | None = None
    curve: tuple[float, ...] = ()


def check_trainer(config: Config) -> None:
    """Import ``trainer.function`` (or check ``trainer.command``'s placeholders and program),
    as ``check`` does and every stage does before it opens a study; nothing without a trainer.

    Raises:
        ConfigError: The function cannot be imported or is not callable, or a command
            placeholder or program is unknown.
        DataError: ``data.annotations`` does not parse or does not name ``data.classes``.
    """
    trainer = config.trainer
    if trainer is None:
        return
    ground_truth(config)  # data.annotations parses and names data.classes
    if trainer.function is not None:
        try:
            load_function(trainer.function, trainer.base_dir)
        except Exception as exc:  # noqa: BLE001 - any error the user's module raises
            raise ConfigError(
                f"trainer.function: cannot use {trainer.function!r}: {one_line(exc)}"
            ) from None
    else:
        from gammatune.tuning._command import check_command

        check_command(trainer.command or [], trainer.base_dir)


def trainer_objective(config: Config, splits: Splits, *, device: torch.device) -> Objective:
    """Return the objective of a ``trainer`` experiment: each setting one user trial.

    Raises:
        ConfigError: ``trainer.function`` cannot be imported or is not callable, or a
            ``trainer.command`` placeholder or program is unknown.
    """
    trainer = config.trainer
    assert trainer is not None and splits.units is not None
    check_trainer(config)
    context = _Context(config, splits, device, None, None)
    truth = ground_truth(config)

    def objective(
        settings: list[Setting],
        reporters: list[Reporter | None] | None = None,
        trials: list[Trial] | None = None,
    ) -> list[Outcome]:
        hears = reporters or [None] * len(settings)
        names = trials or [("trial", i) for i in range(len(settings))]
        return [
            _one(context, setting, hear, name, truth)
            for setting, hear, name in zip(settings, hears, names, strict=True)
        ]

    return objective


def ground_truth(config: Config) -> GroundTruth | None:
    """``data.annotations`` read (its categories checked against ``data.classes``), or None.

    Raises:
        DataError: The file does not parse, or its categories are not ``data.classes``.
    """
    path = getattr(config.data, "annotations", None)
    if path is None:
        return None
    try:  # read once while unchanged: every trial's spec asks for its classes
        stat = path.stat()
        truth = _coco(str(path), stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:
        truth = load_coco(path)  # its one-line DataError
    classes = getattr(config.data, "classes", None)
    if classes is not None and tuple(classes) != truth.class_names:
        raise DataError(
            f"data.annotations: {path.name}'s categories {list(truth.class_names)} (in id "
            f"order) are not data.classes {list(classes)}"
        )
    return truth


@functools.lru_cache(maxsize=4)
def _coco(path: str, mtime_ns: int, size: int) -> GroundTruth:
    return load_coco(path)


def _one(
    context: _Context, setting: Setting, hear: Reporter | None, trial: Trial,
    truth: GroundTruth | None,
) -> Outcome:  # fmt: skip
    config, trainer = context.config, context.config.trainer
    assert trainer is not None
    splits = refold(context.splits, setting.fold, seed=config.split_seed)
    spec = make_spec(context, setting, splits, trial)
    started = time.perf_counter()
    ended = _train(config, spec, None if hear is None else _reporting(hear, config.train.epochs))
    record = TrialRecord(
        setting,
        seed=spec.seed,
        device=spec.device,
        duration_s=round(time.perf_counter() - started, 3),
        epochs_run=len(ended.curve),
        best_epoch=len(ended.curve),
        stop_reason="pruned" if ended.pruned else "completed",
        curves={"val_monitor": [round(v, 6) if math.isfinite(v) else None for v in ended.curve]},
    )
    if ended.pruned is not None:
        return replace(record, value=ended.pruned[1]), None
    if ended.reason is not None:
        return replace(record, fail_reason=ended.reason), None
    units = splits.units
    assert units is not None
    ids = SplitIds(
        units.val_ids, units.test_ids, splits.y_val.numpy(), splits.y_test.numpy(),
        len(spec.classes),
    )  # fmt: skip
    try:
        checked = check_payload(ended.payload, ids, truth)
    except PayloadError as exc:
        return replace(record, fail_reason=f"payload: {exc}"), None
    weights = None if checked.weights is None else str(spec.workdir / checked.weights)
    record = replace(record, weights_file=weights, extra=checked.extra)
    if not isinstance(checked, Checked):  # pixel counts or boxes
        return _judged(config, record, checked.scores), checked.scores
    if config.confirm.check_determinism and _checks(config, setting, trial):
        again = replace(spec, workdir=spec.workdir.with_name(spec.workdir.name + "-again"))
        again.workdir.mkdir(exist_ok=True)
        difference = _difference(checked.scores.val, _train(config, again, None), ids)
        record = replace(record, repeat_difference=difference)
    return _evaluated(context, record, checked.scores, splits)


def _judged(config: Config, record: TrialRecord, scores: TaskScores) -> TrialRecord:
    """A segmentation or detection trial's record, scored; failed in one line where an
    objective is not one of its task's."""
    task = task_of(scores)
    known = TASK_OBJECTIVES[task]
    wanted = [*config.objectives, *config.constraints]
    if unknown := [m for m in wanted if m not in known]:
        reason = (
            f"objective {unknown[0]!r} is not scored on {task} trials; use one of "
            f"{', '.join(known)}"
        )
        return replace(record, fail_reason=reason)
    threshold = config.threshold if isinstance(config.threshold, float) else 0.5
    try:
        val, test = evaluate_task(scores, threshold=threshold)
    except ImportError as exc:  # pycocotools, for detection
        return replace(record, fail_reason=f"{exc}: pip install 'gammatune[detection]'")
    return scored(config, record, val, test)


def _train(config: Config, spec: TrialSpec, report: Report | None) -> Ended:
    trainer = config.trainer
    assert trainer is not None
    if trainer.function is not None:
        env = dict(trainer.env)
        if trainer.is_builtin:  # model.kind: unet reads the experiment's choices from its env
            from gammatune.device import cpu_threads
            from gammatune.segment import unet_options

            env.update(unet_options(config, threads=cpu_threads(config.train.threads)).to_env())
        job = Job(trainer.function, trainer.base_dir, env, spec, os.getpid())
        return run_function(job, report, timeout_s=trainer.timeout_s)
    from gammatune.tuning._command import run_command

    return run_command(trainer.command or [], spec, trainer, report)


def _checks(config: Config, setting: Setting, trial: Trial) -> bool:
    """Whether this trial is the one ``confirm.check_determinism`` trains twice: confirm's
    plain cross-entropy trial of the first repeat and fold."""
    first = setting.repeat == config.confirm_repeats[0] and setting.fold <= 1
    return trial[0] == "confirm" and first and not setting.is_focal and not setting.is_weighted


def _difference(scores: np.ndarray, ended: Ended, ids: SplitIds) -> float:
    """The largest absolute difference of validation scores between two trainings (NaN where
    the second one failed)."""
    try:
        again = classification_payload(ended.payload, ids).scores.val
    except PayloadError:
        return math.nan
    return float(np.max(np.abs(scores - again)))


def trial_spec(
    config: Config, splits: Splits, setting: Setting, *, trial: Trial, device: torch.device
) -> TrialSpec:
    """The :class:`~gammatune.spec.TrialSpec` a user's trainer gets for ``setting`` as trial
    ``(stage, number)``; its workdir is made."""
    context = _Context(config, splits, device, None, None)
    return make_spec(context, setting, refold(splits, setting.fold, seed=config.split_seed), trial)


def make_spec(context: _Context, setting: Setting, splits: Splits, trial: Trial) -> TrialSpec:
    """The spec of ``setting`` on ``splits``: a setting and its twin share seed and ids."""
    config, units = context.config, splits.units
    assert units is not None
    gamma, alpha = loss_terms(config, setting, splits)
    stage, number = trial
    workdir = config.run_dir / "workdirs" / f"{stage}-{number:05d}"
    workdir.mkdir(parents=True, exist_ok=True)
    classes = payload_classes(config, splits)
    return TrialSpec(
        gamma=setting.gamma,
        alpha=setting.alpha,
        params={**setting.params(), "lr": setting.lr or config.train.lr},
        seed=context.seed(setting),
        repeat=setting.repeat,
        fold=setting.fold,
        stage=stage,
        train_ids=units.train_ids,
        val_ids=units.val_ids,
        test_ids=units.test_ids,
        table=units.table,
        classes=classes,
        positive=classes[1] if len(classes) == 2 else None,
        device=context.device.type,
        epochs=config.train.epochs,
        workdir=workdir.resolve(),
        loss_terms=(gamma, alpha, _minority(splits)),
    )


def payload_classes(config: Config, splits: Splits) -> tuple[str, ...]:
    """The classes a payload scores: ``data.classes`` where declared (pixel or object
    classes; the labels are then strata), a segmentation set's pixel classes (``model.kind:
    unet``: its labels are strata too), else the label column's."""
    if splits.units is not None and splits.units.classes is not None:
        return splits.units.classes
    declared = getattr(config.data, "classes", None)
    if declared is None and getattr(config.data, "annotations", None) is not None:
        return ground_truth(config).class_names  # type: ignore[union-attr]
    return splits.class_names if declared is None else tuple(declared)


def _reporting(hear: Reporter, epochs: int) -> Report:
    """``(step, value) -> stop?``: a reported value as an epoch event, to the pruner."""

    def report(step: int, value: float) -> bool:
        nan = math.nan
        return bool(hear(EpochEvent(step, epochs, nan, nan, value, value)))

    return report


def run_function(job: Job, report: Report | None, *, timeout_s: float | None) -> Ended:
    """Run ``job`` in a fresh process; answer its reports; stop it after ``timeout_s``."""
    context = _processes()
    ours, theirs = context.Pipe()
    process = context.Process(target=child_main, args=(theirs, job), name="gammatune-trial")
    deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
    curve: list[float] = []
    try:
        process.start()  # the first waits for the fork server to import (Ctrl-C may land here)
        theirs.close()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return Ended(
                    reason=f"timed out after {timeout_s:g} s (trainer.timeout_s)",
                    curve=tuple(curve),
                )
            if not ours.poll(min(left, 1.0)):
                continue
            try:
                message = ours.recv()
            except EOFError:  # the process died without a word (a crash, kill -9, OOM killer)
                process.join(5)
                return Ended(
                    reason=f"the trial's process ended with exit code {process.exitcode}",
                    curve=tuple(curve),
                )
            if message[0] == "report":
                curve.append(float(message[2]))
                ours.send(False if report is None else report(message[1], message[2]))
            elif message[0] == "done":
                return Ended(payload=message[1], curve=tuple(curve))
            elif message[0] == "pruned":
                return Ended(pruned=(message[1], message[2]), curve=tuple(curve))
            else:
                return Ended(reason=message[1], curve=tuple(curve))
    finally:
        _stop(process)


def _processes() -> Any:  # a SpawnContext or a ForkServerContext
    """Fresh processes for users' trials: forked from a server that imported torch, pandas,
    scikit-learn's metrics and the U-Net's trial (``model.kind: unet``) once (a trial starts in
    ~0.1 s, not ~1 s), never from this process, whose threads (heartbeats) and CUDA state a
    fork would copy; spawned where there is no fork server. ``torch._dynamo`` too: building
    any torch optimizer imports it (1.4 s a trial on a 2-core Xeon, each trial a new process)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["gammatune.spec", "pandas", "torch", "torch._dynamo", "sklearn.metrics",
         "gammatune.segment"]
    )  # fmt: skip
    return context


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    if process.pid is None:  # never started (its child, if forked, sees this process go)
        return
    process.join(2)
    if process.is_alive():
        process.terminate()
        process.join(5)
    if process.is_alive():
        process.kill()
        process.join()
