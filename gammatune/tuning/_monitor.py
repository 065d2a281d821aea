"""Live monitoring: every finished trial's per-epoch curves as TensorBoard scalars, and its
gamma and alpha in the HParams plugin."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from gammatune.errors import ConfigError
from gammatune.tuning._runner import TrialEvent

_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "val_monitor": "val/monitor"}


def tensorboard_logger(
    log_dir: Path, *, experiment: str | None = None
) -> Callable[[TrialEvent], None]:
    """Return a trial callback that writes one TensorBoard run per trial.

    Runs are named ``<experiment>/<stage>-<number>`` (``<stage>-<number>`` without an
    experiment), so two experiments logging into one folder stay apart. Each run holds the
    curves per epoch, ``objective``, and the HParams ``gamma``, ``alpha`` (-1 for off, since
    HParams has no null), ``repeat``, ``fold`` and ``stage`` against the metric ``objective``.

    Raises:
        ConfigError: The optional ``tensorboard`` package is not installed.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError:
        raise ConfigError(
            "train.tensorboard: TensorBoard logs need the tensorboard package; "
            "pip install tensorboard (or gammatune[tensorboard])."
        ) from None
    root = log_dir if experiment is None else log_dir / experiment

    def log(event: TrialEvent) -> None:
        if not event.curves:
            return
        with SummaryWriter(log_dir=str(root / f"{event.stage}-{event.number:04d}")) as writer:
            for key, values in event.curves.items():
                for epoch, value in enumerate(values, start=1):
                    if value is not None:
                        writer.add_scalar(_TAGS.get(key, key), value, epoch)
            if event.value is not None:
                writer.add_scalar("objective", event.value, len(event.curves.get("val_loss", [])))
            # Into this run itself (add_hparams would open a sub-run per call).
            setting = event.setting
            params = {
                "gamma": setting.gamma,
                "alpha": -1.0 if setting.alpha is None else setting.alpha,
                "repeat": setting.repeat,
                "fold": setting.fold,
                "stage": event.stage,
            }
            value = event.value if event.value is not None else math.nan
            for summary in hparams(params, {"objective": value}):
                writer.file_writer.add_summary(summary)

    return log
