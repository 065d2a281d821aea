"""The linear yardstick: scikit-learn's logistic regression, fitted to convergence."""

from __future__ import annotations

import time
import warnings

import numpy as np
from torch import Tensor


def fit_logistic(
    x_train: Tensor, y_train: Tensor, *, balanced: bool, seed: int
) -> tuple[object, float]:
    """Fit an L2 logistic regression (lbfgs, up to 5000 iterations); return it and seconds.

    ``balanced`` weights classes inversely to their frequency (``class_weight="balanced"``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    model = LogisticRegression(
        max_iter=5000, class_weight="balanced" if balanced else None, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # stated in the record's stop reason
        model.fit(x_train.numpy(), y_train.numpy())
    return model, time.perf_counter() - start


def logistic_scores(model: object, x: Tensor) -> np.ndarray:
    """Positive-class probabilities ``(N,)`` for two classes, else ``(N, C)``."""
    probs = model.predict_proba(x.numpy())  # type: ignore[attr-defined]
    return probs[:, 1] if probs.shape[1] == 2 else probs
