"""The focal-loss kernel shared by training, tests and users (Lin et al. 2017, arXiv:1708.02002).

Every mode reduces to one scalar function of a *margin* ``z`` with ``p_t = sigmoid(z)``:

- binary / multilabel: ``z = x`` for positives and ``-x`` for negatives;
- multiclass: ``z = x_t - logsumexp_{j != t}(x_j)``, since ``p_t = softmax(x)_t = sigmoid(z)``.

On the margin, ``-log(p_t) = softplus(-z)`` and ``1 - p_t = sigmoid(-z)``, so

    loss = alpha_t * sigmoid(-z) ** gamma * softplus(-z)

never forms ``1 - p_t`` as a difference (which rounds to 0 for confident predictions and loses
the tail), and never differentiates ``(1 - p_t) ** gamma`` (whose autograd gradient is NaN at
``p_t = 1`` for ``0 < gamma < 1``): custom autograd functions give the gradient in closed form,

    -dloss/dz = alpha_t * (1 - p_t) ** gamma * (gamma * p_t * CE + 1 - p_t),

from terms kept by the forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gammatune.loss._compiled import fused_sigmoid_focal
from gammatune.loss._schedules import GammaSchedule
from gammatune.loss._weights import binary_alpha_weights

Mode = Literal["binary", "multiclass", "multilabel"]
Reduction = Literal["none", "mean", "sum"]

_MODES = ("binary", "multiclass", "multilabel")
_REDUCTIONS = ("none", "mean", "sum")

Gamma = float | Sequence[float] | Tensor | GammaSchedule
Alpha = float | Sequence[float] | Tensor | None


def _resolve_gamma(gamma: float | Tensor | GammaSchedule, neg_z: Tensor) -> float | Tensor:
    return gamma(neg_z.neg()) if isinstance(gamma, GammaSchedule) else gamma


# The elementwise math works on the negated margin -z: softplus(-z) = -log(p_t) is the
# cross-entropy and sigmoid(-z) = 1 - p_t, both accurate in their tails (unlike 1 - p_t computed
# as a difference). Ops run in place after the first: on a CPU each fresh tensor of the logits'
# size costs page faults that rival the arithmetic.


def _focal_terms(neg_z: Tensor, gamma: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(CE, 1 - p_t, (1 - p_t)^gamma)`` from the negated margin.

    ``(1 - p_t)^gamma`` underflows to 0 only where the loss itself does, since the loss is
    below ``(1 - p_t)^(1 + gamma)``.
    """
    cross_entropy = F.softplus(neg_z, threshold=40)  # threshold 40 keeps float64 exact
    one_minus_p_t = torch.sigmoid(neg_z)
    return cross_entropy, one_minus_p_t, torch.pow(one_minus_p_t, gamma)


def _loss_saving_terms(ctx, neg_z, gamma, alpha_t, *kept):
    """Return the loss per element; save ``kept`` and the focal terms for the backward."""
    gamma_value = _resolve_gamma(gamma, neg_z)
    cross_entropy, one_minus_p_t, focal_factor = _focal_terms(neg_z, gamma_value)
    # Keeping these terms, rather than recomputing them, makes the backward ~3x cheaper.
    ctx.save_for_backward(
        *kept, neg_z, cross_entropy, one_minus_p_t, focal_factor, _as_saved(gamma_value), alpha_t
    )
    ctx.gamma = None if isinstance(gamma_value, Tensor) else gamma_value
    loss = focal_factor * cross_entropy
    return loss if alpha_t is None else loss.mul_(alpha_t)


def _descent_from_saved(ctx, grad_out):
    """Return ``(kept, -dloss/dz * grad_out)``, with ``-dloss/dz`` in closed form:

    ``alpha_t (1 - p_t)^gamma (gamma p_t CE + 1 - p_t)``.
    """
    *kept, neg_z, cross_entropy, one_minus_p_t, focal_factor, gamma_saved, alpha_t = (
        ctx.saved_tensors
    )
    gamma = ctx.gamma if gamma_saved is None else gamma_saved
    descent = torch.sigmoid(neg_z.neg()).mul_(cross_entropy).mul_(gamma)  # gamma p_t CE
    descent.add_(one_minus_p_t).mul_(focal_factor).mul_(grad_out)
    return kept, (descent if alpha_t is None else descent.mul_(alpha_t))


class _SigmoidFocal(torch.autograd.Function):
    """Binary/multilabel focal loss per element; margin z = x for positives, -x for negatives."""

    @staticmethod
    def forward(ctx, logits, positive, gamma, alpha_t):
        neg_logits = logits.neg()
        neg_z = torch.where(positive, neg_logits, logits, out=neg_logits)
        return _loss_saving_terms(ctx, neg_z, gamma, alpha_t, positive)

    @staticmethod
    def backward(ctx, grad_out):
        (positive,), descent = _descent_from_saved(ctx, grad_out)
        # dz/dx = +1 for positives and -1 for negatives, so dloss/dx = -descent on positives.
        return torch.where(positive, descent.neg(), descent, out=descent), None, None, None


class _SoftmaxFocal(torch.autograd.Function):
    """Multiclass focal loss per sample; margin z = x_t - logsumexp_{j != t} x_j."""

    @staticmethod
    def forward(ctx, logits, class_index, gamma, alpha_t):
        index = class_index.unsqueeze(1)  # (N, 1)
        log_probs = F.log_softmax(logits, dim=1)  # (N, C), one fused pass
        log_p_t = log_probs.gather(1, index)  # (N, 1), accurate where p_t is small
        # 1 - p_t summed from the other classes, accurate where p_t is close to 1, and clamped so
        # a margin past the dtype's range stays finite.
        probs_others = log_probs.exp_().scatter_(1, index, 0.0)  # (N, C), target zeroed
        tiny = torch.finfo(logits.dtype).tiny
        sum_others = probs_others.sum(dim=1, keepdim=True).clamp_(min=tiny)  # (N, 1)
        neg_z = sum_others.log().sub_(log_p_t).squeeze(1)  # (N,)
        return _loss_saving_terms(ctx, neg_z, gamma, alpha_t, probs_others, sum_others, index)

    @staticmethod
    def backward(ctx, grad_out):
        (probs_others, sum_others, index), descent = _descent_from_saved(ctx, grad_out)
        # dz/dx_t = 1 and dz/dx_j = -p_j / (1 - p_t) for j != t.
        grad = probs_others * (descent.unsqueeze(1) / sum_others)  # (N, C)
        return grad.scatter_(1, index, -descent.unsqueeze(1)), None, None, None


def _as_saved(gamma: float | Tensor) -> Tensor | None:
    return gamma if isinstance(gamma, Tensor) else None


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: Gamma = 2.0,
    alpha: Alpha = None,
    mode: Mode = "binary",
    reduction: Reduction = "mean",
    ignore_index: int = -100,
    compile: bool | None = None,
) -> Tensor:
    """Compute focal loss on logits (Lin et al. 2017, arXiv:1708.02002).

    With ``p_t`` the probability the model gives the true class, per element::

        loss = -alpha_t * (1 - p_t) ** gamma * log(p_t)

    - ``binary`` (sigmoid): logits of any shape, ``(N,)`` or ``(N, 1)`` typically; targets of the
      same shape (or ``(N,)`` for ``(N, 1)`` logits) with values in {0, 1}.
      ``alpha_t = alpha`` on positives and ``1 - alpha`` on negatives.
    - ``multiclass`` (softmax): logits ``(N, C)``, integer targets ``(N,)``; entries equal to
      ``ignore_index`` get loss 0 and exactly zero gradient. ``alpha_t = alpha[target]``.
    - ``multilabel`` (sigmoid per class): logits and 0/1 targets ``(N, C)``.

    ``gamma = 0`` with ``alpha = None`` is exactly binary cross-entropy / cross-entropy, in value
    and gradient. The loss is computed from the margin ``z = logit(p_t)`` in log space, so loss and
    gradient are finite for every finite logit and every gamma >= 0 (including 0 < gamma < 1,
    where the textbook ``(1 - p_t) ** gamma`` has a NaN gradient), and confident correct
    predictions keep a small positive loss instead of rounding to 0. float16/bfloat16 inputs are
    computed and reduced in float32 (the result is float32); float64 stays float64.

    Args:
        logits: Raw scores, floating dtype; shapes as above.
        targets: Labels; shapes as above. Values are not checked (that would sync with the device).
        gamma: Focusing exponent >= 0. A float; a per-class sequence/tensor of length C
            (binary: the pair (gamma of negatives, gamma of positives)); a tensor of 2 or more
            dims, used as gamma per element after broadcasting against the per-element loss
            (e.g. ``(K, 1)`` for K stacked models); or a :class:`GammaSchedule` for adaptive
            gamma. Default 2.0.
        alpha: Class weight, or None for none. A float in [0, 1] (binary and multilabel: weight of
            positives, negatives get 1 - alpha); a per-class sequence/tensor of length C
            of weights >= 0 (multiclass: of each class; multilabel: of positives per class; binary:
            the pair (negatives, positives)); or a tensor of 2 or more dims,
            used as ``alpha_t`` itself after broadcasting against the per-element loss.
            Default None.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``. Default ``"binary"``.
        reduction: ``"none"`` keeps the per-element shape (``(N,)`` for multiclass); ``"sum"``;
            ``"mean"`` divides by the number of elements (binary, multilabel, like
            ``F.binary_cross_entropy_with_logits``) or of non-ignored samples (multiclass, like
            ``F.cross_entropy`` without ``weight``). Empty or all-ignored input gives 0.
            Default ``"mean"``.
        ignore_index: Multiclass target value to ignore. Default -100.
        compile: Binary/multilabel with a float gamma and alpha can run as one compiled pass
            (see :mod:`gammatune.fused`; ~2x the eager kernel on a CPU). None (default): from
            2^20 elements on, where the one-off compile pays; True: any size; False: never.
            Where torch cannot compile, the eager kernel runs, silently.

    Returns:
        The loss: a scalar, or per element for ``reduction="none"``.

    Raises:
        ValueError: Unknown mode or reduction, shapes that do not match, gamma < 0, alpha outside
            [0, 1], or a per-class vector of the wrong length.

    Example:
        >>> logits = torch.tensor([3.0, -1.0, 0.5])
        >>> targets = torch.tensor([1.0, 0.0, 1.0])
        >>> bce = F.binary_cross_entropy_with_logits(logits, targets)
        >>> bool(torch.isclose(focal_loss(logits, targets, gamma=0.0), bce))
        True
        >>> bool(focal_loss(logits, targets, gamma=2.0) < bce)
        True
    """
    if mode not in _MODES:
        raise ValueError(f"focal_loss: mode must be one of {_MODES}; got {mode!r}.")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"focal_loss: reduction must be one of {_REDUCTIONS}; got {reduction!r}.")
    if not logits.is_floating_point():
        raise ValueError(
            f"focal_loss: logits must be a floating tensor; got dtype {logits.dtype}."
        )
    _check_gamma(gamma)
    _check_alpha(alpha, mode)
    work = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if mode == "multiclass":
        class_index, keep = _multiclass_targets(work, targets, ignore_index)
        n_classes = work.shape[1]
        gamma_t = _gamma_per_element(gamma, class_index, work, mode=mode, n_classes=n_classes)
        alpha_t = _alpha_per_element(alpha, class_index, work, mode=mode, n_classes=n_classes)
        loss = _SoftmaxFocal.apply(work, class_index, gamma_t, alpha_t)
        loss = torch.where(keep, loss, torch.zeros_like(loss))
        count = keep.sum()
    else:
        targets = _sigmoid_targets(work, targets, mode)
        fused = fused_sigmoid_focal(work, targets, gamma, alpha, reduction, compile=compile)
        if fused is not None:
            return fused
        positive = targets > 0.5
        n_classes = work.shape[-1] if mode == "multilabel" else 2
        gamma_t = _gamma_per_element(gamma, positive, work, mode=mode, n_classes=n_classes)
        alpha_t = _alpha_per_element(alpha, positive, work, mode=mode, n_classes=n_classes)
        loss = _SigmoidFocal.apply(work, positive, gamma_t, alpha_t)
        count = torch.tensor(loss.numel(), device=loss.device)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / count.clamp(min=1).to(total.dtype)


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`; its gamma and alpha are checked once, at construction.

    Example:
        >>> criterion = FocalLoss(gamma=1.5, alpha=0.75)
        >>> criterion(torch.zeros(4), torch.tensor([0.0, 1.0, 0.0, 0.0])).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        gamma: Gamma = 2.0,
        alpha: Alpha = None,
        mode: Mode = "binary",
        reduction: Reduction = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        _check_gamma(gamma)  # fail at construction, not at the first batch
        _check_alpha(alpha, mode)
        self.gamma = gamma
        self.alpha = alpha
        self.mode: Mode = mode
        self.reduction: Reduction = reduction
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Return :func:`focal_loss` of ``logits`` against ``targets`` with these settings."""
        return focal_loss(
            logits,
            targets,
            gamma=self.gamma,
            alpha=self.alpha,
            mode=self.mode,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
        )


def _check_gamma(gamma: Gamma) -> None:
    """Check Python values; tensors are checked for shape only, so a step never syncs."""
    if isinstance(gamma, (GammaSchedule, Tensor)):
        return
    values = [gamma] if isinstance(gamma, (int, float)) else list(gamma)
    for value in values:
        if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
            raise ValueError(f"focal_loss: gamma must be a finite number >= 0; got {value!r}.")


def _check_alpha(alpha: Alpha, mode: Mode) -> None:
    if alpha is None or isinstance(alpha, Tensor):
        return
    if isinstance(alpha, (int, float)) and mode == "multiclass":
        raise ValueError(
            "focal_loss: multiclass alpha must be a per-class vector or None; "
            f"got the scalar {alpha!r}."
        )
    scalar = isinstance(alpha, (int, float))  # a weight in [0, 1]; per class, any weight >= 0
    for value in [alpha] if scalar else list(alpha):  # type: ignore[arg-type]
        if not (isinstance(value, (int, float)) and 0 <= value <= (1 if scalar else math.inf)):
            raise ValueError(f"focal_loss: alpha must be in [0, 1] or None; got {value!r}.")


def _sigmoid_targets(logits: Tensor, targets: Tensor, mode: Mode) -> Tensor:
    if mode == "binary" and logits.dim() == 2 and logits.shape[1] == 1 and targets.dim() == 1:
        targets = targets.unsqueeze(1)
    if mode == "multilabel" and logits.dim() != 2:
        raise ValueError(
            f"focal_loss: multilabel logits must be (N, C); got {tuple(logits.shape)}."
        )
    if targets.shape != logits.shape:
        raise ValueError(
            f"focal_loss: {mode} targets must have the logits' shape {tuple(logits.shape)}; "
            f"got {tuple(targets.shape)}."
        )
    return targets


def _multiclass_targets(
    logits: Tensor, targets: Tensor, ignore_index: int
) -> tuple[Tensor, Tensor]:
    """Return (class index with ignored entries set to 0, mask of kept entries)."""
    if logits.dim() != 2 or targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            "focal_loss: multiclass needs logits (N, C) and targets (N,); "
            f"got {tuple(logits.shape)} and {tuple(targets.shape)}."
        )
    if targets.is_floating_point():
        raise ValueError(f"focal_loss: multiclass targets must be integers; got {targets.dtype}.")
    keep = targets != ignore_index
    return torch.where(keep, targets, torch.zeros_like(targets)).long(), keep


def _per_class(value: Sequence[float] | Tensor, like: Tensor, n_classes: int, name: str) -> Tensor:
    vector = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if vector.dim() != 1 or vector.shape[0] != n_classes:
        raise ValueError(
            f"focal_loss: per-class {name} must have length {n_classes}; "
            f"got shape {tuple(vector.shape)}."
        )
    return vector


def _select(vector: Tensor, class_index: Tensor, mode: Mode) -> Tensor:
    """Pick each element's entry by target (binary, multiclass); multilabel broadcasts."""
    if mode == "multilabel":
        return vector
    if mode == "binary":
        return torch.where(class_index, vector[1], vector[0])
    return vector[class_index]


def _gamma_per_element(
    gamma: Gamma, class_index: Tensor, like: Tensor, *, mode: Mode, n_classes: int
) -> float | Tensor | GammaSchedule:
    if isinstance(gamma, (int, float)):
        return float(gamma)
    if isinstance(gamma, GammaSchedule):
        return gamma
    return _per_element(gamma, class_index, like, mode=mode, n_classes=n_classes, name="gamma")


def _alpha_per_element(
    alpha: Alpha, class_index: Tensor, like: Tensor, *, mode: Mode, n_classes: int
) -> Tensor | None:
    if alpha is None:
        return None
    if isinstance(alpha, (int, float)):
        alpha = list(binary_alpha_weights(alpha)) if mode == "binary" else [alpha] * n_classes
    if mode == "multilabel" and not _is_elementwise(alpha):
        weight_of_positive = _per_class(alpha, like, n_classes, "alpha")
        return torch.where(class_index, weight_of_positive, 1 - weight_of_positive)
    return _per_element(alpha, class_index, like, mode=mode, n_classes=n_classes, name="alpha")


def _is_elementwise(value: Sequence[float] | Tensor) -> bool:
    """True for a tensor given per element (e.g. (K, 1) for K stacked models), not per class."""
    return isinstance(value, Tensor) and value.dim() >= 2


def _per_element(
    value: Sequence[float] | Tensor,
    class_index: Tensor,
    like: Tensor,
    *,
    mode: Mode,
    n_classes: int,
    name: str,
) -> Tensor:
    if _is_elementwise(value):
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return _select(_per_class(value, like, n_classes, name), class_index, mode)
