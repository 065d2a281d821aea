"""A table's columns -> numbers: one encoding step per column kind, fitted on the training rows.

- **numeric**: a missing value becomes the column's training median, and each column that had
  missing values in training gets a 0/1 ``<column>=missing`` indicator (scikit-learn's
  ``SimpleImputer(strategy="median", add_indicator=True)``).
- **categorical** (text, category and boolean columns, and numeric ones listed in
  ``data.categorical``): one 0/1 column per value among the ``max_categories`` most frequent in
  training, and one ``<column>=other`` column for the rest and for values never seen in
  training (scikit-learn's ``OneHotEncoder(max_categories=..., handle_unknown=
  "infrequent_if_exist")``). A missing value is the value ``(missing)``.
- **text**: a TF-IDF vocabulary (see :mod:`gammatune.features`).

scikit-learn fits each step; the fitted step is plain data (saved as JSON, never a pickle),
and its transform is written here, so training and scoring run the same code. A new kind is
a new step: a frozen dataclass with ``kind``, ``inputs``, ``outputs``, ``transform`` and
``to_json``, listed in ``STEP_KINDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from gammatune.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

MISSING = "(missing)"  # a categorical column's missing value, a category of its own


class Step(Protocol):
    """A fitted encoding of some of a table's columns."""

    kind: ClassVar[str]

    @property
    def inputs(self) -> tuple[str, ...]: ...

    @property
    def outputs(self) -> tuple[str, ...]: ...

    def transform(self, frame: pd.DataFrame, *, where: str) -> np.ndarray: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class NumericStep:
    """Numeric columns as they are; missing -> the training ``medians``, and a 0/1 indicator
    column for each column of ``flagged`` (those with missing values in training). ``medians``
    None (an array source, or a model saved before missing values were handled): a missing
    value is an error."""

    kind: ClassVar[str] = "numeric"
    columns: tuple[str, ...]
    medians: tuple[float, ...] | None
    flagged: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.columns

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.columns + tuple(f"{c}=missing" for c in self.flagged)

    def transform(self, frame: pd.DataFrame, *, where: str) -> np.ndarray:
        """Return ``(N, len(outputs))`` float64.

        Raises:
            DataError: A column is not numeric, or holds an infinite value.
        """
        values = np.empty((len(frame), len(self.columns)), dtype=np.float64)
        for i, column in enumerate(self.columns):
            series = frame[column]
            if series.dtype.kind not in "biuf":
                raise DataError(f"{where}: column {column!r} must be numeric; got {series.dtype}.")
            values[:, i] = series.to_numpy(dtype=np.float64)
        if np.isinf(values).any():
            column = self.columns[int(np.flatnonzero(np.isinf(values).any(axis=0))[0])]
            raise DataError(f"{where}: column {column!r} holds an infinite value.")
        missing = np.isnan(values)
        if self.medians is None and missing.any():
            column = self.columns[int(np.flatnonzero(missing.any(axis=0))[0])]
            raise DataError(
                f"{where}: column {column!r} has missing values; this model was trained "
                "without any, and has no value to fill them with."
            )
        filled = values if self.medians is None else np.where(missing, self.medians, values)
        flags = [missing[:, self.columns.index(c)] for c in self.flagged]
        return np.column_stack([filled, *flags]) if flags else filled

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "columns": list(self.columns),
            "medians": None if self.medians is None else list(self.medians),
            "flagged": list(self.flagged),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NumericStep:
        return cls(
            tuple(data["columns"]),
            None if data["medians"] is None else tuple(float(v) for v in data["medians"]),
            tuple(data.get("flagged", ())),
        )


@dataclass(frozen=True, slots=True)
class CategoricalStep:
    """One categorical column: a 0/1 column per kept value, then ``<column>=other``."""

    kind: ClassVar[str] = "categorical"
    column: str
    categories: tuple[str, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(f"{self.column}={c}" for c in self.categories) + (f"{self.column}=other",)

    def transform(self, frame: pd.DataFrame, *, where: str) -> np.ndarray:
        """Return ``(N, len(categories) + 1)`` float64: one 1 per row; an unseen value (or one
        of the rare values training put there) in the ``other`` column."""
        index = {value: i for i, value in enumerate(self.categories)}
        other = len(self.categories)
        codes = np.asarray([index.get(v, other) for v in category_values(frame[self.column])])
        one_hot = np.zeros((len(frame), other + 1), dtype=np.float64)
        one_hot[np.arange(len(frame)), codes] = 1.0
        return one_hot

    def unseen(self, frame: pd.DataFrame) -> int:
        """How many rows hold a value not among ``categories`` (they go to ``other``)."""
        known = set(self.categories)
        return sum(v not in known for v in category_values(frame[self.column]))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "categories": list(self.categories)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CategoricalStep:
        return cls(data["column"], tuple(data["categories"]))


def category_values(series: pd.Series) -> list[str]:
    """A column's values as category names: text as is, ``3.0`` as ``3``, missing as
    ``(missing)``; so a value reads the same from any CSV, with or without missing values."""
    import pandas as pd

    missing = series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(series) or series.dtype.kind in "biuf":
        numbers = series.to_numpy(dtype=object)
        text = [_number_name(v) for v in numbers]
    else:
        text = [str(v) for v in series.to_numpy(dtype=object)]
    return [MISSING if m else t for m, t in zip(missing, text, strict=True)]


def _number_name(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def fit_numeric(frame: pd.DataFrame, columns: list[str]) -> NumericStep:
    """Fit the training medians, and flag the columns with missing values in ``frame``.

    Raises:
        DataError: A column holds an infinite value (a missing one is filled; inf is not).
    """
    from sklearn.impute import SimpleImputer

    values = frame[columns].to_numpy(dtype=np.float64)
    if not len(columns):
        return NumericStep((), ())
    if np.isinf(values).any():
        column = columns[int(np.flatnonzero(np.isinf(values).any(axis=0))[0])]
        raise DataError(
            f"data: column {column!r} holds an infinite value; fix it, or leave the cell "
            "empty (a missing value, filled with the training median)."
        )
    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    imputer.fit(values)
    flagged = () if imputer.indicator_ is None else imputer.indicator_.features_
    return NumericStep(
        tuple(columns),
        tuple(float(v) for v in imputer.statistics_),
        tuple(columns[int(i)] for i in flagged),
    )


def fit_categorical(series: pd.Series, *, max_categories: int) -> CategoricalStep:
    """Keep the ``max_categories`` most frequent values of the training rows ``series``."""
    from sklearn.preprocessing import OneHotEncoder

    values = np.asarray(category_values(series), dtype=object).reshape(-1, 1)
    # scikit-learn counts its infrequent bucket among max_categories: one more keeps as many.
    encoder = OneHotEncoder(
        max_categories=max_categories + 1, handle_unknown="infrequent_if_exist"
    ).fit(values)
    rare = encoder.infrequent_categories_[0]
    rare_set = set() if rare is None else set(rare.tolist())
    kept = [str(c) for c in encoder.categories_[0] if c not in rare_set]
    return CategoricalStep(str(series.name), tuple(kept))


STEP_KINDS: dict[str, Any] = {
    NumericStep.kind: NumericStep,
    CategoricalStep.kind: CategoricalStep,
}
