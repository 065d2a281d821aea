"""Live monitoring: every finished trial's per-epoch curves as TensorBoard scalars."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gammatune.errors import ConfigError
from gammatune.tuning._runner import TrialEvent

_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "val_monitor": "val/monitor"}


def tensorboard_logger(log_dir: Path) -> Callable[[TrialEvent], None]:
    """Return a trial callback that writes ``log_dir/<stage>-<number>`` runs, one per trial.

    Raises:
        ConfigError: The optional ``tensorboard`` package is not installed.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "train.tensorboard: TensorBoard logs need the tensorboard package; "
            "pip install tensorboard (or gammatune[tensorboard])."
        ) from None

    def log(event: TrialEvent) -> None:
        if not event.curves:
            return
        with SummaryWriter(log_dir=str(log_dir / f"{event.stage}-{event.number:04d}")) as writer:
            for key, values in event.curves.items():
                for epoch, value in enumerate(values, start=1):
                    if value is not None:
                        writer.add_scalar(_TAGS.get(key, key), value, epoch)
            if event.value is not None:
                writer.add_scalar("objective", event.value, len(event.curves.get("val_loss", [])))

    return log
