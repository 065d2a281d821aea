"""gammatune from Python: the focal-loss kernel in your own loop, then the tuning workflow.

Run: python examples/api.py   (the workflow writes runs/fraud/, as `gammatune run` would)
"""

from __future__ import annotations

import torch

from gammatune import focal_loss, load_config
from gammatune.report import study_summary
from gammatune.tuning import run_workflow

# 1. The kernel: a drop-in loss for imbalanced binary (or multiclass/multilabel) training.
logits = torch.randn(8, requires_grad=True)
targets = torch.tensor([0.0, 0, 0, 0, 0, 0, 1, 1])
loss = focal_loss(logits, targets, gamma=2.0, alpha=0.75)
loss.backward()
print(f"focal loss {loss.item():.4f}; gradient finite: {bool(torch.isfinite(logits.grad).all())}")

# 2. The workflow on an experiment file, every stage, as `gammatune run` does it (quietly).
config = load_config("examples/fraud.yaml")
run_workflow(config, ["baseline", "search", "refine", "confirm"])

# 3. The summary `gammatune report` prints: the same storage, the same verdict and intervals
#    (study_summary is what the CLI calls; printing a summary prints its sentences).
frame, summary, _ = study_summary(config)
chosen = summary.verdict.recommended
print(f"{len(frame)} trials; verdict {summary.verdict.kind}; use {chosen.name if chosen else '-'}")
print(summary)
for sentence in summary.health:
    print(sentence)
