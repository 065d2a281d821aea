"""Train K independent models as one stacked model: the same trainings, at a fraction of the cost.

A tuning run is dozens of small trainings, each too small to keep a machine busy. Stacking K
built-in models (linear, MLP) turns K small matmuls per layer into one batched matmul. Each
member keeps its own initial weights, seed and batch order, gamma and alpha, early stopping and
failure; AdamW is elementwise, so a member trains as it would alone (up to floating-point
rounding; dropout masks are drawn from a shared stream, so with dropout the agreement is
statistical rather than exact).
"""

from __future__ import annotations

import math
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


class StackedMLP:
    """K MLPs of one architecture, all their parameters in one flat buffer.

    Layer by layer, the buffer holds the weights ``(K, in, out)`` then the biases ``(K, 1, out)``,
    each contiguous: one cast gives every member's mixed-precision weights, one optimizer pass
    updates them all, and the backward pass writes its gradients straight into place. The
    training copy (``work``, in ``dtype``) and the gradient buffers are allocated once.
    """

    def __init__(
        self, models: list[nn.Module], device: torch.device, dtype: torch.dtype | None = None
    ) -> None:
        linear = [[m for m in _layers(model) if isinstance(m, nn.Linear)] for model in models]
        self.k = len(models)
        self.shapes = [(layer.in_features, layer.out_features) for layer in linear[0]]
        pieces = []
        for i in range(len(self.shapes)):
            pieces.append(torch.stack([ls[i].weight.detach().T for ls in linear]).reshape(-1))
            pieces.append(torch.stack([ls[i].bias.detach() for ls in linear]).reshape(-1))
        self.flat = torch.cat(pieces).to(device)
        same = dtype in (None, self.flat.dtype)
        self.work = self.flat if same else torch.empty_like(self.flat, dtype=dtype)
        self.grad = torch.empty_like(self.work)
        self.master_grad = self.grad if same else torch.empty_like(self.flat)
        self.master_layers, self.work_layers = self.layers(self.flat), self.layers(self.work)
        self.grad_layers = self.layers(self.grad)
        dropouts = [m.p for m in _layers(models[0]) if isinstance(m, nn.Dropout)]
        self.dropout = dropouts[0] if dropouts else 0.0

    def layers(self, flat: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Views of a flat buffer (parameters or gradients) as ``(weight, bias)`` per layer."""
        views, offset = [], 0
        for n_in, n_out in self.shapes:
            weight = flat[offset : offset + self.k * n_in * n_out].view(self.k, n_in, n_out)
            offset += weight.numel()
            bias = flat[offset : offset + self.k * n_out].view(self.k, 1, n_out)
            offset += bias.numel()
            views.append((weight, bias))
        return views

    def forward(
        self, x: Tensor, layers: list[tuple[Tensor, Tensor]], saved: list[Tensor] | None = None
    ) -> Tensor:
        """Return logits ``(K, B, out)``; a shared ``(B, F)`` input goes to every member.

        With ``saved`` (training), dropout is on, and the input of every layer after the first,
        then the dropout masks, are appended for :meth:`backward`.
        """
        h, masks = (x.expand(self.k, -1, -1) if x.dim() == 2 else x), []  # 8x faster than matmul
        for index, (weight, bias) in enumerate(layers):
            h = torch.baddbmm(bias, h.to(weight.dtype), weight)  # layers may mix precisions
            if index == len(layers) - 1:
                break
            h = h.relu_()  # in place: the matmul keeps its inputs, not its output
            if saved is not None and self.dropout > 0:
                masks.append(torch.empty_like(h).bernoulli_(1 - self.dropout) / (1 - self.dropout))
                h = h * masks[-1]
            if saved is not None:
                saved.append(h)
        if saved is not None:
            saved.extend(masks)
        return h

    def backward(self, x: Tensor, saved: list[Tensor], grad: Tensor) -> Tensor:
        """Return the flat gradient (master precision) of every member's loss after a training
        :meth:`forward` on ``work_layers``, given ``d loss / d logits``.

        Written out rather than left to autograd: a third of the ops, none of its bookkeeping,
        and ReLU's mask comes from its output (``threshold_backward``), not a comparison.
        """
        n_hidden = len(self.shapes) - 1
        inputs, masks = [x, *saved[:n_hidden]], saved[n_hidden:]
        grad = grad.to(self.work.dtype)
        for index in range(len(self.shapes) - 1, -1, -1):
            (weight, _), (grad_weight, grad_bias) = (
                self.work_layers[index],
                self.grad_layers[index],
            )
            torch.bmm(inputs[index].transpose(1, 2), grad, out=grad_weight)
            torch.sum(grad, dim=1, keepdim=True, out=grad_bias)
            if index > 0:
                grad = torch.bmm(grad, weight.transpose(1, 2))
                if masks:
                    grad = grad.mul_(masks[index - 1])
                grad = torch.ops.aten.threshold_backward(grad, inputs[index], 0)
        return self.grad if self.master_grad is self.grad else self.master_grad.copy_(self.grad)

    def member_state(self, k: int) -> list[Tensor]:
        """Return clones of member ``k``'s weights and biases, layer by layer."""
        return [t[k].clone() for pair in self.master_layers for t in pair]

    def unstack_into(self, k: int, state: list[Tensor], model: nn.Module) -> None:
        """Copy a saved member state (from :meth:`member_state`) into the original model."""
        linear = [m for m in _layers(model) if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, (weight, bias) in zip(
                linear, zip(state[::2], state[1::2], strict=True), strict=True
            ):
                layer.weight.copy_(weight.T)
                layer.bias.copy_(bias[0])


class FlatAdamW:
    """``torch.optim.AdamW``'s update (tested equal) on one flat buffer, all members at once.

    One pass a step through torch's fused AdamW kernel where this torch has one for the device
    (``torch._fused_adamw_``, what ``AdamW(fused=True)`` runs; 3x faster than eight separate
    passes on a CPU), else eight elementwise passes into preallocated buffers. No
    ``torch.optim`` optimizer: its construction imports ``torch._dynamo``, ~1 s of start-up.
    """

    def __init__(
        self, params: Tensor, *, lr: float, weight_decay: float, fused: bool | None = None
    ) -> None:
        self.params, self.lr, self.weight_decay = params, lr, weight_decay
        self.betas, self.eps, self.steps = (0.9, 0.999), 1e-8, 0
        self.exp_avg, self.exp_avg_sq, self.denom = (torch.zeros_like(params) for _ in range(3))
        self.step_count = torch.zeros((), dtype=torch.float32, device=params.device)
        if fused is None:
            fused = hasattr(torch, "_fused_adamw_") and params.device.type in ("cpu", "cuda")
        self.fused = fused

    def step(self, grad: Tensor) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        if self.fused:
            self.step_count.fill_(self.steps)
            torch._fused_adamw_(
                [self.params], [grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count],
                lr=self.lr, beta1=beta1, beta2=beta2, weight_decay=self.weight_decay,
                eps=self.eps, amsgrad=False, maximize=False,
            )  # fmt: skip
            return
        self.params.mul_(1 - self.lr * self.weight_decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction1, correction2 = 1 - beta1**self.steps, 1 - beta2**self.steps
        torch.sqrt(self.exp_avg_sq, out=self.denom).div_(math.sqrt(correction2)).add_(self.eps)
        self.params.addcdiv_(self.exp_avg, self.denom, value=-self.lr / correction1)


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
        autocast: bfloat16 for mixed precision (float32 master weights), or None. float16,
            which needs loss scaling, is for ``fit`` alone.
        on_epoch: Called after each epoch with the first still-running member's figures.

    Returns:
        One ``FitResult`` per member, in order; ``duration_s`` is the group's time shared out.
    """
    start = time.perf_counter()
    x_train, y_train, x_val, y_val = (t.to(device) for t in data)
    if autocast == torch.float16:
        raise ValueError("fit_stacked: float16 needs loss scaling; train such models with fit")
    stacked = StackedMLP([m.model for m in members], device, autocast)
    optimizer = FlatAdamW(stacked.flat, lr=config.lr, weight_decay=config.weight_decay)
    generators = [torch.Generator().manual_seed(m.seed) for m in members]
    loss_fn = _stacked_loss(members, n_classes, minority, device, stacked.flat.dtype)
    x_work, x_val_work = (x.to(autocast or x.dtype) for x in (x_train, x_val))  # cast once
    trackers = [EpochTracker(config) for _ in members]
    best = [stacked.member_state(k) for k in range(len(members))]
    for epoch in range(1, config.epochs + 1):
        order = torch.stack([torch.randperm(len(x_train), generator=g) for g in generators]).to(
            device
        )
        train_losses = _train_epoch(
            stacked, x_work, y_train, order, loss_fn, optimizer, config.batch_size
        )
        val_losses, monitors = _validate(stacked, x_val_work, y_val, loss_fn, config.monitor)
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
    """Return the per-member mean focal loss of stacked logits, computed in ``dtype``."""
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
    gamma = torch.tensor([[m.gamma] for m in members], device=device, dtype=dtype)
    # alpha_t per member: (negatives, positives); alpha off weighs both 1, as the kernel does.
    pairs = [(1.0, 1.0) if m.alpha is None else (1 - m.alpha, m.alpha) for m in members]
    weight_negative, weight_positive = (
        torch.tensor([[p[i]] for p in pairs], device=device, dtype=dtype) for i in (0, 1)
    )

    def binary(logits: Tensor, targets: Tensor) -> Tensor:
        positive = targets > 0
        alpha_t = torch.where(positive, weight_positive, weight_negative)
        loss = focal_loss(
            logits[..., 0], positive.to(dtype), gamma=gamma, alpha=alpha_t, reduction="none"
        )
        return loss.mean(dim=1)

    return binary


def _train_epoch(
    stacked: StackedMLP,
    x: Tensor,
    y: Tensor,
    order: Tensor,
    loss_fn: StackedLoss,
    optimizer: FlatAdamW,
    batch_size: int,
) -> list[float]:
    """One epoch; ``x`` is already in the training precision, ``order`` is ``(K, N)``."""
    k, n_features = order.shape[0], x.shape[1]
    total = torch.zeros(k, device=x.device, dtype=torch.float64)
    for batch in order.split(batch_size, dim=1):  # (K, B) indices
        index = batch.reshape(-1)
        inputs = x.index_select(0, index).view(k, -1, n_features)
        if stacked.work is not stacked.flat:
            stacked.work.copy_(stacked.flat)  # one cast for all members
        saved: list[Tensor] = []
        logits = stacked.forward(inputs, stacked.work_layers, saved).detach().requires_grad_()
        losses = loss_fn(logits, y.index_select(0, index).view(k, -1))  # (K,) members' means
        (grad,) = torch.autograd.grad(losses.sum(), logits)  # the sum trains each alone
        optimizer.step(stacked.backward(inputs, saved, grad))
        total += losses.detach().double() * batch.shape[1]
    return (total / order.shape[1]).tolist()  # one sync with the GPU per epoch


@torch.no_grad()
def _validate(
    stacked: StackedMLP,
    x: Tensor,
    y: Tensor,
    loss_fn: StackedLoss,
    monitor: str,
    budget: int = 2**19,
) -> tuple[list[float], list[float]]:
    """Each member's validation loss and monitor (for early stopping and the kept epoch).

    The hidden layers run in the training precision (``x``'s dtype; on a CPU with bfloat16
    units 2.5x faster than float32), the output layer on the float32 master weights, so scores
    do not tie as bfloat16 logits would. A trial's reported metrics come from a full-precision
    evaluation of the kept epoch (``predict_logits``). In chunks of ``budget`` activations
    (``K x rows x width``): they stay in cache (2x faster on a CPU than all rows at once), and a
    large validation set does not need K times its memory.
    """
    chunk = max(1, budget // (stacked.k * max(n_out for _, n_out in stacked.shapes)))
    if stacked.work is not stacked.flat:
        stacked.work.copy_(stacked.flat)
    layers = [*stacked.work_layers[:-1], stacked.master_layers[-1]]
    parts = [stacked.forward(part, layers) for part in x.split(chunk)]
    logits = torch.cat(parts, dim=1)
    targets = y.expand(logits.shape[0], -1)
    val_losses = loss_fn(logits, targets).tolist()
    if monitor == "val_loss":
        return val_losses, val_losses
    labels = y.cpu().numpy()
    return val_losses, [mean_average_precision(labels, scores_from_logits(m)) for m in logits]
