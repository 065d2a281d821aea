"""``fit()``: the device-aware training loop with early stopping and per-epoch curves."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from gammatune.config import TrainConfig
from gammatune.loss._kernel import focal_loss
from gammatune.loss._schedules import GammaSchedule
from gammatune.metrics import mean_average_precision

logger = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor], Tensor]
Keep = Literal["best", "last"]  # the epoch a training ends with
# A trial's loss terms: a number, one per class (binary: negatives, positives), or a schedule.
Gamma = float | tuple[float, ...] | GammaSchedule
Weight = float | tuple[float, ...] | None
# Hears one model's epochs, each as it ends (pruning, live tracking); True stops that model.
Reporter = Callable[["EpochEvent"], bool]


@dataclass(frozen=True, slots=True)
class EpochEvent:
    """What the progress callback and a :data:`Reporter` hear after each epoch; ``score`` is
    the validation monitor as higher-is-better (``val_loss`` negated)."""

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val_monitor: float
    score: float


@dataclass(frozen=True, slots=True)
class FitResult:
    """The outcome of one training; ``failure`` says why it failed, and is None otherwise.

    Curves hold one value per epoch trained. ``best_epoch`` (1-based) is the epoch whose weights
    the model holds after ``fit``.
    """

    epochs_run: int
    best_epoch: int
    stop_reason: str
    failure: str | None
    duration_s: float
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_monitor: list[float] = field(default_factory=list)


def make_loss(*, gamma: Gamma, alpha: Weight, n_classes: int, minority: int) -> LossFn:
    """Return the focal loss for a model with 1 output (binary) or ``n_classes`` outputs.

    ``gamma`` and ``alpha`` are as for :func:`gammatune.loss.focal_loss` (a number, per class,
    or an adaptive schedule), except that in multiclass a number ``alpha`` weights the
    ``minority`` class and ``1 - alpha`` every other class, as it weights the positive class
    against the negative one in the binary case.
    """
    if n_classes == 2:
        return lambda logits, targets: focal_loss(
            logits.squeeze(1), targets.to(logits.dtype), gamma=gamma, alpha=alpha
        )
    weights = class_weights(alpha, n_classes=n_classes, minority=minority)
    return lambda logits, targets: focal_loss(
        logits, targets, gamma=gamma, alpha=weights, mode="multiclass"
    )


def class_weights(alpha: Weight, *, n_classes: int, minority: int) -> list[float] | None:
    """Multiclass alpha: ``alpha`` on the minority class, ``1 - alpha`` on every other one;
    per-class weights as they are."""
    if alpha is None:
        return None
    if isinstance(alpha, tuple):
        return list(alpha)
    weights = [1 - alpha] * n_classes
    weights[minority] = alpha
    return weights


def fit(
    model: nn.Module,
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    loss_fn: LossFn,
    config: TrainConfig,
    device: torch.device,
    autocast: torch.dtype | None = None,
    seed: int = 0,
    on_epoch: Callable[[EpochEvent], None] | None = None,
    keep: Keep = "best",
    report: Reporter | None = None,
) -> FitResult:
    """Train ``model`` in place with AdamW and restore its best epoch (``keep="last"``: train
    every epoch and keep the last, for a refit whose validation rows are training rows).

    Args:
        model: Maps ``(B, F)`` features to ``(B, 1)`` (binary) or ``(B, C)`` logits.
        data: ``(x_train, y_train, x_val, y_val)``; moved to ``device`` once, batched by index.
        loss_fn: ``(logits, targets) -> scalar``.
        config: Epochs, batch size, optimizer, early stopping (``monitor`` on validation, a smooth
            threshold-free signal, after ``min_epochs``).
        device: Where to train.
        autocast: bfloat16/float16 for mixed precision, or None for float32.
        seed: Seeds the batch order.
        on_epoch: Called after every epoch.
        report: Hears each epoch's monitor (see :meth:`EpochTracker.report`); True prunes.

    Returns:
        The curves and why training stopped; ``failure`` is set (and the model left at its best
        finite epoch) when the training loss becomes NaN or infinite.
    """
    start = time.perf_counter()
    x_train, y_train, x_val, y_val = (t.to(device, non_blocking=True) for t in data)
    model.to(device)
    optimizer = make_optimizer(model.parameters(), config, device)
    scaler = torch.amp.GradScaler(device.type) if autocast == torch.float16 else None
    generator = torch.Generator().manual_seed(seed)
    tracker = EpochTracker(config, keep)
    batch_rows = config.batch_rows(len(x_train))
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(x_train), generator=generator).to(device)
        train_loss = _train_epoch(
            model, x_train, y_train, order, loss_fn, optimizer, batch_rows, autocast, scaler
        )
        if tracker.train_loss_is_finite(epoch, train_loss):
            val_loss, monitor = _validate(model, x_val, y_val, loss_fn, config.monitor)
            if tracker.record(epoch, train_loss, val_loss, monitor):
                best_state = copy.deepcopy(model.state_dict())
            tracker.report(report)
            if on_epoch is not None:
                on_epoch(tracker.event())
        if tracker.stopped:
            break
    model.load_state_dict(best_state)
    return tracker.result(time.perf_counter() - start)


def make_optimizer(
    parameters: Iterable[nn.Parameter], config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel on CPU and CUDA (about 6x faster a step on a CPU)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused
    )


class EpochTracker:
    """One model's curves and early stopping: which epoch is best, when to stop, and why.

    The monitor is compared as higher-is-better (``val_loss`` is negated), a tie broken by
    the lower validation loss; training stops once ``patience`` epochs pass without
    improvement, never before ``min_epochs``.
    """

    def __init__(self, config: TrainConfig, keep: Keep = "best") -> None:
        self.config, self.keep = config, keep
        self.sign = 1.0 if config.monitor == "pr_auc" else -1.0
        self.best_score, self.best_epoch, self.best_loss = -math.inf, 0, math.inf
        self.curves: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_monitor": []}
        self.failure: str | None = None
        self.stop_reason = "max_epochs"
        self.stopped = False

    def train_loss_is_finite(self, epoch: int, train_loss: float) -> bool:
        """Record a failure and stop when the epoch's training loss is NaN or infinite."""
        if math.isfinite(train_loss):
            return True
        self.failure = f"training loss became {train_loss} at epoch {epoch}"
        self.stop_reason, self.stopped = "non_finite_loss", True
        return False

    def record(self, epoch: int, train_loss: float, val_loss: float, monitor: float) -> bool:
        """Add an epoch; return True when it is the best so far (keep its weights)."""
        for key, value in zip(self.curves, (train_loss, val_loss, monitor), strict=True):
            self.curves[key].append(value)
        if self.keep == "last":
            self.best_epoch = epoch
            return True
        score = self.sign * monitor
        # A tie breaks on the validation loss: on a small validation split PR-AUC reaches 1.0
        # in the first epoch, while the scores still sit at the class prior (no positive
        # above 0.5); keeping that epoch kept an untrained network.
        if score > self.best_score or (score == self.best_score and val_loss < self.best_loss):
            self.best_score, self.best_epoch, self.best_loss = score, epoch, val_loss
            return True
        if epoch >= self.config.min_epochs and epoch - self.best_epoch >= self.config.patience:
            self.stop_reason, self.stopped = "early_stopping", True
        return False

    def event(self) -> EpochEvent:
        """The last recorded epoch."""
        train_loss, val_loss, monitor = (self.curves[k][-1] for k in self.curves)
        epoch = len(self.curves["train_loss"])
        return EpochEvent(
            epoch, self.config.epochs, train_loss, val_loss, monitor, self.sign * monitor
        )

    def report(self, reporter: Reporter | None) -> None:
        """Tell ``reporter`` the last epoch; stop with ``pruned`` when it says so."""
        if reporter is not None and reporter(self.event()):
            self.stop_reason, self.stopped = "pruned", True

    def result(self, duration_s: float) -> FitResult:
        return FitResult(
            epochs_run=len(self.curves["train_loss"]),
            best_epoch=self.best_epoch,
            stop_reason=self.stop_reason,
            failure=self.failure,
            duration_s=duration_s,
            **self.curves,
        )


def _train_epoch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    order: Tensor,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    autocast: torch.dtype | None,
    scaler: torch.amp.GradScaler | None,
) -> float:
    model.train()
    total = torch.zeros((), device=x.device, dtype=torch.float64)
    for batch in order.split(batch_size):
        with torch.autocast(
            x.device.type, dtype=autocast or torch.float32, enabled=bool(autocast)
        ):
            logits = model(x[batch])
        loss = loss_fn(logits, y[batch])  # the kernel computes half precision in float32
        optimizer_step(loss, optimizer, scaler)
        total += loss.detach().double() * len(batch)
    return float(total.item() / len(order))  # .item() syncs with the GPU: once per epoch


def optimizer_step(
    loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    """Backpropagate ``loss`` and step; float16 goes through the gradient scaler."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, *, chunk: int = 65536) -> Tensor:
    """Return the model's logits for ``x`` in evaluation mode, in chunks.

    Always in the model's own precision, not autocast: half-precision scores tie often and
    would blur PR-AUC and the threshold choice, and evaluation is cheap.
    """
    model.eval()
    return torch.cat([model(piece) for piece in x.split(chunk)]) if len(x) else x.new_zeros(0, 1)


def scores_from_logits(logits: Tensor) -> np.ndarray:
    """Return positive-class probabilities ``(N,)`` for one output, else class probabilities."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0]).cpu().double().numpy()
    return torch.softmax(logits, dim=1).cpu().double().numpy()


def _validate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    monitor: str,
) -> tuple[float, float]:
    logits = predict_logits(model, x)
    val_loss = float(loss_fn(logits, y).item())
    if monitor == "val_loss":
        return val_loss, val_loss
    return val_loss, mean_average_precision(y.cpu().numpy(), scores_from_logits(logits))
