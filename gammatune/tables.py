"""Tables as people have them: read a CSV, Parquet file or DataFrame, give each column its role
(input, label, id, excluded) and kind (numeric, categorical, text), and check both.

The encoding itself is fitted later, on the training split only (see :func:`fit_steps` and
:mod:`gammatune.columns`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gammatune.columns import Step, fit_categorical, fit_numeric
from gammatune.config import PythonData, TableData
from gammatune.errors import DataError
from gammatune.features import fit_text

if TYPE_CHECKING:
    import pandas as pd


UNIQUE_SHARE = 0.5  # a categorical column with more distinct values than this share of its rows


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """Each column's role and kind; the inputs are ``numeric``, ``categorical`` and ``text``."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    text: str | None
    target: str | None
    id: str | None
    excluded: tuple[str, ...]
    max_categories: int
    text_max_features: int


@dataclass(frozen=True, slots=True)
class Table:
    """A table's input columns (``frame``, all rows), its labels ``(N,)`` and its plan."""

    frame: pd.DataFrame
    labels: np.ndarray
    plan: ColumnPlan


def read_frame(source: TableData) -> pd.DataFrame:
    """Read ``data.path``, a CSV or Parquet file, as it is.

    Raises:
        DataError: No such file (or a folder), an unreadable one, a header naming a column
            twice, or no rows.
    """
    import pandas as pd

    path = source.path
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(f"data.path: {what}: {path}.")
    if source.source == "csv":
        _check_header(path)
    try:
        frame = pd.read_csv(path) if source.source == "csv" else pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(
            f"data.source: parquet needs pyarrow: pip install pyarrow ({exc})."
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"data.path: cannot read {path}: {exc}") from None
    if frame.empty:
        raise DataError(f"data.path: {path.name} has no rows (a header only, or nothing).")
    return frame


def read_table(source: TableData) -> Table:
    """Read a CSV or Parquet file and plan its columns.

    Raises:
        DataError: No such file, an unreadable one, a header naming a column twice, no rows,
            a missing label, or a column role or kind that cannot work (see :func:`plan_columns`).
    """
    path, frame = source.path, read_frame(source)
    columns = [str(c) for c in frame.columns]
    if source.target not in columns:
        raise DataError(
            f"data.target: no column {source.target!r} in {path.name} "
            f"(columns: {', '.join(columns[:20])})."
        )
    labels = frame[source.target]
    if labels.isna().any():
        raise DataError(
            f"data.target: column {source.target!r} has {int(labels.isna().sum())} missing labels."
        )
    plan = plan_columns(frame, source, where=path.name, target=source.target)
    inputs = [*plan.numeric, *plan.categorical, *([plan.text] if plan.text else [])]
    return Table(frame[inputs], labels.to_numpy(), plan)


def frame_table(frame: pd.DataFrame, labels: np.ndarray, source: PythonData) -> Table:
    """A python loader's DataFrame of features (its own column names) and its labels.

    Raises:
        DataError: Columns named twice, or a role or kind that cannot work.
    """
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"data.ref: {source.ref} names column {duplicated[0]!r} twice.")
    plan = plan_columns(frame, source, where=source.ref, target=None)
    inputs = [*plan.numeric, *plan.categorical]
    return Table(frame[inputs], labels, plan)


def plan_columns(
    frame: pd.DataFrame, source: TableData | PythonData, *, where: str, target: str | None
) -> ColumnPlan:
    """Give each column a role and a kind, checking every name the experiment gives.

    Raises:
        DataError: A named column is missing; the target, the id or an excluded column is also
            listed in ``data.features``; an input column holds no value at all; a categorical
            column has more than ``data.max_distinct`` distinct values; or no input is left.
    """
    columns = [str(c) for c in frame.columns]
    text = source.text if isinstance(source, TableData) else None
    named = [("data.exclude", c) for c in source.exclude] + [("data.id", source.id)]
    named.append(("data.text", text))
    named += [("data.categorical", c) for c in source.categorical]
    named += [("data.features", c) for c in source.features or []]
    for field, column in named:
        if column is not None and column not in columns:
            raise DataError(
                f"{field}: no column {column!r} in {where} (columns: {_few(columns)})."
            )
    _check_roles(source, target, text)
    others = {target, source.id, text, *source.exclude}
    inputs = source.features or [c for c in columns if c not in others]
    if not inputs and text is None:
        raise DataError(f"data: {where} has no input column left besides the label, id and "
                        "excluded ones.")  # fmt: skip
    categorical = [c for c in inputs if c in source.categorical or not _is_numeric(frame[c])]
    for column in inputs:
        _check_column(
            frame[column], source, categorical=column in categorical,
            declared=column in source.categorical,
        )  # fmt: skip
    return ColumnPlan(
        numeric=tuple(c for c in inputs if c not in categorical),
        categorical=tuple(categorical),
        text=text,
        target=target,
        id=source.id,
        excluded=tuple(source.exclude),
        max_categories=source.max_categories,
        text_max_features=source.text_max_features if isinstance(source, TableData) else 0,
    )


def fit_steps(train: pd.DataFrame, plan: ColumnPlan) -> tuple[Step, ...]:
    """Fit each kind's encoding on the training rows: numeric, then categorical, then text.

    Raises:
        DataError: The text column holds no word in the training rows.
    """
    steps: list[Step] = []
    if plan.numeric:
        steps.append(fit_numeric(train, list(plan.numeric)))
    steps += [fit_categorical(train[c], max_categories=plan.max_categories)
              for c in plan.categorical]  # fmt: skip
    if plan.text is not None:
        texts = train[plan.text].fillna("").astype(str)
        steps.append(fit_text(plan.text, texts, max_features=plan.text_max_features))
    return tuple(steps)


def _check_header(path: Path) -> None:
    """pandas would rename a second ``label`` to ``label.1`` and read it as an input."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as file:
            header = next(csv.reader(file), [])
    except (OSError, csv.Error) as exc:
        raise DataError(f"data.path: cannot read {path}: {exc}") from None
    seen: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        if name in seen:
            raise DataError(
                f"data.path: the header of {path.name} names {name!r} twice (columns "
                f"{seen[name]} and {number}); give each column its own name."
            )
        seen[name] = number


def _check_roles(source: TableData | PythonData, target: str | None, text: str | None) -> None:
    features = source.features or []
    if target is not None and target in features:
        raise DataError(
            f"data.features: lists the target column {target!r} (the label would be an input); "
            "remove it."
        )
    if source.id is not None and source.id in features:
        raise DataError(
            f"data.id: {source.id!r} is also listed in data.features; an id is never an input."
        )
    if source.id is not None and source.id in (target, text):
        raise DataError(f"data.id: {source.id!r} is the target or the text column.")
    both = [c for c in source.exclude if c in features or c in (target, source.id, text)]
    if both:
        raise DataError(
            f"data.exclude: {both[0]!r} is also the target, the id, the text or listed in "
            "data.features; name each column once."
        )
    clash = [c for c in source.categorical if c in (target, source.id, text, *source.exclude)]
    if clash:
        raise DataError(
            f"data.categorical: {clash[0]!r} is the target, the id, the text or excluded."
        )
    wrong = [c for c in source.categorical if features and c not in features]
    if wrong:
        raise DataError(f"data.categorical: {wrong[0]!r} is not among data.features.")


def _check_column(
    series: pd.Series, source: TableData | PythonData, *, categorical: bool, declared: bool
) -> None:
    name = str(series.name)
    if series.isna().all():
        raise DataError(
            f"data: column {name!r} holds no value ({len(series)} of {len(series)} missing); "
            "list it in data.exclude."
        )
    if not categorical:
        return
    distinct, n_values = int(series.nunique(dropna=True)), int(series.notna().sum())
    import pandas as pd
    from pandas import to_numeric
    from pandas.api.types import is_string_dtype

    if is_string_dtype(series.dtype) and not declared:  # numbers but for a stray '?'
        present = series.dropna()
        values = pd.Series(present.unique())  # each distinct value read once, not each row
        strays = present[present.isin(values[to_numeric(values, errors="coerce").isna()])]
        if 0 < len(strays) <= max(1, n_values // 20) < n_values:
            raise DataError(
                f"data: column {name!r} holds numbers but for {len(strays)} value(s) such as "
                f"{strays.iloc[0]!r}; leave those cells empty (a missing value), or list "
                f"{name!r} in data.categorical to read the column as categories."
            )
    mostly_unique = distinct > source.max_categories and distinct > UNIQUE_SHARE * n_values
    if mostly_unique or distinct > source.max_distinct:
        raise DataError(
            f"data: categorical column {name!r} has {distinct} distinct values in {n_values} "
            f"rows (the cap: data.max_distinct = {source.max_distinct}, and at most half the "
            "rows): an id or free text, not a category? Name it in data.id, data.text or "
            f"data.exclude (a category keeps its {source.max_categories} most frequent values, "
            "data.max_categories; the rest share 'other')."
        )


def _is_numeric(series: pd.Series) -> bool:
    return series.dtype.kind in "iuf"


def _few(names: list[str], most: int = 12) -> str:
    rest = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + rest
