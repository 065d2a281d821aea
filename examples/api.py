"""gammatune from Python: the focal-loss kernel in your own loop, then the tuning workflow.

Run: python examples/api.py
"""

from __future__ import annotations

import torch

from gammatune import focal_loss, load_config
from gammatune.report import summarize, trials_frame
from gammatune.tuning import run_workflow

# 1. The kernel: a drop-in loss for imbalanced binary (or multiclass/multilabel) training.
logits = torch.randn(8, requires_grad=True)
targets = torch.tensor([0.0, 0, 0, 0, 0, 0, 1, 1])
loss = focal_loss(logits, targets, gamma=2.0, alpha=0.75)
loss.backward()
print(f"focal loss {loss.item():.4f}; gradient finite: {bool(torch.isfinite(logits.grad).all())}")

# 2. The workflow on an experiment file, as `gammatune run` does it (quietly).
config = load_config("examples/fraud.yaml")
run_workflow(config, ["baseline", "search"])
frame = trials_frame(config)
summary = summarize(frame, config.objective)
print(frame[["stage", "gamma", "alpha", "objective", "test_f1", "test_pr_auc"]].to_string())
print(summary.verdict)
