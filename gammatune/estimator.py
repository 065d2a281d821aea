"""``FocalClassifier``: a network trained with focal loss, as a scikit-learn classifier.

It plugs gammatune's training into scikit-learn (``GridSearchCV``, ``cross_val_score``,
pipelines), and it is what :func:`gammatune.export.load_model` returns for a tuned model.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn

from gammatune.config import ModelConfig, TrainConfig
from gammatune.device import resolve_device, seed_everything
from gammatune.loss import GammaSchedule
from gammatune.models import build_model, init_output_bias
from gammatune.training import fit, make_loss, predict_logits, scores_from_logits

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def validate_data(estimator: Any, /, X: Any, y: Any = "no_validation", **kwargs: Any) -> Any:  # noqa: N803
        return estimator._validate_data(X, y, **kwargs)


class FocalClassifier(ClassifierMixin, BaseEstimator):
    """An MLP trained with focal loss (Lin et al. 2017), early-stopped on a validation split.

    Binary and multiclass. For binary tasks ``alpha`` weights ``classes_[1]`` (scikit-learn's
    positive class) and ``1 - alpha`` the other; for multiclass, the rarest training class
    against the others. ``gamma=0, alpha=None`` is plain cross-entropy.

    ``fit`` standardizes the features (mean and std of the training part), holds out a
    stratified ``validation_fraction`` for early stopping on the validation loss, sets the output
    bias at the class prior, and trains with AdamW in float32.

    Args:
        gamma: Focusing exponent, >= 0; a tuple of one per class (binary: negatives,
            positives); or a :class:`gammatune.loss.GammaSchedule` (adaptive). Default 2.0.
        alpha: Positive (minority) class weight in [0, 1]; a tuple of one positive weight per
            class; or None for none. Default 0.25.
        hidden: Widths of the hidden layers; ``()`` is a linear model. Default (128, 128).
        dropout: Dropout after each hidden layer, in [0, 1). Default 0.1.
        epochs: Most epochs to train. Default 30.
        batch_size: Rows per step. Default 512.
        lr: AdamW learning rate. Default 1e-3.
        weight_decay: AdamW weight decay. Default 1e-4.
        patience: Epochs without improvement of the validation loss before stopping. Default 5.
        min_epochs: Epochs always trained. Default 5.
        validation_fraction: Share of the rows held out for early stopping, in (0, 1).
            Default 0.2.
        random_state: Seeds the split, the initial weights, batch order and dropout: an int, a
            ``RandomState`` or None. Default 0.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``. Default "cpu".

    Attributes:
        classes_: The class labels ``(C,)``; column ``c`` of ``predict_proba`` is ``classes_[c]``.
        n_features_in_: Features seen by ``fit``.
        model_: The trained ``nn.Module`` (on the CPU), mapping standardized ``(N, F)`` to
            ``(N, 1)`` logits (binary) or ``(N, C)``.
        mean_, std_: The standardization ``(F,)``.
        threshold_: Binary decision threshold on ``predict_proba[:, 1]``: 0.5 after ``fit``; a
            loaded model keeps the one it was tuned with.
        best_epoch_, n_iter_: The kept epoch and the epochs trained.
    """

    def __init__(
        self,
        gamma: float | tuple[float, ...] | GammaSchedule = 2.0,
        alpha: float | tuple[float, ...] | None = 0.25,
        hidden: tuple[int, ...] = (128, 128),
        dropout: float = 0.1,
        epochs: int = 30,
        batch_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 5,
        min_epochs: int = 5,
        validation_fraction: float = 0.2,
        random_state: int | np.random.RandomState | None = 0,
        device: str = "cpu",
    ) -> None:
        self.gamma = gamma
        self.alpha = alpha
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.min_epochs = min_epochs
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device

    def fit(self, X: Any, y: Any) -> FocalClassifier:  # noqa: N803 - scikit-learn's names
        """Train on ``X`` ``(N, F)`` and labels ``y`` ``(N,)``; return ``self``.

        Raises:
            ValueError: Fewer than 2 classes, or an invalid parameter (the message names it).
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self._check_params()
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"FocalClassifier needs samples of at least 2 classes; got 1 class "
                f"({self.classes_[0]!r})."
            )
        seed = _seed(self.random_state)
        train, val = _validation_split(encoded, self.validation_fraction, seed)
        self.mean_ = X[train].mean(axis=0)
        std = X[train].std(axis=0)
        self.std_ = np.where(std < 1e-12, 1.0, std)
        x = self._standardize(X)
        targets = torch.from_numpy(encoded.astype(np.int64))
        self.model_, result = self._train(x, targets, train, val, seed)
        if result.failure is not None:
            warnings.warn(f"FocalClassifier: {result.failure}", RuntimeWarning, stacklevel=2)
        self.best_epoch_, self.n_iter_ = result.best_epoch, result.epochs_run
        self.threshold_ = 0.5
        return self

    def _check_params(self) -> None:
        if not (isinstance(self.gamma, GammaSchedule) or _numbers(self.gamma, 0, math.inf)):
            raise ValueError(
                "FocalClassifier: gamma must be >= 0, one such number per class, or a "
                f"GammaSchedule; got {self.gamma!r}."
            )
        per_class = isinstance(self.alpha, tuple | list)
        if self.alpha is not None and not _numbers(
            self.alpha, 1e-12 if per_class else 0, 1e12 if per_class else 1
        ):
            raise ValueError(
                "FocalClassifier: alpha must be in [0, 1], one positive weight per class, or "
                f"None; got {self.alpha!r}."
            )
        if not 0 < self.validation_fraction < 1:
            raise ValueError(
                "FocalClassifier: validation_fraction must be in (0, 1); "
                f"got {self.validation_fraction!r}."
            )

    def _train(
        self, x: torch.Tensor, y: torch.Tensor, train: np.ndarray, val: np.ndarray, seed: int
    ) -> tuple[nn.Module, Any]:
        n_classes = len(self.classes_)
        train_index, val_index = torch.from_numpy(train), torch.from_numpy(val)
        config = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=self.patience,
            min_epochs=self.min_epochs,
            monitor="val_loss",  # defined on any split, also one without positives
            device=self.device,
            precision="fp32",
        )
        seed_everything(seed)  # the initial weights, and dropout masks, from the seed
        model = build_model(
            ModelConfig(kind="mlp", hidden=list(self.hidden), dropout=self.dropout),
            n_features=x.shape[1],
            n_outputs=1 if n_classes == 2 else n_classes,
        )
        counts = torch.bincount(y[train_index], minlength=n_classes).double()
        init_output_bias(model, counts / counts.sum())
        minority = int(torch.argmin(counts))
        gamma, alpha = (
            tuple(map(float, v)) if isinstance(v, tuple | list) else v
            for v in (self.gamma, self.alpha)
        )
        for name, value in (("gamma", gamma), ("alpha", alpha)):
            if isinstance(value, tuple) and len(value) != n_classes:
                raise ValueError(
                    f"FocalClassifier: {name} has {len(value)} values, one per class; the data "
                    f"has {n_classes} classes."
                )
        loss_fn = make_loss(
            gamma=gamma if isinstance(gamma, tuple | GammaSchedule) else float(gamma),  # type: ignore[arg-type]
            alpha=alpha,  # type: ignore[arg-type]
            n_classes=n_classes,
            minority=minority,
        )
        data = (x[train_index], y[train_index], x[val_index], y[val_index])
        device = resolve_device(self.device)
        result = fit(model, data, loss_fn=loss_fn, config=config, device=device, seed=seed)
        return model.cpu(), result

    def _standardize(self, X: np.ndarray) -> torch.Tensor:  # noqa: N803
        return torch.from_numpy(((X - self.mean_) / self.std_).astype(np.float32))

    def decision_function(self, X: Any) -> np.ndarray:  # noqa: N803
        """Return the logits: ``(N,)`` for binary (of ``classes_[1]``), else ``(N, C)``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        logits = predict_logits(self.model_, self._standardize(X)).double().numpy()
        return logits[:, 0] if logits.shape[1] == 1 else logits

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """Return class probabilities ``(N, C)``, columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        scores = scores_from_logits(predict_logits(self.model_, self._standardize(X)))
        return np.column_stack([1 - scores, scores]) if scores.ndim == 1 else scores

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Return labels ``(N,)``: binary at ``threshold_`` on ``classes_[1]``, else the argmax."""
        probs = self.predict_proba(X)
        if probs.shape[1] == 2:
            return self.classes_[(probs[:, 1] >= self.threshold_).astype(int)]
        return self.classes_[probs.argmax(axis=1)]


def fitted_classifier(
    classifier: FocalClassifier,
    model: nn.Module,
    *,
    classes: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    threshold: float = 0.5,
    feature_names: list[str] | None = None,
) -> FocalClassifier:
    """Make ``classifier`` hold an already trained ``model`` (as after ``fit``) and return it.

    Args:
        classifier: The estimator, with the parameters ``model`` was trained with.
        model: Maps standardized ``(N, F)`` to ``(N, 1)`` (binary) or ``(N, C)`` logits.
        classes: The labels ``(C,)``, in the order of the model's outputs.
        mean, std: The standardization ``(F,)``.
        threshold: Binary decision threshold on ``classes[1]``'s probability. Default 0.5.
        feature_names: The input columns, checked against a DataFrame's; None for none.
    """
    classifier.model_ = model.cpu().eval()
    classifier.classes_ = np.asarray(classes)
    classifier.mean_, classifier.std_ = np.asarray(mean), np.asarray(std)
    classifier.threshold_ = float(threshold)
    classifier.n_features_in_ = len(classifier.mean_)
    if feature_names is not None:
        classifier.feature_names_in_ = np.asarray(feature_names, dtype=object)
    return classifier


def _seed(random_state: int | np.random.RandomState | None) -> int:
    if isinstance(random_state, int | np.integer):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


def _validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Train and validation indices, stratified where every class has 2 rows or more."""
    index = np.arange(len(labels))
    counts = np.bincount(labels)
    n_val = max(1, int(round(fraction * len(labels))))
    stratify = labels if counts.min() >= 2 and n_val >= len(counts) else None
    train, val = train_test_split(index, test_size=n_val, stratify=stratify, random_state=seed)
    return np.sort(train), np.sort(val)


def _numbers(value: Any, low: float, high: float) -> bool:
    """Whether ``value`` is a number in [low, high], or a non-empty tuple/list of them."""
    values = value if isinstance(value, tuple | list) and value else [value]
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high for v in values
    )
