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
from gammatune.features import frame_features
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

    Binary and multiclass. A number ``alpha`` weights the class ``pos_label`` (default: the
    rarest class seen in ``fit``; a tie takes the later of the sorted labels) and ``1 - alpha``
    every other class, whatever the labels' alphabetical order: with labels ``fraud`` and
    ``ok``, ``alpha=0.9`` weights ``fraud`` if it is the rarer one. ``gamma=0, alpha=None`` is
    plain cross-entropy. A loaded model (:func:`gammatune.export.load_model`) takes a pandas
    DataFrame by column names, in any order.

    ``fit`` standardizes the features (mean and std of the training part), holds out a
    stratified ``validation_fraction`` for early stopping on the validation loss, sets the output
    bias at the class prior, and trains with AdamW in float32.

    Args:
        gamma: Focusing exponent, >= 0; a tuple of one per class (binary: negatives,
            positives); or a :class:`gammatune.loss.GammaSchedule` (adaptive). Default 2.0.
        alpha: The weight of ``pos_label`` in [0, 1] (the others get ``1 - alpha``); a tuple
            of one positive weight per class (binary: the other class, then ``pos_label``); or
            None for none. Default 0.25.
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
        pos_label: The class ``alpha`` weights (binary: the positive class, whose probability
            ``threshold_`` cuts); None for the rarest class seen in ``fit``. Default None.

    Attributes:
        classes_: The class labels ``(C,)``; column ``c`` of ``predict_proba`` is ``classes_[c]``.
        n_features_in_: Features seen by ``fit``.
        model_: The trained ``nn.Module`` (on the CPU), mapping standardized ``(N, F)`` to
            ``(N, 1)`` logits (binary) or ``(N, C)``.
        mean_, std_: The standardization ``(F,)``.
        pos_label_: The class ``alpha`` weights (the chosen or given ``pos_label``).
        threshold_: Binary decision threshold on ``pos_label_``'s probability: 0.5 after
            ``fit``; a loaded model keeps the one it was tuned with.
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
        pos_label: Any = None,
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
        self.pos_label = pos_label

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
        self.pos_label_ = self._positive(encoded)
        if len(self.classes_) == 2:  # the network's one output is the positive class's logit
            encoded = (encoded == self._positive_index()).astype(np.int64)
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

    def _positive(self, encoded: np.ndarray) -> Any:
        """The class ``alpha`` weights: ``pos_label``, else the rarest (a tie: the later)."""
        if self.pos_label is None:
            counts = np.bincount(encoded, minlength=len(self.classes_))
            return self.classes_[len(counts) - 1 - int(np.argmin(counts[::-1]))]
        if self.pos_label not in self.classes_.tolist():
            raise ValueError(
                f"FocalClassifier: pos_label must be one of the classes "
                f"{self.classes_.tolist()!r}; got {self.pos_label!r}."
            )
        return self.pos_label

    def _positive_index(self) -> int:
        return int(np.flatnonzero(self.classes_ == self.pos_label_)[0])

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # noqa: N803 - scikit-learn's signature
        """``FocalClassifier(gamma=2.0, alpha=0.25, ...)``: gamma and alpha always, then the
        parameters that differ from their defaults."""
        defaults = FocalClassifier().get_params()
        shown = {"gamma": self.gamma, "alpha": self.alpha}
        for name, value in self.get_params().items():
            if name not in shown and not _same(value, defaults[name]):
                shown[name] = value
        text = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"{type(self).__name__}({text})"

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
        minority = 1 if n_classes == 2 else self._positive_index()
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
        x = self._inputs(X)  # first: it checks that the model is fitted
        logits = predict_logits(self.model_, x).double().numpy()
        if logits.shape[1] > 1:
            return logits
        return logits[:, 0] if self._positive_index() == 1 else -logits[:, 0]

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """Return class probabilities ``(N, C)``, columns in the order of ``classes_``."""
        x = self._inputs(X)  # first: it checks that the model is fitted
        scores = scores_from_logits(predict_logits(self.model_, x))
        if scores.ndim > 1:
            return scores
        pairs = [1 - scores, scores]
        return np.column_stack(pairs if self._positive_index() == 1 else pairs[::-1])

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Return labels ``(N,)``: binary ``pos_label_`` where its probability is at least
        ``threshold_``, else the other class; multiclass the argmax."""
        probs = self.predict_proba(X)
        if probs.shape[1] > 2:
            return self.classes_[probs.argmax(axis=1)]
        positive = self._positive_index()
        is_positive = probs[:, positive] >= self.threshold_
        return self.classes_[np.where(is_positive, positive, 1 - positive)]

    def _inputs(self, X: Any) -> torch.Tensor:  # noqa: N803
        """Standardized features: a loaded model's DataFrame taken by column names (see
        :func:`gammatune.features.frame_features`), else ``(N, F)`` as they are."""
        check_is_fitted(self)
        preprocessing = getattr(self, "preprocessing_", None)
        if preprocessing is not None and hasattr(X, "columns"):
            X = frame_features(X, preprocessing, where="predict: the DataFrame")
        else:
            X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._standardize(X)


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
        classes: The labels ``(C,)``, in the order of the model's outputs (binary: the
            negative class, then the positive one, whose logit the model outputs).
        mean, std: The standardization ``(F,)``.
        threshold: Binary decision threshold on ``classes[1]``'s probability. Default 0.5.
        feature_names: The input columns, checked against a DataFrame's; None for none.
    """
    classifier.model_ = model.cpu().eval()
    classifier.classes_ = np.asarray(classes)
    classifier.mean_, classifier.std_ = np.asarray(mean), np.asarray(std)
    classifier.threshold_ = float(threshold)
    # binary: the model's one output is the last class's logit
    binary = len(classifier.classes_) == 2
    classifier.pos_label_ = classifier.classes_[-1] if binary else classifier.pos_label
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


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default) and type(value) is type(default)
    except (TypeError, ValueError):  # e.g. arrays
        return False


def _numbers(value: Any, low: float, high: float) -> bool:
    """Whether ``value`` is a number in [low, high], or a non-empty tuple/list of them."""
    values = value if isinstance(value, tuple | list) and value else [value]
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high for v in values
    )
