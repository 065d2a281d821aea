"""Live tracking: each trial as a run of TensorBoard, MLflow or Weights & Biases.

A run's curves are written as each epoch ends (so a study can be watched while it trains); its
setting and key figures when the trial ends. A trial with no live epochs (a result reused from
its twin, a warm-start copy) writes its stored curves at the end instead. A tracking service
that fails mid-run is dropped with one warning: it never costs a trial or the study.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from gammatune.config import Config
from gammatune.errors import ConfigError
from gammatune.record import Setting
from gammatune.training import EpochEvent, Reporter
from gammatune.tuning._runner import Live, TrialEvent

logger = logging.getLogger(__name__)
CURVES = ("train_loss", "val_loss", "val_monitor")
_TB_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "val_monitor": "val/monitor"}


class Tracker(Protocol):
    """One tracking service, a run per trial (keyed by stage and trial number)."""

    name: str  # the config key, for messages

    def epoch(self, stage: str, number: int, event: EpochEvent) -> None: ...

    def end(self, event: TrialEvent) -> None: ...

    def close(self) -> None: ...


def run_name(stage: str, number: int) -> str:
    return f"{stage}-{number:04d}"


def run_params(event: TrialEvent) -> dict[str, Any]:
    """A trial's setting as flat parameters: the params that are on, repeat, fold, stage."""
    setting: Setting = event.setting
    return {**setting.params(), "repeat": setting.repeat, "fold": setting.fold,
            "stage": event.stage}  # fmt: skip


def stored_epochs(event: TrialEvent) -> list[tuple[int, dict[str, float]]]:
    """The curves of a trial that had no live epochs, as ``(epoch, {curve: value})``."""
    curves = event.curves or {}
    n_epochs = max((len(values) for values in curves.values()), default=0)
    return [
        (epoch + 1, {key: float(v) for key, values in curves.items()
                     if epoch < len(values) and (v := values[epoch]) is not None})
        for epoch in range(n_epochs)
    ]  # fmt: skip


class Tracking:
    """The trackers a workflow writes to: who hears each trial's epochs, and each end."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def live(self) -> Live:
        def hears(stage: str, number: int) -> Reporter:
            def report(event: EpochEvent) -> bool:
                self._each(lambda tracker: tracker.epoch(stage, number, event))
                return False  # tracking never stops a model

            return report

        return hears

    def end(self, event: TrialEvent) -> None:
        self._each(lambda tracker: tracker.end(event))

    def close(self) -> None:
        self._each(lambda tracker: tracker.close())

    def _each(self, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as exc:  # noqa: BLE001 - a service's failure never costs a trial
                logger.warning("%s: stopped logging: %s", tracker.name, exc)
                self.trackers.remove(tracker)


def tracking(config: Config, tensorboard: Path | None = None) -> Tracking | None:
    """The trackers ``config.train`` (and ``--tensorboard``) ask for, or None.

    Raises:
        ConfigError: A tracker's package is not installed.
        StudyError: A tracking service cannot be reached.
    """
    trackers: list[Tracker] = []
    log_dir = tensorboard or (config.run_dir / "tensorboard" if config.train.tensorboard else None)
    if log_dir is not None:
        trackers.append(TensorBoardTracker(log_dir, experiment=config.name))
    if config.train.mlflow is not False:
        from gammatune.tuning._services import MlflowTracker

        uri = config.train.mlflow
        local = (config.run_dir / "mlruns").resolve().as_uri()
        trackers.append(MlflowTracker(local if uri is True else str(uri), config.name))
    if config.train.wandb is not False:
        from gammatune.tuning._services import WandbTracker

        project = config.name if config.train.wandb is True else str(config.train.wandb)
        trackers.append(WandbTracker(project, group=config.name, folder=config.run_dir))
    return Tracking(trackers) if trackers else None


class TensorBoardTracker:
    """Runs ``<experiment>/<stage>-<number>`` (``<stage>-<number>`` without an experiment).

    Each run holds ``loss/train``, ``loss/val`` and ``val/monitor`` per epoch (flushed as each
    epoch ends), ``objective``, and the HParams ``gamma``, ``alpha`` (-1 for off, since HParams
    has no null), ``repeat``, ``fold`` and ``stage`` against the metric ``objective``.

    Raises:
        ConfigError: The optional ``tensorboard`` package is not installed.
    """

    name = "train.tensorboard"

    def __init__(self, log_dir: Path, *, experiment: str | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "train.tensorboard: TensorBoard logs need the tensorboard package; "
                "pip install tensorboard (or gammatune[tensorboard])."
            ) from None
        self._writer_class = SummaryWriter
        self.root = log_dir if experiment is None else log_dir / experiment
        self._open: dict[tuple[str, int], Any] = {}

    def _writer(self, stage: str, number: int) -> Any:
        if (stage, number) not in self._open:
            folder = self.root / run_name(stage, number)
            self._open[stage, number] = self._writer_class(log_dir=str(folder))
        return self._open[stage, number]

    def epoch(self, stage: str, number: int, event: EpochEvent) -> None:
        writer = self._writer(stage, number)
        for key in CURVES:
            writer.add_scalar(_TB_TAGS[key], getattr(event, key), event.epoch)
        writer.flush()  # readable while the trial trains

    def end(self, event: TrialEvent) -> None:
        live = (event.stage, event.number) in self._open
        if not live and not event.curves:
            return
        writer = self._writer(event.stage, event.number)
        if not live:
            for epoch, figures in stored_epochs(event):
                for key, value in figures.items():
                    writer.add_scalar(_TB_TAGS.get(key, key), value, epoch)
        if event.value is not None:
            writer.add_scalar(
                "objective", event.value, len((event.curves or {}).get("val_loss", []))
            )
        from torch.utils.tensorboard.summary import hparams

        setting = event.setting
        params = {
            "gamma": setting.gamma,
            "alpha": -1.0 if setting.alpha is None else setting.alpha,
            "repeat": setting.repeat,
            "fold": setting.fold,
            "stage": event.stage,
        }
        value = event.value if event.value is not None else math.nan
        # Into this run itself (add_hparams would open a sub-run per call).
        for summary in hparams(params, {"objective": value}):
            writer.file_writer.add_summary(summary)
        self._open.pop((event.stage, event.number)).close()

    def close(self) -> None:
        for writer in self._open.values():
            writer.close()
        self._open.clear()


def tensorboard_logger(
    log_dir: Path, *, experiment: str | None = None
) -> Callable[[TrialEvent], None]:
    """A trial callback that writes each ended trial as a TensorBoard run (see
    :class:`TensorBoardTracker`)."""
    return TensorBoardTracker(log_dir, experiment=experiment).end
