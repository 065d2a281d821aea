"""Train K independent models as one stacked model: the same trainings, at a fraction of the cost.

A tuning run is dozens of small trainings, each too small to keep a machine busy. Stacking K
built-in models (linear, MLP) turns K small matmuls per layer into one batched matmul. Each
member keeps its own initial weights, seed and batch order, gamma and alpha, early stopping and
failure; AdamW is elementwise, so a member trains as it would alone (up to floating-point
rounding; dropout masks are drawn from a shared stream, so with dropout the agreement is
statistical rather than exact).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gammatune.config import TrainConfig
from gammatune.loss import focal_loss
from gammatune.metrics import mean_average_precision
from gammatune.train import (
    EpochEvent,
    EpochTracker,
    FitResult,
    class_weights,
    make_optimizer,
    optimizer_step,
    scores_from_logits,
)


@dataclass(frozen=True, slots=True)
class Member:
    """One trial's model (initialized), its loss and its seed."""

    model: nn.Module
    gamma: float
    alpha: float | None
    seed: int


def stackable(model: nn.Module) -> bool:
    """True for ``nn.Linear`` and ``nn.Sequential`` of Linear/ReLU/Dropout ending in Linear."""
    if isinstance(model, nn.Linear):
        return True
    layers = list(model.children()) if isinstance(model, nn.Sequential) else []
    return (
        bool(layers)
        and isinstance(layers[-1], nn.Linear)
        and all(isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)) for m in layers)
        and all(m.bias is not None for m in layers if isinstance(m, nn.Linear))
    )


def choose_parallel(
    setting: int | str, *, model: nn.Module, n_val: int, batch_size: int, device: torch.device
) -> int:
    """Return ``setting``, or for ``"auto"`` how many members to stack on ``device``.

    On a CPU, 16 (past that, bench/workflow.py gains little); on CUDA, as many as fit in half
    the free memory (parameters, gradients and AdamW state, plus activations), at most 256.
    """
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return 16
    n_parameters = sum(p.numel() for p in model.parameters())
    widest = max(p.shape[0] for p in model.parameters())
    per_member = 4 * (4 * n_parameters + 3 * (batch_size + n_val) * widest)
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(256, free // 2 // per_member)))


def _layers(model: nn.Module) -> list[nn.Module]:
    return [model] if isinstance(model, nn.Linear) else list(model.children())


class StackedMLP(nn.Module):
    """K MLPs of one architecture; weights ``(K, in, out)``, inputs ``(K, B, F)`` or ``(B, F)``."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        layers = [_layers(m) for m in models]
        linear = [[layer for layer in ms if isinstance(layer, nn.Linear)] for ms in layers]
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.stack([ls[i].weight.detach().T for ls in linear]))
                for i in range(len(linear[0]))
            ]
        )
        self.biases = nn.ParameterList(
            [
                nn.Parameter(torch.stack([ls[i].bias.detach()[None] for ls in linear]))
                for i in range(len(linear[0]))
            ]
        )
        dropouts = [layer.p for layer in layers[0] if isinstance(layer, nn.Dropout)]
        self.dropout = dropouts[0] if dropouts else 0.0

    def forward(self, x: Tensor) -> Tensor:
        """Return logits ``(K, B, out)``; a shared ``(B, F)`` input goes to every member."""
        h = x
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = (
                torch.baddbmm(bias, h, weight)
                if h.dim() == 3
                else torch.matmul(h, weight).add_(bias)
            )
            if index < len(self.weights) - 1:
                h = torch.relu_(h)  # in place: the matmul keeps its inputs, not its output
                if self.dropout > 0:
                    h = nn.functional.dropout(h, self.dropout, self.training)
        return h

    def member_state(self, k: int) -> list[Tensor]:
        """Return clones of member ``k``'s weights and biases, layer by layer."""
        return [
            t[k].detach().clone()
            for pair in zip(self.weights, self.biases, strict=True)
            for t in pair
        ]

    def unstack_into(self, k: int, state: list[Tensor], model: nn.Module) -> None:
        """Copy a saved member state (from :meth:`member_state`) into the original model."""
        linear = [m for m in _layers(model) if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, (weight, bias) in zip(
                linear, zip(state[::2], state[1::2], strict=True), strict=True
            ):
                layer.weight.copy_(weight.T)
                layer.bias.copy_(bias[0])


def fit_stacked(
    members: list[Member],
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    n_classes: int,
    minority: int,
    config: TrainConfig,
    device: torch.device,
    autocast: torch.dtype | None = None,
    on_epoch: Callable[[EpochEvent], None] | None = None,
) -> list[FitResult]:
    """Train stackable models together; each member ends at its own best epoch, as with ``fit``.

    Args:
        members: Initialized models of one architecture (see :func:`stackable`), with their
            loss settings and seeds.
        data: ``(x_train, y_train, x_val, y_val)``, shared by every member.
        n_classes: 2 for binary (one output), else the number of classes.
        minority: The class that ``alpha`` weights in multiclass tasks.
        config: As for ``fit``.
        device: Where to train.
        autocast: bfloat16/float16 for mixed precision, or None.
        on_epoch: Called after each epoch with the first still-running member's figures.

    Returns:
        One ``FitResult`` per member, in order; ``duration_s`` is the group's time shared out.
    """
    start = time.perf_counter()
    x_train, y_train, x_val, y_val = (t.to(device) for t in data)
    stacked = StackedMLP([m.model for m in members]).to(device)
    optimizer = make_optimizer(stacked.parameters(), config, device)
    scaler = torch.amp.GradScaler(device.type) if autocast == torch.float16 else None
    generators = [torch.Generator().manual_seed(m.seed) for m in members]
    loss_fn = _stacked_loss(members, n_classes, minority, device, stacked.weights[0].dtype)
    trackers = [EpochTracker(config) for _ in members]
    best = [stacked.member_state(k) for k in range(len(members))]
    for epoch in range(1, config.epochs + 1):
        order = torch.stack([torch.randperm(len(x_train), generator=g) for g in generators]).to(
            device
        )
        train_losses = _train_epoch(
            stacked, x_train, y_train, order, loss_fn, optimizer, config, autocast, scaler
        )
        val_losses, monitors = _validate(stacked, x_val, y_val, loss_fn, config.monitor)
        for k, tracker in enumerate(trackers):
            if tracker.stopped or not tracker.train_loss_is_finite(epoch, train_losses[k]):
                continue
            if tracker.record(epoch, train_losses[k], val_losses[k], monitors[k]):
                best[k] = stacked.member_state(k)
        running = [k for k, t in enumerate(trackers) if not t.stopped]
        if on_epoch is not None and running:
            k = running[0]
            on_epoch(EpochEvent(epoch, config.epochs, train_losses[k], val_losses[k], monitors[k]))
        if not running:
            break
    for k, member in enumerate(members):
        stacked.unstack_into(k, best[k], member.model)
        member.model.to(device)
    duration = (time.perf_counter() - start) / len(members)
    return [tracker.result(duration) for tracker in trackers]


StackedLoss = Callable[[Tensor, Tensor], Tensor]  # (K, B, out) logits, (K, B) labels -> (K,)


def _stacked_loss(
    members: list[Member], n_classes: int, minority: int, device: torch.device, dtype: torch.dtype
) -> StackedLoss:
    """Return the per-member mean focal loss of stacked logits."""
    if n_classes > 2:

        def multiclass(logits: Tensor, targets: Tensor) -> Tensor:
            losses = []
            for k, m in enumerate(members):
                weights = class_weights(m.alpha, n_classes=n_classes, minority=minority)
                losses.append(
                    focal_loss(
                        logits[k], targets[k], gamma=m.gamma, alpha=weights, mode="multiclass"
                    )
                )
            return torch.stack(losses)

        return multiclass
    gamma = torch.tensor([[m.gamma] for m in members], device=device, dtype=torch.float64)
    # alpha_t per member: (negatives, positives); alpha off weighs both 1, as the kernel does.
    pairs = [(1.0, 1.0) if m.alpha is None else (1 - m.alpha, m.alpha) for m in members]
    weight_negative, weight_positive = (
        torch.tensor([[p[i]] for p in pairs], device=device, dtype=torch.float64) for i in (0, 1)
    )

    def binary(logits: Tensor, targets: Tensor) -> Tensor:
        work = torch.promote_types(logits.dtype, torch.float32)
        positive = targets > 0
        alpha_t = torch.where(positive, weight_positive.to(work), weight_negative.to(work))
        loss = focal_loss(
            logits[..., 0],
            positive.to(work),
            gamma=gamma.to(work),
            alpha=alpha_t,
            reduction="none",
        )
        return loss.mean(dim=1)

    return binary


def _train_epoch(
    stacked: StackedMLP,
    x: Tensor,
    y: Tensor,
    order: Tensor,
    loss_fn: StackedLoss,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    autocast: torch.dtype | None,
    scaler: torch.amp.GradScaler | None,
) -> list[float]:
    stacked.train()
    total = torch.zeros(order.shape[0], device=x.device, dtype=torch.float64)
    for batch in order.split(config.batch_size, dim=1):  # (K, B) indices
        with torch.autocast(
            x.device.type, dtype=autocast or torch.float32, enabled=bool(autocast)
        ):
            logits = stacked(x[batch])
        losses = loss_fn(logits, y[batch])  # (K,): each member's mean; their sum trains each alone
        optimizer_step(losses.sum(), optimizer, scaler)
        total += losses.detach().double() * batch.shape[1]
    return (total / order.shape[1]).tolist()  # one sync with the GPU per epoch


@torch.no_grad()
def _validate(
    stacked: StackedMLP,
    x: Tensor,
    y: Tensor,
    loss_fn: StackedLoss,
    monitor: str,
) -> tuple[list[float], list[float]]:
    stacked.eval()  # evaluation in full precision, as predict_logits
    logits = stacked(x)  # (K, N, out)
    targets = y.expand(logits.shape[0], -1)
    val_losses = loss_fn(logits, targets).tolist()
    if monitor == "val_loss":
        return val_losses, val_losses
    labels = y.cpu().numpy()
    return val_losses, [mean_average_precision(labels, scores_from_logits(m)) for m in logits]
