"""Data sources -> checked, stratified, standardized train/val/test splits as tensors."""

from __future__ import annotations

import dataclasses
import logging
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gammatune.columns import NumericStep, Step
from gammatune.config import (
    Config,
    NpzData,
    PythonData,
    SklearnData,
    SplitConfig,
    SyntheticData,
    TableData,
)
from gammatune.encoders import embed_configured
from gammatune.errors import DataError
from gammatune.features import Preprocessing
from gammatune.image_masks import is_mask_array
from gammatune.labels import encode_labels, subsample_minority
from gammatune.plugins import call_ref, describe
from gammatune.tables import Table, fit_steps, frame_table, read_table
from gammatune.units import Units, load_units, refold_units

logger = logging.getLogger(__name__)

_IMAGE_SHAPES = {"digits": (1, 8, 8)}


@dataclass(frozen=True, slots=True)
class Splits:
    """Standardized features ``(N, F)`` float32 and labels ``(N,)`` int64 in ``0..C-1``.

    For binary tasks label 1 is the positive (minority) class. ``preprocessing`` is what
    turned the source's rows into these features (fitted on the training split).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int] | None = None
    preprocessing: Preprocessing | None = None
    units: Units | None = None  # with a trainer: the table and each split's row ids

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def class_counts(self) -> dict[str, list[int]]:
        """Samples per class in each split: ``{"train": [...], "val": [...], "test": [...]}``."""
        return {
            name: torch.bincount(labels, minlength=self.n_classes).tolist()
            for name, labels in (
                ("train", self.y_train),
                ("val", self.y_val),
                ("test", self.y_test),
            )
        }

    def imbalance_ratio(self) -> float:
        """Majority-class count over minority-class count, over all splits."""
        totals = np.sum(list(self.class_counts().values()), axis=0)
        return float(totals.max() / totals.min())


def load_data(config: Config) -> Splits:
    """Load the configured source, check it, and split it reproducibly from ``split.seed``
    (default ``seed``): the training seed alone never changes the data.

    Raises:
        DataError: Missing file or column, one class only, NaN/inf features, too few samples of
            a class to split, or a minority fraction that the data cannot give.
    """
    if config.trainer is not None:  # rows of a table, for the user's own trainer
        return unit_splits(*load_units(config))
    source = config.data
    raw = _read(source, config.split_seed, config.model.kind)
    labels, class_names = encode_labels(raw.labels, source.positive_label)
    rng = np.random.default_rng(config.split_seed)
    keep = None
    if not isinstance(source, SyntheticData) and source.minority_fraction is not None:
        keep = subsample_minority(labels, source.minority_fraction, rng)
        labels = labels[keep]
    parts = _split(labels, config.split, rng, class_names)
    features, steps = _features(config, raw, keep, parts[0])
    mean = features[parts[0]].mean(axis=0)
    std = features[parts[0]].std(axis=0)
    std[std < 1e-12] = 1.0  # a constant feature stays 0 instead of dividing by 0
    scaled = ((features - mean) / std).astype(np.float32)
    plan = None if raw.table is None else raw.table.plan
    preprocessing = Preprocessing(
        steps,
        tuple(mean.tolist()),
        tuple(std.tolist()),
        target=None if plan is None else plan.target,
        id=None if plan is None else plan.id,
        ignored=() if plan is None else plan.excluded,
    )
    tensors: list[torch.Tensor] = []
    for index in parts:
        tensors += [torch.from_numpy(scaled[index]), torch.from_numpy(labels[index])]
    shape = source.image_shape or raw.image_shape
    if shape is not None and int(np.prod(shape)) != scaled.shape[1]:
        raise DataError(
            f"data.image_shape: {tuple(shape)} holds {int(np.prod(shape))} values, but a sample "
            f"has {scaled.shape[1]} features."
        )
    x_train, y_train, x_val, y_val, x_test, y_test = tensors
    return Splits(
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        class_names=class_names,
        image_shape=shape,
        preprocessing=preprocessing,
    )


def refold(splits: Splits, fold: int, *, seed: int) -> Splits:
    """Return fold ``fold`` of repeated stratified re-splits of train+val; test is untouched.

    Fold 0 is ``splits`` itself. Fold ``f > 0`` shuffles train+val with the seed sequence
    ``[seed, f]`` and cuts a validation split of the same size per class, so confirm can judge
    on validation samples that did not choose its finalists, without ever touching the test
    split. The features keep the original split's standardization (and vocabulary), fitted on
    its training rows, some of which are now validation rows: a small leak, the same for every
    setting compared.
    """
    if fold == 0:
        return splits
    if splits.units is not None:
        return unit_splits(refold_units(splits.units, fold, seed=seed), splits.class_names)
    x = torch.cat([splits.x_train, splits.x_val])
    y = torch.cat([splits.y_train, splits.y_val])
    val_counts = torch.bincount(splits.y_val, minlength=splits.n_classes).tolist()
    rng = np.random.default_rng([seed, fold])
    labels = y.numpy()
    val = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in enumerate(val_counts)]
    )
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[val] = True
    train_index, val_index = (torch.from_numpy(np.flatnonzero(m)) for m in (~is_val, is_val))
    return dataclasses.replace(
        splits,
        x_train=x[train_index],
        y_train=y[train_index],
        x_val=x[val_index],
        y_val=y[val_index],
    )


@dataclass(frozen=True, slots=True)
class _Raw:
    features: np.ndarray | None  # (N, F) float64; None for a table
    labels: np.ndarray  # (N,) as the source gives them
    image_shape: tuple[int, int, int] | None = None
    table: Table | None = None  # named columns, encoded after the split


def _features(
    config: Config, raw: _Raw, keep: np.ndarray | None, train: np.ndarray
) -> tuple[np.ndarray, tuple[Step, ...]]:
    """The raw features ``(N, F)`` float64 of the kept rows, and the steps that made them:
    a table's encodings fitted on the ``train`` rows only; an array's columns as they are.
    A text column with ``data.text_encoder`` fits nothing: every row is embedded alike, once
    (cached in the run folder)."""
    if raw.table is None:
        assert raw.features is not None  # every source gives a table or an array
        features = raw.features if keep is None else raw.features[keep]
        _check_finite(features)
        names = tuple(f"x{i}" for i in range(features.shape[1]))
        return features, (NumericStep(names, None),)
    frame = raw.table.frame if keep is None else raw.table.frame.iloc[keep]
    frame = frame.reset_index(drop=True)
    plan = raw.table.plan
    encoded = isinstance(config.data, TableData) and config.data.text_encoder is not None
    steps = fit_steps(frame.iloc[train], dataclasses.replace(plan, text=None) if encoded else plan)
    parts = [step.transform(frame, where="data") for step in steps]
    if encoded and plan.text is not None:
        texts = frame[plan.text].astype(object).fillna("").astype(str).tolist()
        encoder, embedded = embed_configured(config, texts)
        steps, parts = (*steps, encoder), [*parts, embedded]
    return np.hstack(parts), steps


def _read(source: Any, seed: int, kind: str) -> _Raw:
    match source:
        case SyntheticData():
            return _synthetic(source, seed)
        case TableData():
            table = read_table(source)
            return _Raw(None, table.labels, table=table)
        case NpzData():
            return _npz(source, kind)
        case SklearnData():
            from sklearn import datasets

            x, y = getattr(datasets, f"load_{source.name}")(return_X_y=True)
            return _Raw(x.astype(np.float64), y, _IMAGE_SHAPES.get(source.name))
        case PythonData():
            return _python(source)
    raise TypeError(f"unknown data source {source!r}")


def _synthetic(source: SyntheticData, seed: int) -> _Raw:
    from sklearn.datasets import make_classification

    n_informative = source.n_informative or max(2, source.n_features // 2)
    k = source.n_classes
    weights = [(1 - source.minority_fraction) / (k - 1)] * (k - 1) + [source.minority_fraction]
    try:
        x, y = make_classification(
            n_samples=source.n_samples,
            n_features=source.n_features,
            n_informative=n_informative,
            n_redundant=min(2, source.n_features - n_informative),
            n_classes=k,
            n_clusters_per_class=1 if k > 2 ** (n_informative - 1) else 2,
            weights=weights,
            flip_y=source.flip_y,
            random_state=seed,
        )
    except ValueError as exc:
        raise DataError(f"data: cannot generate this synthetic set: {exc}") from None
    return _Raw(x, y)


def _npz(source: NpzData, kind: str) -> _Raw:
    if not source.path.is_file():
        raise DataError(f"data.path: no such file: {source.path}.")
    with source.path.open("rb") as file:
        start = file.read(6)
    if not start.startswith(b"PK"):  # an .npz is a zip of .npy files
        raise DataError(
            f"data.path: {source.path.name} is not a NumPy .npz file (it starts with "
            f"{start!r}); write one with numpy.savez, or use source: csv for a table."
        )
    try:
        with np.load(source.path, allow_pickle=False) as arrays:
            for field, key in (("x_key", source.x_key), ("y_key", source.y_key)):
                if key not in arrays:
                    raise DataError(
                        f"data.{field}: no array {key!r} in {source.path.name} "
                        f"(arrays: {', '.join(arrays.files)})."
                    )
            x, y = arrays[source.x_key], arrays[source.y_key]
    except (ValueError, OSError, zipfile.BadZipFile) as exc:  # not an npz, or object arrays
        raise DataError(f"data.path: cannot read {source.path.name} as .npz: {exc}") from None
    if is_mask_array(x, y):
        raise DataError(
            f"model.kind: {kind!r} classifies whole samples, but data.y_key ({source.y_key!r}) "
            f"holds masks {y.shape} of the images {x.shape}: a segmentation set; use "
            "model.kind: unet (the built-in U-Net), or your own trainer."
        )
    image_shape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3])) if x.ndim == 4 else None
    return _Raw(_as_features(x, field="data.x_key"), _as_labels(y, len(x)), image_shape)


def _python(source: PythonData) -> _Raw:
    result = call_ref(source.ref, field="data.ref", error=DataError)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise DataError(
            f"data.ref: {source.ref} must return (features, labels); got {type(result).__name__}."
        )
    import pandas as pd

    if isinstance(result[0], pd.DataFrame):
        table = frame_table(result[0], _as_labels(np.asarray(result[1]), len(result[0])), source)
        return _Raw(None, table.labels, table=table)
    given = [f for f in ("id", "exclude", "categorical", "features") if getattr(source, f)]
    if given:
        raise DataError(
            f"data.{given[0]}: names columns, but {source.ref} returns features as an array; "
            "return a pandas DataFrame."
        )
    try:
        x, y = (np.asarray(part) for part in result)
    except ValueError as exc:  # ragged lists: rows of different lengths
        raise DataError(
            f"data.ref: {source.ref} must return (features, labels) as arrays; {describe(exc)}."
        ) from None
    image_shape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3])) if x.ndim == 4 else None
    return _Raw(_as_features(x, field="data.ref"), _as_labels(y, len(x)), image_shape)


def _as_features(x: np.ndarray, *, field: str) -> np.ndarray:
    if x.ndim < 2 or len(x) == 0:
        raise DataError(
            f"{field}: features must be an array (N, F) or (N, C, H, W); got shape {x.shape}."
        )
    try:
        return x.reshape(len(x), -1).astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{field}: features must be numeric; got dtype {x.dtype}.") from None


def _as_labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"data: labels must be (N,) with N = {n} samples; got shape {y.shape}.")
    return y


def _check_finite(features: np.ndarray) -> None:
    bad = ~np.isfinite(features)
    if bad.any():
        per_column = bad.sum(axis=0)
        shown = ", ".join(f"{c} ({per_column[c]})" for c in np.flatnonzero(per_column)[:5])
        raise DataError(
            f"data: {int(bad.sum())} NaN or infinite feature values, in column(s) {shown}; "
            "impute or drop them first (or return a DataFrame: its missing values are imputed)."
        )


def _split(
    labels: np.ndarray, split: SplitConfig, rng: np.random.Generator, class_names: tuple[str, ...]
) -> list[np.ndarray]:
    """Return train, val and test indices, stratified by class unless configured otherwise."""
    counts = np.bincount(labels, minlength=len(class_names))
    if counts.min() < 3:
        rare = class_names[int(np.argmin(counts))]
        raise DataError(
            f"data: class {rare!r} has {counts.min()} sample(s); train, val and test need at "
            "least 3 (one each)."
        )
    groups = (
        [np.flatnonzero(labels == c) for c in range(len(counts))]
        if split.stratify
        else [np.arange(len(labels))]
    )
    parts: list[list[np.ndarray]] = [[], [], []]
    for members in groups:
        members = rng.permutation(members)
        n_val = max(1, int(round(len(members) * split.val)))
        n_test = max(1, int(round(len(members) * split.test)))
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val : n_val + n_test])
        parts[0].append(members[n_val + n_test :])
    return [np.sort(np.concatenate(part)) for part in parts]


def unit_splits(units: Units, class_names: tuple[str, ...]) -> Splits:
    """Splits of a trainer's units: their labels, empty features, and the units themselves."""

    def part(ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros((len(ids), 0)), torch.from_numpy(units.labels[ids].copy())

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
        part(ids) for ids in (units.train_ids, units.val_ids, units.test_ids)
    )
    return Splits(
        x_train, y_train, x_val, y_val, x_test, y_test, class_names=class_names, units=units
    )
