"""Score rows with an exported model: a table's id, the scores and the user's labels, as a
DataFrame or a CSV (``gammatune predict``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gammatune.columns import CategoricalStep
from gammatune.errors import DataError
from gammatune.estimator import FocalClassifier
from gammatune.features import Preprocessing, frame_features
from gammatune.outputs import refuse_inputs, whole_file
from gammatune.saved_model import load_model

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
    if preprocessing.id is not None and preprocessing.id not in frame.columns:
        raise DataError(f"{where}: no id column {preprocessing.id!r} (the model's data.id).")
    features = frame_features(frame, preprocessing, where=where)
    probs = classifier.predict_proba(features)
    labels = classifier.predict(features)
    if probs.shape[1] == 2:
        columns = {"score": probs[:, list(classifier.classes_).index(classifier.pos_label_)]}
    else:
        columns = {f"score_{name}": probs[:, c] for c, name in enumerate(classifier.classes_)}
    scored = pd.DataFrame({**columns, "label": labels})
    if preprocessing.id is not None:
        scored.insert(0, preprocessing.id, frame[preprocessing.id].to_numpy())
    return scored


@dataclass(frozen=True, slots=True)
class Scored:
    """What ``predict_csv`` wrote: its rows, where, and notes for the person (unseen values)."""

    n_rows: int
    out: Path
    warnings: tuple[str, ...]

    @property
    def text(self) -> str:
        """The warnings, then ``wrote N rows to OUT``, one per line."""
        return "".join(f"warning: {w}\n" for w in self.warnings) + (
            f"wrote {self.n_rows} rows to {self.out}"
        )


def predict_csv(model: str | Path, data: str | Path, out: str | Path) -> Scored:
    """Score the CSV ``data`` with the model folder ``model`` into the CSV ``out``.

    Returns:
        The number of rows written, and a warning per categorical column holding values never
        seen in training (scored as its ``other`` value).

    Raises:
        DataError: The model or the CSV cannot be read, or the CSV's columns are not the
            model's inputs.
        ConfigError: ``out`` is the data file, inside the model folder, or a SQLite database.
    """
    import pandas as pd

    data, out = Path(data), Path(out)
    folder = Path(model)
    refuse_inputs({"--out": out}, {data: "the --data file", folder: "the --model folder"})
    classifier = load_model(folder)
    try:
        frame = pd.read_csv(data)
    except (OSError, ValueError) as exc:
        raise DataError(f"--data: cannot read {data}: {exc}") from None
    scored = score_frame(classifier, frame, where=data.name)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with whole_file(out) as partial:  # interrupted: no partial file that looks complete
            scored.to_csv(partial, index=False)
    except OSError as exc:
        raise DataError(f"--out: cannot write {out}: {exc.strerror}.") from None
    unseen = unseen_values(classifier.preprocessing_, frame, where=data.name)
    return Scored(len(scored), Path(out), unseen)


def unseen_values(
    preprocessing: Preprocessing, frame: pd.DataFrame, *, where: str
) -> tuple[str, ...]:
    """One line per categorical column of ``frame`` holding values never seen in training."""
    return tuple(
        f"{where}: column {step.column!r}: {n} row(s) hold a value never seen in training; "
        "scored as its 'other' value."
        for step in preprocessing.steps
        if isinstance(step, CategoricalStep) and (n := step.unseen(frame))
    )
