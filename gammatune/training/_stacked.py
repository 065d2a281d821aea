"""Train K independent trials together, as one stack (the engines: ``_engines``).

A tuning run is dozens of small trainings, each too small to keep a machine busy. Each member
keeps its own initial weights, seed and batch order, gamma and alpha, early stopping and
failure, and ends at its own best epoch, as with ``fit``.

A member that stops (early stopping, pruning, a non-finite loss) leaves the stack at the end of
that epoch: its rows of the parameters and of AdamW's state are dropped, so the members still
running step at the cost of their own number. Compaction copies the stack's parameters and
moments once (about one optimizer pass of memory traffic) where an epoch is ``N / batch``
steps, each one a stopped member's share cheaper afterwards, so it is done whenever a member
stops (``compact_below=1``), except after the last epoch. Nothing of a member changes: its
weights, moments, batch order and dropout stream go along.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gammatune.config import TrainConfig
from gammatune.loss import GammaSchedule, binary_alpha_weights, focal_loss
from gammatune.metrics import mean_average_precision
from gammatune.training._engines import StackedLoss, StackedMLP, VmappedModels, stackable
from gammatune.training._loop import (
    EpochEvent,
    EpochTracker,
    FitResult,
    Gamma,
    Keep,
    Reporter,
    Weight,
    make_loss,
    scores_from_logits,
)

Stack = StackedMLP | VmappedModels


@dataclass(frozen=True, slots=True)
class Member:
    """One trial's model (initialized), its loss terms (see ``make_loss``), its seed, and who
    hears its epochs (a pruner: True stops this member alone)."""

    model: nn.Module
    gamma: Gamma
    alpha: Weight
    seed: int
    report: Reporter | None = None


def choose_parallel(
    setting: int | str,
    *,
    model: nn.Module,
    n_features: int,
    batch_size: int,
    device: torch.device,
) -> int:
    """Return ``setting``, or for ``"auto"`` how many members to stack on ``device``.

    On a CPU, 16 (past that, bench/workflow.py gains little); on CUDA, as many as fit in half
    the free memory, at most 256: per member, parameters with their gradients and AdamW state,
    and the activations of a training batch (kept for the backward) and of a validation chunk.
    """
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return 16
    n_parameters = sum(p.numel() for p in model.parameters())
    activations = _activations_per_row(model, n_features)
    per_member = 4 * (4 * n_parameters + activations * (2 * batch_size + 4096))
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(256, free // 2 // per_member)))


def _activations_per_row(model: nn.Module, n_features: int) -> int:
    """How many numbers the model's layers output for one input row (measured on a copy)."""
    probe = copy.deepcopy(model).cpu().eval()
    sizes: list[int] = []
    for module in probe.modules():
        if not list(module.children()):
            module.register_forward_hook(lambda _m, _i, out: sizes.append(_numel(out)))
    dtype = next(probe.parameters()).dtype
    with torch.no_grad():
        probe(torch.zeros(1, n_features, dtype=dtype))
    return max(1, sum(sizes))


def _numel(output: object) -> int:
    """Numbers in a layer's output: a tensor, or (plugin models) a tuple/list/dict of them."""
    if isinstance(output, Tensor):
        return output.numel()
    if isinstance(output, dict):
        output = list(output.values())
    return sum(map(_numel, output)) if isinstance(output, (tuple, list)) else 0


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
    keep: Keep = "best",
    compact_below: float = 1.0,
) -> list[FitResult]:
    """Train models of one architecture together; each ends at its own best epoch, as ``fit``.

    Linear and MLP models train as a :class:`StackedMLP`, others as :class:`VmappedModels`
    (check :func:`gammatune.stacks.vmappable` first).

    Args:
        members: Initialized models of one architecture, with their loss settings and seeds.
        data: ``(x_train, y_train, x_val, y_val)``, shared by every member.
        n_classes: 2 for binary (one output), else the number of classes.
        minority: The class that ``alpha`` weights in multiclass tasks.
        config: As for ``fit``.
        device: Where to train.
        autocast: bfloat16 for mixed precision (float32 master weights), or None. float16,
            which needs loss scaling, is for ``fit`` alone.
        on_epoch: Called after each epoch with the first still-running member's figures.
        keep: As for ``fit``.
        compact_below: After an epoch in which members stopped (early stopping, pruning, a
            non-finite loss), the stack drops them when fewer than this share of its current
            members still run: 1 (default) as soon as one stops, 0 never (a stopped member
            then computes on, unheard, until the stack ends; ``bench/compaction.py`` compares).

    Returns:
        One ``FitResult`` per member, in order; ``duration_s`` is the group's time shared out.
    """
    start = time.perf_counter()
    x_train, y_train, x_val, y_val = (t.to(device) for t in data)
    if autocast == torch.float16:
        raise ValueError("fit_stacked: float16 needs loss scaling; train such models with fit")
    models = [m.model for m in members]
    engine = StackedMLP if all(stackable(m) for m in models) else VmappedModels
    stacked = engine(
        models,
        device,
        autocast,
        lr=config.lr,
        weight_decay=config.weight_decay,
        seeds=[m.seed for m in members],
    )
    generators = [torch.Generator().manual_seed(m.seed) for m in members]
    dtype = torch.promote_types(next(models[0].parameters()).dtype, torch.float32)
    x_work = x_train.to(stacked.input_dtype)  # cast once, gathered every batch
    trackers = [EpochTracker(config, keep) for _ in members]
    batch_rows = config.batch_rows(len(x_train))
    best = [stacked.member_state(k) for k in range(len(members))]
    rows = list(range(len(members)))  # the member at each row of the stack
    loss_fn = _stacked_loss(members, n_classes, minority, device, dtype)
    for epoch in range(1, config.epochs + 1):
        order = torch.stack([torch.randperm(len(x_train), generator=generators[k]) for k in rows])
        train_losses = _train_epoch(
            stacked, x_work, y_train, order.to(device), loss_fn, batch_rows
        )
        val_losses, monitors = _validate(stacked, x_val, y_val, loss_fn, config.monitor)
        for row, k in enumerate(rows):
            tracker = trackers[k]
            if tracker.stopped or not tracker.train_loss_is_finite(epoch, train_losses[row]):
                continue
            if tracker.record(epoch, train_losses[row], val_losses[row], monitors[row]):
                best[k] = stacked.member_state(row)
            tracker.report(members[k].report)
        running = [k for k in rows if not trackers[k].stopped]
        if on_epoch is not None and running:
            on_epoch(trackers[running[0]].event())
        if not running:
            break
        if len(running) < compact_below * len(rows) and epoch < config.epochs:
            stacked.compact([rows.index(k) for k in running])
            rows = running
            loss_fn = _stacked_loss([members[k] for k in rows], n_classes, minority, device, dtype)
    for k, member in enumerate(members):
        stacked.unstack_into(k, best[k], member.model)
        member.model.to(device)
    duration = (time.perf_counter() - start) / len(members)
    return [tracker.result(duration) for tracker in trackers]


def _stacked_loss(
    members: list[Member], n_classes: int, minority: int, device: torch.device, dtype: torch.dtype
) -> StackedLoss:
    """Return the per-member mean focal loss of stacked logits, computed in ``dtype``.

    Binary members with one fixed gamma share one vectorized pass, binary members with a gamma
    per class another; the others (multiclass, an adaptive schedule) run one by one. Which pass
    a member takes depends on its own loss alone, so its result never depends on the members
    beside it (float32 rounds the passes differently: a gamma per element is another
    vectorized loop than one per member, on an AVX2 CPU in the last bit).
    """
    kinds: dict[str, list[int]] = {}
    for k, m in enumerate(members):
        if n_classes > 2 or isinstance(m.gamma, GammaSchedule):
            kind = "alone"
        else:
            negative, positive = _pair(m.gamma)
            kind = "fixed" if negative == positive else "per_class"
        kinds.setdefault(kind, []).append(k)
    losses = [
        _one_by_one([members[k] for k in ks], n_classes, minority)
        if kind == "alone"
        else _vectorized_binary([members[k] for k in ks], device, dtype)
        for kind, ks in kinds.items()
    ]
    if len(losses) == 1:
        return losses[0]
    rows = [torch.tensor(ks, device=device) for ks in kinds.values()]
    back = torch.argsort(torch.cat(rows))  # each member's loss back at its own index

    def mixed(logits: Tensor, targets: Tensor) -> Tensor:
        parts = [f(logits[r], targets[r]) for f, r in zip(losses, rows, strict=True)]
        return torch.cat(parts)[back]

    return mixed


def _one_by_one(members: list[Member], n_classes: int, minority: int) -> StackedLoss:
    losses = [
        make_loss(gamma=m.gamma, alpha=m.alpha, n_classes=n_classes, minority=minority)
        for m in members
    ]

    def one_by_one(logits: Tensor, targets: Tensor) -> Tensor:
        return torch.stack([loss(logits[k], targets[k]) for k, loss in enumerate(losses)])

    return one_by_one


def _vectorized_binary(
    members: list[Member], device: torch.device, dtype: torch.dtype
) -> StackedLoss:
    # Per member, (negatives, positives) pairs of gamma and of alpha_t; alpha off weighs both 1.
    def pairs(values: list[tuple[float, float]]) -> tuple[Tensor, Tensor]:
        return tuple(  # type: ignore[return-value]
            torch.tensor([[p[i]] for p in values], device=device, dtype=dtype) for i in (0, 1)
        )

    gamma_negative, gamma_positive = pairs([_pair(m.gamma) for m in members])
    weight_negative, weight_positive = pairs([binary_alpha_weights(m.alpha) for m in members])
    same_gamma = bool((gamma_negative == gamma_positive).all())

    def binary(logits: Tensor, targets: Tensor) -> Tensor:
        positive = targets > 0
        alpha_t = torch.where(positive, weight_positive, weight_negative)
        gamma = (
            gamma_positive if same_gamma else torch.where(positive, gamma_positive, gamma_negative)
        )
        loss = focal_loss(
            logits[..., 0], positive.to(dtype), gamma=gamma, alpha=alpha_t, reduction="none"
        )
        return loss.mean(dim=1)

    return binary


def _pair(gamma: Gamma) -> tuple[float, float]:
    """A binary gamma as (gamma of negatives, gamma of positives)."""
    if isinstance(gamma, tuple):
        return float(gamma[0]), float(gamma[1])
    return float(gamma), float(gamma)  # type: ignore[arg-type]


def _train_epoch(
    stacked: Stack, x: Tensor, y: Tensor, order: Tensor, loss_fn: StackedLoss, batch_size: int
) -> list[float]:
    """One epoch; ``x`` is already in the stack's input dtype, ``order`` is ``(K, N)``."""
    k = order.shape[0]
    total = torch.zeros(k, device=x.device, dtype=torch.float64)
    for batch in order.split(batch_size, dim=1):  # (K, B) indices
        index = batch.reshape(-1)
        inputs = x.index_select(0, index).view(k, -1, *x.shape[1:])
        losses = stacked.step(inputs, y.index_select(0, index).view(k, -1), loss_fn)
        total += losses.double() * batch.shape[1]
    return (total / order.shape[1]).tolist()  # one sync with the GPU per epoch


def _validate(
    stacked: Stack, x: Tensor, y: Tensor, loss_fn: StackedLoss, monitor: str
) -> tuple[list[float], list[float]]:
    """Each member's validation loss and monitor (for early stopping and the kept epoch); a
    trial's reported metrics come from a full-precision evaluation of its kept epoch."""
    logits = stacked.logits(x)  # (K, N, out)
    with torch.no_grad():
        val_losses = loss_fn(logits, y.expand(logits.shape[0], -1)).tolist()
    if monitor == "val_loss":
        return val_losses, val_losses
    labels = y.cpu().numpy()
    return val_losses, [mean_average_precision(labels, scores_from_logits(m)) for m in logits]
