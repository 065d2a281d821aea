"""Score rows with an exported model: a table's id, the scores and the user's labels, as a
DataFrame or a CSV (``gammatune predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gammatune.errors import DataError
from gammatune.estimator import FocalClassifier
from gammatune.export import load_model
from gammatune.features import Preprocessing, frame_features

if TYPE_CHECKING:
    import pandas as pd


def score_frame(classifier: FocalClassifier, frame: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """Score a table's rows: the id column (when the model has one), ``score`` (binary: the
    positive class's probability) or ``score_<class>`` per class, and ``label`` (the user's
    label names); one row per input row, in order.

    Missing values are filled as in training; a categorical value never seen in training
    counts as its column's ``other`` value.

    Raises:
        DataError: A column is missing or extra, or not numeric (the message names them), or
            the id column is missing.
    """
    import pandas as pd

    preprocessing: Preprocessing = classifier.preprocessing_
    features = frame_features(frame, preprocessing, where=where)
    probs = classifier.predict_proba(features)
    labels = classifier.predict(features)
    if probs.shape[1] == 2:
        columns = {"score": probs[:, list(classifier.classes_).index(classifier.pos_label_)]}
    else:
        columns = {f"score_{name}": probs[:, c] for c, name in enumerate(classifier.classes_)}
    scored = pd.DataFrame({**columns, "label": labels})
    if preprocessing.id is not None:
        if preprocessing.id not in frame.columns:
            raise DataError(f"{where}: no id column {preprocessing.id!r} (the model's data.id).")
        scored.insert(0, preprocessing.id, frame[preprocessing.id].to_numpy())
    return scored


def predict_csv(model: str | Path, data: str | Path, out: str | Path) -> int:
    """Score the CSV ``data`` with the model folder ``model`` into the CSV ``out``; return its
    number of rows.

    Raises:
        DataError: The model or the CSV cannot be read, or the CSV's columns are not the
            model's inputs.
    """
    import pandas as pd

    data = Path(data)
    classifier = load_model(model)
    try:
        frame = pd.read_csv(data)
    except (OSError, ValueError) as exc:
        raise DataError(f"--data: cannot read {data}: {exc}") from None
    scored = score_frame(classifier, frame, where=data.name)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    scored.to_csv(out, index=False)
    return len(scored)
