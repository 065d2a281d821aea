"""``fit()``: the device-aware training loop with early stopping and per-epoch curves."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from gammatune.config import TrainConfig
from gammatune.loss import focal_loss
from gammatune.metrics import average_precision

logger = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True, slots=True)
class EpochEvent:
    """What the progress callback hears after each epoch."""

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val_monitor: float


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


def make_loss(*, gamma: float, alpha: float | None, n_classes: int, minority: int) -> LossFn:
    """Return the focal loss for a model with 1 output (binary) or ``n_classes`` outputs.

    For multiclass, ``alpha`` weights the ``minority`` class and ``1 - alpha`` every other class,
    as it weights the positive class against the negative one in the binary case.
    """
    if n_classes == 2:
        return lambda logits, targets: focal_loss(
            logits.squeeze(1), targets.to(logits.dtype), gamma=gamma, alpha=alpha
        )
    weights = None if alpha is None else [1 - alpha] * n_classes
    if weights is not None:
        weights[minority] = alpha  # type: ignore[call-overload]
    return lambda logits, targets: focal_loss(
        logits, targets, gamma=gamma, alpha=weights, mode="multiclass"
    )


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
) -> FitResult:
    """Train ``model`` in place with AdamW and restore its best epoch.

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

    Returns:
        The curves and why training stopped; ``failure`` is set (and the model left at its best
        finite epoch) when the training loss becomes NaN or infinite.
    """
    start = time.perf_counter()
    x_train, y_train, x_val, y_val = (t.to(device, non_blocking=True) for t in data)
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler(device.type) if autocast == torch.float16 else None
    generator = torch.Generator().manual_seed(seed)
    sign = 1.0 if config.monitor == "pr_auc" else -1.0  # compare as higher-is-better
    best_score, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    curves: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_monitor": []}
    failure, stop_reason = None, "max_epochs"
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(x_train), generator=generator).to(device)
        train_loss = _train_epoch(
            model, x_train, y_train, order, loss_fn, optimizer, config.batch_size, autocast, scaler
        )
        if not math.isfinite(train_loss):
            failure = f"training loss became {train_loss} at epoch {epoch}"
            stop_reason = "non_finite_loss"
            break
        val_loss, monitor = _validate(model, x_val, y_val, loss_fn, autocast, config.monitor)
        for key, value in zip(curves, (train_loss, val_loss, monitor), strict=True):
            curves[key].append(value)
        if on_epoch is not None:
            on_epoch(EpochEvent(epoch, config.epochs, train_loss, val_loss, monitor))
        if sign * monitor > best_score:
            best_score, best_epoch = sign * monitor, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch >= config.min_epochs and epoch - best_epoch >= config.patience:
            stop_reason = "early_stopping"
            break
    model.load_state_dict(best_state)
    return FitResult(
        epochs_run=len(curves["train_loss"]),
        best_epoch=best_epoch,
        stop_reason=stop_reason,
        failure=failure,
        duration_s=time.perf_counter() - start,
        **curves,
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
    total = torch.zeros((), device=x.device)
    for batch in order.split(batch_size):
        with torch.autocast(
            x.device.type, dtype=autocast or torch.float32, enabled=bool(autocast)
        ):
            logits = model(x[batch])
        loss = loss_fn(logits.float(), y[batch])
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        total += loss.detach() * len(batch)
    return float(total.item() / len(order))  # .item() syncs with the GPU: once per epoch


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: Tensor, *, autocast: torch.dtype | None = None, chunk: int = 65536
) -> Tensor:
    """Return the model's float32 logits for ``x`` in evaluation mode, in chunks."""
    model.eval()
    parts = []
    for piece in x.split(chunk):
        with torch.autocast(
            x.device.type, dtype=autocast or torch.float32, enabled=bool(autocast)
        ):
            parts.append(model(piece).float())
    return torch.cat(parts) if parts else torch.zeros(0, 1, device=x.device)


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
    autocast: torch.dtype | None,
    monitor: str,
) -> tuple[float, float]:
    logits = predict_logits(model, x, autocast=autocast)
    val_loss = float(loss_fn(logits, y).item())
    if monitor == "val_loss":
        return val_loss, val_loss
    scores, targets = scores_from_logits(logits), y.cpu().numpy()
    if scores.ndim == 1:
        return val_loss, average_precision(targets, scores)
    per_class = [average_precision(targets == c, scores[:, c]) for c in range(scores.shape[1])]
    return val_loss, float(np.mean(per_class))
