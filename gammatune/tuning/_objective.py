"""Trials: a group of settings -> models, losses, training, evaluation -> one record each.

Trials that do not depend on each other arrive together and train together (see ``training``).
A trial's result is a function of its own setting: its seed sets its initial weights, batch
order and dropout masks, whichever trials share its stack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from gammatune.config import Config, ModelConfig, TrainConfig
from gammatune.data import Splits, refold
from gammatune.device import device_name, seed_everything
from gammatune.errors import ConfigError
from gammatune.loss import GammaSchedule, class_balanced_weights
from gammatune.metrics import (
    best_f1_threshold,
    confusion_matrix,
    evaluate,
    per_class_prf,
)
from gammatune.models import build_model, init_output_bias
from gammatune.record import SampleScores, Setting, TrialRecord, scored
from gammatune.training import (
    EpochEvent,
    FitResult,
    Gamma,
    Keep,
    Member,
    Reporter,
    Weight,
    choose_parallel,
    fit,
    fit_logistic,
    fit_stacked,
    logistic_scores,
    make_loss,
    predict_logits,
    scores_from_logits,
    stackable,
    vmappable,
)
from gammatune.tuning._runner import Objective, Outcome
from gammatune.weights import keep_weights, keeps


@dataclass(frozen=True, slots=True)
class _Context:
    config: Config
    splits: Splits
    device: torch.device
    autocast: torch.dtype | None
    on_epoch: Callable[[EpochEvent], None] | None
    folds: dict[int, Splits] = field(default_factory=dict)

    def split(self, fold: int) -> Splits:
        """The splits of ``fold`` (0: the configured one), made once."""
        if fold not in self.folds:
            self.folds[fold] = refold(self.splits, fold, seed=self.config.split_seed)
        return self.folds[fold]

    def seed(self, setting: Setting) -> int:
        return self.config.seed + setting.repeat


def make_objective(
    config: Config,
    splits: Splits,
    *,
    device: torch.device,
    autocast: torch.dtype | None,
    on_epoch: Callable[[EpochEvent], None] | None = None,
) -> Objective:
    """Return ``[setting, ...] -> [(record, per-sample scores), ...]``, in order.

    Trials of a stackable model (linear, MLP, most others) train as one stacked model; others
    one at a time, with the same results. The ``logistic`` roles fit scikit-learn's logistic
    regression. A trial fails (the others go on) on a non-finite training loss or a CUDA
    out-of-memory error: its record says why.
    """
    if config.trainer is not None:  # the user's own training code
        from gammatune.tuning._trainer import trainer_objective

        return trainer_objective(config, splits, device=device)
    context = _Context(config, splits, device, autocast, on_epoch)

    def objective(
        settings: list[Setting],
        reporters: list[Reporter | None] | None = None,
        trials: list[tuple[str, int]] | None = None,
    ) -> list[Outcome]:
        del trials  # who the trials are does not change how they train
        hears = reporters or [None] * len(settings)
        outcomes: dict[int, Outcome] = {}
        groups: dict[tuple[str, int, float | None], list[int]] = {}
        for index, setting in enumerate(settings):  # a stack shares its learning rate
            groups.setdefault((setting.model, setting.fold, setting.lr), []).append(index)
        for (role, fold, _), indices in groups.items():
            group = [settings[i] for i in indices]
            split = context.split(fold)
            trained = (
                _train_group(context, group, split, [hears[i] for i in indices])
                if role == "configured"
                else [_logistic(context, s, split) for s in group]
            )
            outcomes.update(zip(indices, trained, strict=True))
        return [outcomes[i] for i in range(len(settings))]

    return objective


def parallel_trials(config: Config, splits: Splits, device: torch.device) -> int:
    """How many trials to train at once: ``train.parallel``, or sized to the model and device."""
    if config.trainer is not None:  # a user's trials run one process each
        return 1
    context = _Context(config, splits, device, None, None)
    model = _member(context, Setting(0.0), splits).model
    if not _stacks(model, splits.n_features):
        return 1 if config.train.parallel == "auto" else int(config.train.parallel)
    return choose_parallel(
        config.train.parallel,
        model=model,
        n_features=splits.n_features,
        batch_size=config.train.batch_rows(len(splits.x_train)),
        device=device,
    )


def _stacks(model: torch.nn.Module, n_features: int) -> bool:
    """Whether trials of this architecture train together (see :mod:`gammatune.training`)."""
    return stackable(model) or vmappable(model, n_features)


def _train_group(
    context: _Context, settings: list[Setting], splits: Splits, reporters: list[Reporter | None]
) -> list[Outcome]:
    members = [
        replace(_member(context, s, splits), report=r)
        for s, r in zip(settings, reporters, strict=True)
    ]
    try:
        results = _fit_members(context, members, splits, settings[0].lr)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        if len(settings) == 1:
            return [(_failed(context, settings[0], "CUDA out of memory"), None)]
        half = len(settings) // 2  # retry the group as two smaller ones
        return _train_group(context, settings[:half], splits, reporters[:half]) + _train_group(
            context, settings[half:], splits, reporters[half:]
        )
    return [
        _outcome(context, setting, member, result, splits)
        for setting, member, result in zip(settings, members, results, strict=True)
    ]


def _member(context: _Context, setting: Setting, splits: Splits) -> Member:
    gamma, alpha = loss_terms(context.config, setting, splits)
    return new_member(
        context.config.model,
        splits,
        gamma=gamma,
        alpha=alpha,
        seed=context.seed(setting),
        labels=splits.y_train,
    )


def loss_terms(config: Config, setting: Setting, splits: Splits) -> tuple[Gamma, Weight]:
    """The focal-loss ``(gamma, alpha)`` of ``setting`` on ``splits`` (see ``make_loss``):
    per class where the setting has a rare-class gamma or a per-class weight scheme (from the
    training counts), a schedule where it is adaptive."""
    counts = torch.bincount(splits.y_train, minlength=splits.n_classes).tolist()
    gamma: Gamma = setting.gamma
    if setting.schedule == "flsd53":
        gamma = GammaSchedule("flsd53")
    elif setting.schedule == "confidence":
        gamma = GammaSchedule("confidence", k=setting.k or 1.0, max_gamma=setting.gamma)
    elif setting.gamma_rare is not None:
        rare = rare_classes(config, splits)
        gamma = tuple(
            setting.gamma_rare if c in rare else setting.gamma for c in range(len(counts))
        )
    alpha: Weight = setting.alpha
    if setting.weights is not None:
        beta = 0.999 if setting.beta is None else setting.beta
        alpha = tuple(class_balanced_weights(counts, setting.weights, beta))
    return gamma, alpha


def rare_classes(config: Config, splits: Splits) -> list[int]:
    """The classes ``gamma_rare`` applies to: binary, the positive class; multiclass,
    ``search.rare_classes``, else the rarest class in training.

    Raises:
        ConfigError: A listed class is not a class of the data.
    """
    if splits.n_classes == 2:
        return [1]
    named = config.search.rare_classes
    if not named:
        return [_minority(splits)]
    names = [str(n) for n in splits.class_names]
    unknown = [n for n in named if str(n) not in names]
    if unknown:
        raise ConfigError(
            f"search.rare_classes: {unknown[0]!r} is not a class of the data "
            f"(its classes: {', '.join(names)})."
        )
    return [names.index(str(n)) for n in named]


def new_member(
    model: ModelConfig,
    splits: Splits,
    *,
    gamma: Gamma,
    alpha: Weight,
    seed: int,
    labels: torch.Tensor,
) -> Member:
    """A trial's model, as every trial starts it: initial weights from ``seed``, the output
    bias at the class prior of ``labels`` (the rows it trains on)."""
    seed_everything(seed)
    built = build_model(
        model,
        n_features=splits.n_features,
        n_outputs=1 if splits.n_classes == 2 else splits.n_classes,
        image_shape=splits.image_shape,
    )
    counts = torch.bincount(labels, minlength=splits.n_classes).double()
    init_output_bias(built, counts / counts.sum())
    return Member(built, gamma, alpha, seed)


def _minority(splits: Splits) -> int:
    return int(torch.argmin(torch.bincount(splits.y_train, minlength=splits.n_classes)))


def _fit_members(
    context: _Context, members: list[Member], splits: Splits, lr: float | None
) -> list[FitResult]:
    data = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    train = context.config.train
    return train_members(
        members,
        data,
        n_classes=splits.n_classes,
        minority=_minority(splits),
        config=train if lr is None else train.model_copy(update={"lr": lr}),
        device=context.device,
        autocast=context.autocast,
        on_epoch=context.on_epoch,
    )


def train_members(
    members: list[Member],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    n_classes: int,
    minority: int,
    config: TrainConfig,
    device: torch.device,
    autocast: torch.dtype | None,
    on_epoch: Callable[[EpochEvent], None] | None = None,
    keep: Keep = "best",
) -> list[FitResult]:
    """Train members of one architecture as the trials do: stacked where the model stacks
    (also a group of one: a member's dropout masks come from its own seed, so it trains the
    same alone as in any stack), else one at a time with dropout from its own seed."""
    float16 = autocast == torch.float16  # needs loss scaling: one model at a time
    if not float16 and _stacks(members[0].model, int(data[0].shape[1])):
        return fit_stacked(
            members, data, n_classes=n_classes, minority=minority, config=config,
            device=device, autocast=autocast, on_epoch=on_epoch, keep=keep,
        )  # fmt: skip
    results = []
    for m in members:
        loss_fn = make_loss(gamma=m.gamma, alpha=m.alpha, n_classes=n_classes, minority=minority)
        torch.manual_seed(m.seed)  # dropout masks from the trial's own seed
        results.append(
            fit(
                m.model,
                data,
                loss_fn=loss_fn,
                config=config,
                device=device,
                autocast=autocast,
                seed=m.seed,
                on_epoch=on_epoch,
                keep=keep,
                report=m.report,
            )  # fmt: skip
        )
    return results


def _failed(context: _Context, setting: Setting, reason: str) -> TrialRecord:
    return TrialRecord(
        setting,
        seed=context.seed(setting),
        device=device_name(context.device),
        fail_reason=reason,
    )


def _outcome(
    context: _Context, setting: Setting, member: Member, result: FitResult, splits: Splits
) -> Outcome:
    curves = {
        "train_loss": _rounded(result.train_loss),
        "val_loss": _rounded(result.val_loss),
        "val_monitor": _rounded(result.val_monitor),
    }
    record = TrialRecord(
        setting,
        seed=member.seed,
        device=device_name(context.device),
        fail_reason=result.failure,
        duration_s=round(result.duration_s, 3),
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        stop_reason=result.stop_reason,
        curves=curves,
    )
    if result.failure is not None:
        return record, None
    val, test = (
        scores_from_logits(predict_logits(member.model, x.to(context.device)))
        for x in (splits.x_val, splits.x_test)
    )
    if keeps(context.config, setting):  # export saves this model rather than training it again
        keep_weights(context.config, setting, member.model)
    return _evaluated(context, record, _scores(val, test, splits), splits)


def _logistic(context: _Context, setting: Setting, splits: Splits) -> Outcome:
    balanced = setting.model == "logistic_balanced"
    model, seconds = fit_logistic(
        splits.x_train, splits.y_train, balanced=balanced, seed=context.seed(setting)
    )
    n_iter = int(np.max(model.n_iter_))  # type: ignore[attr-defined]
    record = TrialRecord(
        setting,
        seed=context.seed(setting),
        device="cpu (scikit-learn)",
        duration_s=round(seconds, 3),
        epochs_run=n_iter,
        best_epoch=n_iter,
        stop_reason="converged" if n_iter < 5000 else "max_iter",
    )
    val, test = (logistic_scores(model, x) for x in (splits.x_val, splits.x_test))
    return _evaluated(context, record, _scores(val, test, splits), splits)


def _scores(val: np.ndarray, test: np.ndarray, splits: Splits) -> SampleScores:
    return SampleScores(val, test, splits.y_val.numpy(), splits.y_test.numpy())


def _evaluated(
    context: _Context, record: TrialRecord, scores: SampleScores, splits: Splits
) -> Outcome:
    """Evaluate both splits at the decision threshold (chosen on validation when ``tuned``);
    no test evaluation (None) without test scores (a user's trainer may leave them out)."""
    config = context.config
    threshold = config.threshold if isinstance(config.threshold, float) else 0.5
    if config.threshold == "tuned" and scores.val.ndim == 1:
        threshold = best_f1_threshold(splits.y_val.numpy(), scores.val)[0]
    val = evaluate(splits.y_val.numpy(), scores.val, threshold=threshold, seed=record.seed)
    test, y_test, on_test = None, splits.y_test.numpy(), scores.test
    if on_test is not None:
        test = evaluate(y_test, on_test, threshold=threshold, seed=record.seed)
        if val.best_threshold is not None:  # no oracle: test at the threshold chosen on val
            cut = val.best_threshold
            f1_at_cut = float(per_class_prf(confusion_matrix(y_test, on_test >= cut, 2))[2][1])
            test = replace(test, best_threshold=cut, f1_at_best_threshold=f1_at_cut)
    return scored(config, record, val, test), scores


def _rounded(values: list[float]) -> list[float | None]:
    return [round(v, 6) if math.isfinite(v) else None for v in values]
