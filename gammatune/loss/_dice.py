"""Soft Dice on probabilities, per image and class: the region term added to focal loss in
segmentation (MONAI ``DiceFocalLoss``, smp ``DiceLoss``)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from gammatune.errors import ConfigError

DiceMode = Literal["binary", "multiclass"]


def dice_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    mode: DiceMode = "multiclass",
    include_background: bool = False,
    smooth: float = 1e-5,
) -> Tensor:
    """Return ``1 - soft Dice``, averaged over images and classes.

    Per image and class, on probabilities ``p`` (sigmoid for ``binary``, softmax over classes
    for ``multiclass``) and the one-hot mask ``t``, summed over pixels::

        dice = (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)

    so an image without the class that predicts none of it scores 1 (no loss), and one that
    predicts some scores near 0: false positives on empty images are penalized.

    Args:
        logits: ``binary``: ``(N, *spatial)`` or ``(N, 1, *spatial)``; ``multiclass``:
            ``(N, C, *spatial)``. Floating dtype, computed in float32 at least.
        targets: ``binary``: 0/1 of the logits' shape without the channel; ``multiclass``:
            integer classes ``(N, *spatial)``.
        mode: "binary" or "multiclass". Default "multiclass".
        include_background: Multiclass: whether class 0 counts. Default False.
        smooth: Added to numerator and denominator, > 0. Default 1e-5.

    Raises:
        ConfigError: A mode or shape that does not fit.

    Example:
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # (1, 2, 1, 2)
        >>> round(float(dice_loss(logits, torch.tensor([[[0, 1]]]))), 4)
        0.0
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    if mode == "binary":
        x = logits.squeeze(1) if logits.ndim == targets.ndim + 1 else logits
        if x.shape != targets.shape:
            raise ConfigError(f"dice_loss: logits {tuple(logits.shape)} and targets "
                              f"{tuple(targets.shape)} do not fit (binary)")  # fmt: skip
        probs = torch.sigmoid(x.to(dtype)).unsqueeze(1)
        truth = targets.to(dtype).unsqueeze(1)
    elif mode == "multiclass":
        if logits.ndim != targets.ndim + 1 or logits.shape[2:] != targets.shape[1:]:
            raise ConfigError(f"dice_loss: logits {tuple(logits.shape)} must be (N, C, *spatial) "
                              f"for targets {tuple(targets.shape)} (multiclass)")  # fmt: skip
        probs = torch.softmax(logits.to(dtype), dim=1)
        truth = torch.nn.functional.one_hot(targets.long(), logits.shape[1]).movedim(-1, 1)
        truth = truth.to(dtype)
        if not include_background:
            probs, truth = probs[:, 1:], truth[:, 1:]
    else:
        raise ConfigError(f"dice_loss: mode must be binary or multiclass; got {mode!r}")
    dims = tuple(range(2, probs.ndim))
    overlap = (probs * truth).sum(dims)
    dice = (2 * overlap + smooth) / (probs.sum(dims) + truth.sum(dims) + smooth)  # (N, C)
    return 1 - dice.mean()


class DiceLoss(torch.nn.Module):
    """:func:`dice_loss` as a module: ``DiceLoss(mode=...)(logits, targets)``."""

    def __init__(
        self, *, mode: DiceMode = "multiclass", include_background: bool = False,
        smooth: float = 1e-5,
    ) -> None:  # fmt: skip
        super().__init__()
        self.mode, self.include_background, self.smooth = mode, include_background, smooth

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return dice_loss(
            logits, targets, mode=self.mode, include_background=self.include_background,
            smooth=self.smooth,
        )  # fmt: skip
