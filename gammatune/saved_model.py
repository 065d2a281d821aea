"""A saved model folder: write it whole (``save_model``), read it back checked (``load_model``).

A model folder holds ``weights.pt`` (a ``torch.save`` of the state dict, read back with
``weights_only=True``: never a pickle of objects) and ``model.json``: the model spec, the
preprocessing (input columns, standardization, a text column's vocabulary), the label names,
the decision threshold, gamma, alpha, the sha256 of ``weights.pt`` and (from ``export``) the
verdict. The folder is swapped in whole (see :func:`gammatune.outputs.whole_folder`), and a
card whose digest does not match its weights is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gammatune.config import ModelConfig
from gammatune.errors import DataError
from gammatune.estimator import FocalClassifier, fitted_classifier
from gammatune.features import Preprocessing
from gammatune.loss import GammaSchedule
from gammatune.models import build_model
from gammatune.outputs import whole_folder

FORMAT = "gammatune-model"
FORMAT_VERSION = 2  # 2: the preprocessing as steps (categorical, missing values, an id)
WEIGHTS, CARD = "weights.pt", "model.json"
DIGEST = "weights_sha256"  # in the card: the weights.pt it was saved with


def save_model(
    classifier: FocalClassifier,
    path: str | Path,
    *,
    model: ModelConfig | None = None,
    preprocessing: Preprocessing | None = None,
    image_shape: tuple[int, int, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a fitted classifier to the folder ``path`` (created); :func:`load_model` reads it.

    Args:
        classifier: Fitted (by ``fit``, or holding a tuned model).
        path: The folder.
        model: The spec that builds ``classifier.model_``; default the classifier's MLP.
        preprocessing: The input columns and standardization; default columns ``x0, x1, ...``
            with the classifier's standardization.
        image_shape: For a ``cnn`` model.
        extra: JSON-safe facts to keep in ``model.json`` (the verdict, how it was trained).

    Raises:
        ConfigError: ``path`` exists and holds other files than a saved model's (it is
            replaced whole, so that a reader never sees files of two saves).
    """
    path = Path(path)
    spec = model or ModelConfig(
        kind="mlp", hidden=list(classifier.hidden), dropout=classifier.dropout
    )
    names = getattr(classifier, "feature_names_in_", None)
    columns = [f"x{i}" for i in range(classifier.n_features_in_)] if names is None else names
    mean, std = (tuple(map(float, v)) for v in (classifier.mean_, classifier.std_))
    preprocessing = preprocessing or Preprocessing.numeric(map(str, columns), mean, std)
    params = {k: _json_param(v) for k, v in classifier.get_params().items()}
    if not isinstance(params["random_state"], int | None):
        params["random_state"] = None
    params["pos_label"] = _json_label(params["pos_label"])
    state = {k: v.detach().cpu().contiguous() for k, v in classifier.model_.state_dict().items()}
    card = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": spec.model_dump(mode="json"),
        "n_features": classifier.n_features_in_,
        "n_outputs": 1 if len(classifier.classes_) == 2 else len(classifier.classes_),
        "image_shape": None if image_shape is None else list(image_shape),
        "classes": [_json_label(c) for c in classifier.classes_],
        "pos_label": _json_label(classifier.pos_label_),
        "threshold": classifier.threshold_,
        "gamma": params["gamma"],
        "alpha": params["alpha"],
        "estimator": params,
        "preprocessing": preprocessing.to_json(),
        **(extra or {}),
    }
    with whole_folder(
        path, holds=frozenset((WEIGHTS, CARD))
    ) as fresh:  # the whole old folder or the whole new one, never a mix
        torch.save(state, fresh / WEIGHTS)
        card[DIGEST] = _digest(fresh / WEIGHTS)
        (fresh / CARD).write_text(json.dumps(card, indent=2), encoding="utf-8")
    return path


def _digest(weights: Path) -> str:
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def load_model(path: str | Path) -> FocalClassifier:
    """Load a model folder as a fitted ``FocalClassifier``; ``preprocessing_`` holds its inputs.

    Its ``predict_proba`` takes a pandas DataFrame with the model's input columns, taken by
    name in any order (a missing one is an error naming it; the target, id and excluded columns
    may be there), or the encoded features ``(N, F)`` (standardized inside). To score a table
    with its id and labels, use :func:`gammatune.scoring.score_frame`.

    Raises:
        DataError: The folder holds no gammatune model, or one of a newer format.
    """
    path = Path(path)
    if not (path / CARD).exists() and (path / "card.json").is_file():
        raise DataError(
            f"--model: {path} holds your trainer's export (card.json), not a model gammatune "
            "can run: load the weights file it names with your own code."
        )
    try:
        card = json.loads((path / CARD).read_text(encoding="utf-8"))
        digest = _digest(path / WEIGHTS)
        state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"--model: {path} is not a gammatune model folder ({exc}).") from None
    readable = isinstance(card, dict) and card.get("format") == FORMAT
    if not readable or card.get("version", 0) > FORMAT_VERSION:
        raise DataError(f"--model: {path / CARD} is not a model this gammatune reads.")
    if card.get(DIGEST, digest) != digest:  # a folder saved before digests has none
        raise DataError(
            f"--model: {path / WEIGHTS} does not belong to {path / CARD} (its sha256 differs "
            "from the one the card records: files of two exports mixed); export it again."
        )
    shape = card["image_shape"]
    module = build_model(
        ModelConfig.model_validate(card["model"]),
        n_features=card["n_features"],
        n_outputs=card["n_outputs"],
        image_shape=None if shape is None else (shape[0], shape[1], shape[2]),
    )
    module.load_state_dict(state)
    preprocessing = Preprocessing.from_json(card["preprocessing"])
    params = card["estimator"]
    params["hidden"] = tuple(params["hidden"])
    for name in ("gamma", "alpha"):
        value = params[name]
        if isinstance(value, dict):
            params[name] = GammaSchedule(**value)
        elif isinstance(value, list):
            params[name] = tuple(value)
    classifier = fitted_classifier(
        FocalClassifier(**params),
        module,
        classes=np.asarray(card["classes"]),
        mean=np.asarray(preprocessing.mean),
        std=np.asarray(preprocessing.std),
        threshold=card["threshold"],
    )
    classifier.preprocessing_ = preprocessing
    if "pos_label" in card:
        classifier.pos_label_ = card["pos_label"]
    return classifier


def _json_param(value: Any) -> Any:
    """An estimator parameter as JSON: tuples as lists, a gamma schedule as its fields."""
    if isinstance(value, GammaSchedule):
        return dataclasses.asdict(value)
    return list(value) if isinstance(value, tuple) else value


def _json_label(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label
