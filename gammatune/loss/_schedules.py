"""Adaptive gamma: schedules that set gamma per element from the model's confidence p_t."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor


@dataclass(frozen=True, slots=True)
class GammaSchedule:
    """Adaptive gamma, computed per element from ``p_t``; a constant for the gradient.

    Args:
        kind: ``"flsd53"`` (Mukhoti et al. 2020): gamma = 5 where p_t < 0.2, else 3.
            ``"confidence"``: gamma = k * logit(p_t), clamped to [min_gamma, max_gamma], so
            misclassified examples (p_t < 0.5) get ``min_gamma`` and confident ones up to
            ``max_gamma``.
        k: Slope of the ``"confidence"`` schedule, > 0. Default 1.0.
        min_gamma: Lower clamp of the ``"confidence"`` schedule, >= 0. Default 0.0.
        max_gamma: Upper clamp of the ``"confidence"`` schedule, >= min_gamma. Default 5.0.
    """

    kind: Literal["flsd53", "confidence"] = "flsd53"
    k: float = 1.0
    min_gamma: float = 0.0
    max_gamma: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in ("flsd53", "confidence"):
            raise ValueError(
                f"GammaSchedule: kind must be 'flsd53' or 'confidence'; got {self.kind!r}."
            )
        if not self.k > 0:
            raise ValueError(f"GammaSchedule: k must be > 0; got {self.k!r}.")
        if not 0 <= self.min_gamma <= self.max_gamma:
            raise ValueError(
                "GammaSchedule: need 0 <= min_gamma <= max_gamma; "
                f"got min_gamma={self.min_gamma!r}, max_gamma={self.max_gamma!r}."
            )

    def __call__(self, z: Tensor) -> Tensor:
        """Return gamma per element from the margin ``z = logit(p_t)``; no host sync."""
        if self.kind == "flsd53":
            # p_t < 0.2  <=>  z < logit(0.2)
            return torch.where(z < math.log(0.25), 5.0, 3.0).to(z.dtype)
        return (self.k * z).clamp(self.min_gamma, self.max_gamma)
