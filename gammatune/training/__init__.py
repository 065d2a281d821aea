"""Training: the single-model loop and the stacked engines (K independent trials as one model).

Knows nothing of Optuna or files: it takes models, data and settings, and returns curves.
"""

from __future__ import annotations

from gammatune.training._engines import (
    dropout_masks,
    dropout_streams,
    keep_rate,
    stackable,
    vmappable,
)
from gammatune.training._logistic import fit_logistic, logistic_scores
from gammatune.training._loop import (
    EpochEvent,
    FitResult,
    Gamma,
    Keep,
    Reporter,
    Weight,
    class_weights,
    fit,
    make_loss,
    predict_logits,
    scores_from_logits,
)
from gammatune.training._stacked import Member, choose_parallel, fit_stacked

__all__ = [
    "EpochEvent",
    "FitResult",
    "Gamma",
    "Keep",
    "Reporter",
    "Member",
    "choose_parallel",
    "class_weights",
    "dropout_masks",
    "dropout_streams",
    "fit",
    "fit_logistic",
    "fit_stacked",
    "keep_rate",
    "logistic_scores",
    "make_loss",
    "predict_logits",
    "scores_from_logits",
    "stackable",
    "vmappable",
    "Weight",
]
