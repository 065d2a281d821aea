"""gammatune: find the right focal-loss gamma and alpha for an imbalanced classification problem.

The public API is imported lazily, so that ``gammatune --help`` and ``gammatune check`` start
without importing torch or optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "focal_loss": "gammatune.loss",
    "FocalLoss": "gammatune.loss",
    "GammaSchedule": "gammatune.loss",
    "DiceLoss": "gammatune.loss",
    "dice_loss": "gammatune.loss",
    "evaluate_segmentation": "gammatune.segmentation",
    "paired_image_bootstrap": "gammatune.segmentation",
    "load_config": "gammatune.config",
    "Config": "gammatune.config",
    "load_data": "gammatune.data",
    "run_workflow": "gammatune.tuning",
    "run_stages": "gammatune.tuning",
    "trials_frame": "gammatune.report",
    "GammatuneError": "gammatune.errors",
    "Pruned": "gammatune.errors",
    "TrialSpec": "gammatune.spec",
    "FocalClassifier": "gammatune.estimator",
    "load_model": "gammatune.export",
    "save_model": "gammatune.export",
    "export_model": "gammatune.export",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gammatune' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
