"""Trials: (gamma, alpha, seed) -> model, loss, training, evaluation -> value and attributes.

Trials that do not depend on each other arrive together and train together (see ``ensemble``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from gammatune.config import Config, ModelConfig
from gammatune.data import Splits
from gammatune.device import device_name, seed_everything
from gammatune.metrics import best_f1_threshold, evaluate, objective_value
from gammatune.models import build_model, init_output_bias
from gammatune.training._engines import stackable, vmappable
from gammatune.training._loop import (
    EpochEvent,
    FitResult,
    fit,
    make_loss,
    predict_logits,
    scores_from_logits,
)
from gammatune.training._stacked import Member, choose_parallel, fit_stacked
from gammatune.tuning._runner import Objective, Outcome, TrialFailed


@dataclass(frozen=True, slots=True)
class _Context:
    config: Config
    splits: Splits
    device: torch.device
    autocast: torch.dtype | None
    on_epoch: Callable[[EpochEvent], None] | None

    @property
    def train_counts(self) -> torch.Tensor:
        return torch.bincount(self.splits.y_train, minlength=self.splits.n_classes)

    @property
    def minority(self) -> int:
        return int(torch.argmin(self.train_counts))


def make_objective(
    config: Config,
    splits: Splits,
    *,
    device: torch.device,
    autocast: torch.dtype | None,
    on_epoch: Callable[[EpochEvent], None] | None = None,
) -> Objective:
    """Return ``[params, ...] -> [(validation objective, user attributes) or TrialFailed, ...]``.

    ``params`` holds ``gamma``, ``alpha`` (None for off), ``repeat`` (the seed is
    ``config.seed + repeat``, so trials of different gamma share initial weights and batch
    order) and ``model`` (``configured`` or ``linear``). Trials of a stackable model (linear,
    MLP) train as one stacked model; others one at a time, with the same results. A trial
    fails (the others go on) on a non-finite training loss or a CUDA out-of-memory error.
    """
    context = _Context(config, splits, device, autocast, on_epoch)

    def objective(params_list: list[dict[str, Any]]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(params_list)
        for kind in dict.fromkeys(p["model"] for p in params_list):
            indices = [i for i, p in enumerate(params_list) if p["model"] == kind]
            group = _train_group(context, [params_list[i] for i in indices])
            for index, outcome in zip(indices, group, strict=True):
                outcomes[index] = outcome
        return outcomes  # type: ignore[return-value]

    return objective


def parallel_trials(config: Config, splits: Splits, device: torch.device) -> int:
    """How many trials to train at once: ``train.parallel``, or sized to the model and device."""
    model = _member(
        _Context(config, splits, device, None, None),
        {"gamma": 0.0, "alpha": None, "repeat": 0, "model": "configured"},
    ).model
    if not _stacks(model, splits.n_features):
        return 1 if config.train.parallel == "auto" else int(config.train.parallel)
    return choose_parallel(
        config.train.parallel,
        model=model,
        n_features=splits.n_features,
        batch_size=config.train.batch_size,
        device=device,
    )


def _stacks(model: torch.nn.Module, n_features: int) -> bool:
    """Whether trials of this architecture train together (see :mod:`gammatune.stacks`)."""
    return stackable(model) or vmappable(model, n_features)


def _train_group(context: _Context, params_list: list[dict[str, Any]]) -> list[Outcome]:
    members = [_member(context, params) for params in params_list]
    try:
        results = _fit_members(context, members)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        if len(params_list) == 1:
            return [TrialFailed("CUDA out of memory", _attrs(context, params_list[0], members[0]))]
        half = len(params_list) // 2  # retry the group as two smaller ones
        return _train_group(context, params_list[:half]) + _train_group(
            context, params_list[half:]
        )
    return [
        _outcome(context, params, member, result)
        for params, member, result in zip(params_list, members, results, strict=True)
    ]


def _member(context: _Context, params: dict[str, Any]) -> Member:
    seed = context.config.seed + int(params["repeat"])
    seed_everything(seed)
    linear = ModelConfig(kind="linear")
    splits = context.splits
    model = build_model(
        context.config.model if params["model"] == "configured" else linear,
        n_features=splits.n_features,
        n_outputs=1 if splits.n_classes == 2 else splits.n_classes,
        image_shape=splits.image_shape,
    )
    counts = context.train_counts.double()
    init_output_bias(model, counts / counts.sum())
    return Member(model, float(params["gamma"]), params["alpha"], seed)


def _fit_members(context: _Context, members: list[Member]) -> list[FitResult]:
    splits = context.splits
    data = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    train = context.config.train
    float16 = context.autocast == torch.float16  # needs loss scaling: one model at a time
    if len(members) > 1 and not float16 and _stacks(members[0].model, splits.n_features):
        return fit_stacked(
            members,
            data,
            n_classes=splits.n_classes,
            minority=context.minority,
            config=train,
            device=context.device,
            autocast=context.autocast,
            on_epoch=context.on_epoch,
        )
    results = []
    for m in members:
        loss_fn = make_loss(
            gamma=m.gamma, alpha=m.alpha, n_classes=splits.n_classes, minority=context.minority
        )
        results.append(
            fit(
                m.model,
                data,
                loss_fn=loss_fn,
                config=train,
                device=context.device,
                autocast=context.autocast,
                seed=m.seed,
                on_epoch=context.on_epoch,
            )
        )
    return results


def _attrs(context: _Context, params: dict[str, Any], member: Member) -> dict[str, Any]:
    return {
        "gamma": member.gamma,
        "alpha": member.alpha,
        "repeat": params["repeat"],
        "model": context.config.model.kind if params["model"] == "configured" else "linear",
        "seed": member.seed,
        "device": device_name(context.device),
    }


def _outcome(
    context: _Context, params: dict[str, Any], member: Member, result: FitResult
) -> Outcome:
    attrs = _attrs(context, params, member)
    attrs.update(
        duration_s=round(result.duration_s, 3),
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        stop_reason=result.stop_reason,
        curves={
            "train_loss": _rounded(result.train_loss),
            "val_loss": _rounded(result.val_loss),
            "val_monitor": _rounded(result.val_monitor),
        },
    )
    if result.failure is not None:
        return TrialFailed(result.failure, attrs)
    splits, config = context.splits, context.config
    val_scores, test_scores = (
        scores_from_logits(predict_logits(member.model, x.to(context.device)))
        for x in (splits.x_val, splits.x_test)
    )
    threshold = config.threshold if isinstance(config.threshold, float) else 0.5
    if config.threshold == "tuned" and val_scores.ndim == 1:
        threshold = best_f1_threshold(splits.y_val.numpy(), val_scores)[0]
    val = evaluate(splits.y_val.numpy(), val_scores, threshold=threshold, seed=member.seed)
    test = evaluate(splits.y_test.numpy(), test_scores, threshold=threshold, seed=member.seed)
    attrs.update(val.to_attrs("val"))
    attrs.update(test.to_attrs("test"))
    value = objective_value(val, config.objective)
    if not math.isfinite(value):
        return TrialFailed(f"the objective {config.objective} is {value}", attrs)
    return value, attrs


def _rounded(values: list[float]) -> list[float | None]:
    return [round(v, 6) if math.isfinite(v) else None for v in values]
