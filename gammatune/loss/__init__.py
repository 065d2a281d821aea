"""The focal-loss kernel: binary, multiclass and multilabel; scalar or per-class alpha and gamma;
adaptive gamma. Imports nothing of gammatune but ``errors``, so users can take it alone.
"""

from __future__ import annotations

from gammatune.loss._dice import DiceLoss, DiceMode, dice_loss
from gammatune.loss._kernel import Alpha, FocalLoss, Gamma, Mode, Reduction, focal_loss
from gammatune.loss._schedules import GammaSchedule
from gammatune.loss._weights import binary_alpha_weights, class_balanced_weights

__all__ = [
    "Alpha",
    "DiceLoss",
    "DiceMode",
    "FocalLoss",
    "Gamma",
    "GammaSchedule",
    "Mode",
    "Reduction",
    "binary_alpha_weights",
    "class_balanced_weights",
    "dice_loss",
    "focal_loss",
]
