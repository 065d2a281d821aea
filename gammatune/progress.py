"""The terminal's view of a run: a line per trial and progress bars, on stderr."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from gammatune.data import Splits
    from gammatune.training import EpochEvent
    from gammatune.tuning import TrialEvent


def log_handler(console: Console) -> logging.Handler:
    """Where log records go: a terminal gets Rich's columns (the level shown by Rich); a file
    or a pipe (CI logs, ``2> log``) one unwrapped ``LEVEL  message`` line, which grep finds."""
    if console.is_terminal:
        from rich.logging import RichHandler

        return RichHandler(console=console, show_path=False)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s  %(message)s"))
    return handler


def trial_line(event: TrialEvent) -> str:
    """``'search #3: gamma=2 alpha=0.25: objective 0.8123'``."""
    label = event.setting.label
    outcome = (
        f"objective {event.value:.4f}" if event.value is not None else f"FAILED: {event.reason}"
    )
    return f"{event.stage} #{event.number}: {label}: {outcome}"


class Progress:
    """Rich progress bars for trials and epochs, on stderr."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bars = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.trials = self.bars.add_task("trials", total=None, visible=False)
        self.epochs = self.bars.add_task("  epochs", total=None, visible=False)

    def __enter__(self) -> Progress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def show_data(self, splits: Splits, *, strata: bool = False) -> None:
        """The data line: rows per class and the imbalance; for images whose labels are
        strata (a segmentation set, a trainer's ``data.classes``), images per stratum."""
        strata = strata or (splits.units is not None and splits.units.classes is not None)
        counts = splits.class_counts()
        totals = [sum(split[i] for split in counts.values()) for i in range(splits.n_classes)]
        per_class = ", ".join(
            f"{name}: {n}" for name, n in zip(splits.class_names, totals, strict=True)
        )
        sizes = "/".join(str(sum(counts[split])) for split in ("train", "val", "test"))
        ratio = f" (imbalance {splits.imbalance_ratio():.1f}:1)"
        head = "images per stratum: " if strata else ""
        self.bars.console.print(
            f"data: {head}{per_class}{'' if strata else ratio}; train/val/test {sizes}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def start_stage(self, stage: str, total: int) -> None:
        self.bars.reset(self.trials, total=total, completed=0, visible=True, description=stage)

    def epoch_done(self, event: EpochEvent) -> None:
        self.bars.update(self.epochs, total=event.epochs, completed=event.epoch, visible=True)

    def trial_done(self, event: TrialEvent) -> None:
        self.bars.console.print(trial_line(event), markup=False, highlight=False, soft_wrap=True)
        self.bars.advance(self.trials)
