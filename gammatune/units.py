"""Units for a user's trainer: the rows of a table, their labels and groups, split by ids.

With a ``trainer``, gammatune trains on nothing itself: ``data`` names a CSV or Parquet table
whose rows are the units (samples), one column their labels and, optionally, one their groups
(patients, sites: a group stays inside one split). Its other columns (paths, text, ids) are the
trainer's business. The splits carry row positions; the features are empty.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gammatune.config import Config, NpzData, SplitConfig, TableData
from gammatune.errors import DataError
from gammatune.image_masks import load_mask_set, pixel_counts
from gammatune.labels import encode_labels, subsample_minority
from gammatune.tables import read_frame

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True)
class Units:
    """The data table and the row positions of each split (sorted ``int64``); ``groups`` is
    the groups column as strings (one per row) or None."""

    table: pd.DataFrame
    train_ids: np.ndarray
    val_ids: np.ndarray
    test_ids: np.ndarray
    labels: np.ndarray  # (rows,) int64 in 0..C-1, -1 for a row left out by subsampling
    groups: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None  # a segmentation set's (C, H, W)
    classes: tuple[str, ...] | None = None  # a segmentation set's pixel classes: what is scored


def load_units(config: Config) -> tuple[Units, tuple[str, ...]]:
    """Read the table, encode its labels and split its rows (by group where ``data.groups``
    names a column), reproducibly from the split seed.

    Raises:
        DataError: A missing file or column, missing labels, one class only, a class with
            fewer than 3 samples or in fewer than 3 groups.
    """
    if config.trainer is not None and config.trainer.is_builtin:  # model.kind: unet
        return image_units(config)
    source = config.data
    assert isinstance(source, TableData)  # the config allows no other source with a trainer
    table = _read_table(source)
    labels, class_names = encode_labels(table[source.target].to_numpy(), source.positive_label)
    rng = np.random.default_rng(config.split_seed)
    rows = np.arange(len(labels))
    if source.minority_fraction is not None:
        rows = subsample_minority(labels, source.minority_fraction, rng)
    groups = None if source.groups is None else table[source.groups].astype(str).to_numpy()
    parts = _split_rows(labels, rows, groups, config.split, rng, class_names, source.groups)
    encoded = np.full(len(labels), -1, dtype=np.int64)
    encoded[rows] = labels[rows]
    train_ids, val_ids, test_ids = parts
    units = Units(table, train_ids, val_ids, test_ids, labels=encoded, groups=groups)
    return units, class_names


def image_units(config: Config) -> tuple[Units, tuple[str, ...]]:
    """The images of a segmentation set as units: one row each (``stratum``: the rarest
    foreground class the mask holds, ``none`` for an empty one; ``pixels_<class>``: its pixel
    counts; a table of files keeps its columns), split stratified on the stratum (groups kept
    whole). The labels are the strata, and the names returned theirs (those some image has,
    ``none`` first), as a trainer's with ``data.classes``; ``Units.classes`` are the pixel
    classes a trial scores, background first.

    Raises:
        DataError: See :func:`~gammatune.image_masks.load_mask_set`; a class in no training
            mask; ``data.minority_fraction`` (images are not subsampled).
    """
    import pandas as pd

    source = config.data
    assert isinstance(source, NpzData | TableData)  # the config allows no other with a unet
    if source.minority_fraction is not None:
        raise DataError(
            f"data.minority_fraction: {source.minority_fraction} subsamples classes of samples; "
            "a segmentation set's images are not subsampled: remove it."
        )
    for field in ("positive_label", "image_shape", "text", "features", "id"):
        if (value := getattr(source, field, None)) is not None:
            raise DataError(
                f"data.{field}: {value!r} has no effect on a segmentation set (the masks give "
                "the classes, the images the inputs): remove it."
            )
    found = load_mask_set(source, getattr(source, "classes", None))
    names = found.class_names
    counts = pixel_counts(found.masks, len(names))  # (N, C)
    labels = image_strata(counts > 0)
    table = (
        found.table.copy() if found.table is not None else pd.DataFrame(index=range(len(counts)))
    )
    strata = ("none", *names[1:])
    table["stratum"] = [strata[s] for s in labels]
    for c, name in enumerate(names):
        table[f"pixels_{name}"] = counts[:, c]
    rng = np.random.default_rng(config.split_seed)
    rows = np.arange(len(labels))
    keys = rows if found.groups is None else found.groups
    train, val, test = _parts(labels, rows, keys, config.split, rng)
    held = counts[train].sum(axis=0)
    if (absent := np.flatnonzero(held == 0)).size:
        c = int(absent[0])
        raise DataError(
            f"data: class {names[c]!r} (mask value {c}) is in no training mask (it is in "
            f"{int((counts[:, c] > 0).sum())} image(s) of {len(labels)}); use more images of it, "
            "or other split shares."
        )
    shape = tuple(int(n) for n in found.images.shape[1:])
    held_by = np.unique(labels)  # strata no image has are no label: renumber the rest
    units = Units(
        table, train, val, test, np.searchsorted(held_by, labels), found.groups,
        image_shape=shape, classes=names,
    )  # fmt: skip
    return units, tuple(strata[s] for s in held_by)


def image_strata(holds: np.ndarray) -> np.ndarray:
    """``(N,)`` each image's stratum: the foreground class it holds that the fewest images
    hold (ties: the lower class), 0 where it holds none. ``holds`` is ``(N, C)`` booleans."""
    rarity = holds.sum(axis=0).astype(np.float64)
    rarity[0] = np.inf  # the background is never a stratum of its own
    ranked = np.where(holds, rarity[None, :], np.inf)
    strata = ranked.argmin(axis=1)
    return np.where(np.isinf(ranked.min(axis=1)), 0, strata).astype(np.int64)


def refold_units(units: Units, fold: int, *, seed: int) -> Units:
    """Fold ``fold`` of repeated re-splits of train+val rows (groups kept whole), as
    :func:`gammatune.data.refold` does for features: validation keeps its size per stratum;
    test is untouched. Fold 0 is ``units`` itself."""
    if fold == 0:
        return units
    pool = np.concatenate([units.train_ids, units.val_ids])
    keys = pool if units.groups is None else units.groups[pool]
    strata = _strata(units.labels, pool, keys)
    val_keys = units.val_ids if units.groups is None else units.groups[units.val_ids]
    counts = Counter(strata[key] for key in set(val_keys.tolist()))
    rng = np.random.default_rng([seed, fold])
    chosen = _take(strata, counts, rng)
    is_val = np.isin(keys, list(chosen))
    return dataclasses.replace(
        units, train_ids=np.sort(pool[~is_val]), val_ids=np.sort(pool[is_val])
    )


def _read_table(source: TableData) -> pd.DataFrame:
    table = read_frame(source)
    for field, column in (("target", source.target), ("groups", source.groups)):
        if column is not None and column not in table.columns:
            shown = ", ".join(map(str, list(table.columns)[:20]))
            raise DataError(
                f"data.{field}: no column {column!r} in {source.path.name} (columns: {shown})."
            )
    missing = table[source.target].isna()
    if missing.any():
        raise DataError(
            f"data.target: column {source.target!r} has {int(missing.sum())} missing labels."
        )
    if source.groups is not None and (gaps := int(table[source.groups].isna().sum())):
        raise DataError(f"data.groups: column {source.groups!r} has {gaps} missing values.")
    return table.reset_index(drop=True)


def _strata(labels: np.ndarray, rows: np.ndarray, keys: np.ndarray) -> dict[Any, int]:
    """Each key's (row's or group's) stratum: the rarest class among its rows."""
    counts = np.bincount(labels[rows][labels[rows] >= 0])
    rarity = np.argsort(np.argsort(counts))  # 0: the rarest class
    strata: dict[Any, int] = {}
    for key, label in zip(keys, labels[rows], strict=True):
        rank = int(rarity[label])
        strata[key] = min(strata.get(key, rank), rank)
    return strata


def _take(strata: dict[Any, int], counts: Mapping[int, int], rng: np.random.Generator) -> set[Any]:
    """``counts[s]`` keys of each stratum ``s``, drawn at random."""
    chosen: set[Any] = set()
    for stratum, n in sorted(counts.items()):
        members = sorted(k for k, s in strata.items() if s == stratum)
        chosen.update(members[i] for i in rng.permutation(len(members))[:n])
    return chosen


def _split_rows(
    labels: np.ndarray,
    rows: np.ndarray,
    groups: np.ndarray | None,
    split: SplitConfig,
    rng: np.random.Generator,
    class_names: tuple[str, ...],
    column: str | None,
) -> list[np.ndarray]:
    """Train, val and test row positions, stratified by the rarest class of each key."""
    keys = rows if groups is None else groups[rows]
    _check_spread(labels, rows, keys, class_names, column)
    parts = _parts(labels, rows, keys, split, rng)
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        present = np.unique(labels[part])
        if len(present) < len(class_names):
            absent = next(c for i, c in enumerate(class_names) if i not in present)
            raise DataError(
                f"data: the {name} split has no sample of class {absent!r}; use more data, "
                "fewer classes, or other split shares."
            )
    return parts


def _parts(
    labels: np.ndarray,
    rows: np.ndarray,
    keys: np.ndarray,
    split: SplitConfig,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Train, val and test rows: each stratum's keys (rows, or groups) shared out by
    ``split.val`` and ``split.test``, at least one key of each stratum in val and in test."""
    strata = _strata(labels, rows, keys) if split.stratify else dict.fromkeys(keys, 0)
    sizes = {s: sum(1 for v in strata.values() if v == s) for s in set(strata.values())}
    val = _take(strata, {s: max(1, round(n * split.val)) for s, n in sizes.items()}, rng)
    rest = {k: s for k, s in strata.items() if k not in val}
    test = _take(rest, {s: max(1, round(n * split.test)) for s, n in sizes.items()}, rng)
    in_val, in_test = np.isin(keys, list(val)), np.isin(keys, list(test))
    parts = [rows[~in_val & ~in_test], rows[in_val], rows[in_test]]
    return [np.sort(part).astype(np.int64) for part in parts]


def _check_spread(
    labels: np.ndarray,
    rows: np.ndarray,
    keys: np.ndarray,
    class_names: tuple[str, ...],
    column: str | None,
) -> None:
    """Every class in at least 3 keys (samples, or groups), so that each split gets one."""
    for c, name in enumerate(class_names):
        holders, counts = np.unique(keys[labels[rows] == c], return_counts=True)
        if len(holders) >= 3:
            continue
        if column is None:
            raise DataError(
                f"data: class {name!r} has {len(holders)} sample(s); train, val and test need "
                "at least 3 (one each)."
            )
        top = holders[int(np.argmax(counts))] if len(holders) else None
        raise DataError(
            f"data.groups: class {name!r} occurs in {len(holders)} group(s) of column "
            f"{column!r} (group {top!r} holds {int(counts.max()) if len(counts) else 0} of its "
            f"{int(counts.sum())} samples); train, val and test need one group each."
        )
