"""AdamW on one flat buffer: a whole stack's parameters updated in one pass."""

from __future__ import annotations

import math

import torch
from torch import Tensor


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

    def take(self, params: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor) -> None:
        """Go on with ``params`` and these moments (a compacted stack's); the step count stays."""
        self.params, self.exp_avg, self.exp_avg_sq = params, exp_avg, exp_avg_sq
        self.denom = torch.empty_like(params)

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
