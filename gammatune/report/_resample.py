"""The decision's intervals: a paired bootstrap over the validation samples and the seeds.

Seeds alone understate the noise of a comparison: every confirm repeat of a fold is judged on
the same validation samples. So for each comparison the validation samples of each fold are
resampled (stratified, the same resample for both settings and every repeat), and the
resampled mean difference over the paired (repeat, fold) units gives the interval.

With ``data.groups`` (a user's trainer: patients, sites) the samples of one group are alike,
and resampling them one by one gives too narrow an interval: whole groups are resampled
instead. A fold's validation rows are found again from the table and the split seed, and
checked against the labels the trials scored; where they cannot be, the intervals resample
samples and say so (:attr:`ValidationSpread.warning`), never silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import numpy as np
import pandas as pd

from gammatune.bootstrap import PairedMetric, resampled_differences
from gammatune.config import Config
from gammatune.errors import GammatuneError
from gammatune.metrics import OBJECTIVES, TASK_OBJECTIVES
from gammatune.record import SampleScores, Setting
from gammatune.report._arms import setting_mask
from gammatune.report._verdict import Resampled
from gammatune.scores_files import Scores, load_any_scores
from gammatune.task_scores import paired_differences
from gammatune.units import Units, load_units, refold_units

_UNIT = ["repeat", "fold"]
# Dice, IoU, AP: resampled per image (F1 and the like are classification's too).
_TASK_METRICS = {m for names in TASK_OBJECTIVES.values() for m in names} - set(OBJECTIVES)


@dataclass(frozen=True, slots=True)
class Groups:
    """``data.groups``: the column, and the units (the table's rows, their groups and
    splits), or None with ``warning`` where the table cannot be read."""

    column: str
    units: Units | None
    warning: str | None = None

    def of(self, ids: np.ndarray) -> np.ndarray | None:
        """The groups of rows ``ids`` (None where the table was not read)."""
        return None if self.units is None or self.units.groups is None else self.units.groups[ids]


def declared_groups(config: Config) -> Groups | None:
    """The experiment's groups, read from its table, where ``data.groups`` is declared."""
    column = getattr(config.data, "groups", None)
    if config.trainer is None or column is None:
        return None
    try:
        units, _ = load_units(config)
    except GammatuneError as exc:
        why = f"its table cannot be read ({str(exc).rstrip('.')})"
        return Groups(column, None, fallback(column, why))
    return Groups(column, units)


def fallback(column: str, why: str) -> str:
    """The warning of intervals that resample samples though ``data.groups`` is declared."""
    return (
        f"Warning: data.groups names column {column!r}, but {why}; the intervals resample "
        "single samples instead of whole groups, and are too narrow where one group's samples "
        "are alike."
    )


@dataclass(frozen=True, slots=True)
class ValidationSpread:
    """The resampler the verdict calls per comparison (a ``report._verdict.Spread``):
    ``unit`` is what it resamples, ``warning`` why not whole groups though declared."""

    resample: Callable[[Setting, Setting], np.ndarray | None]
    unit: Resampled = "samples"
    warning: str | None = None

    def __call__(self, setting: Setting, reference: Setting) -> np.ndarray | None:
        return self.resample(setting, reference)


def validation_spread(
    config: Config,
    confirm: pd.DataFrame,
    *,
    groups: Groups | None = None,
    n_resamples: int = 1000,
) -> ValidationSpread | None:
    """Return the resampler the verdict calls per comparison, or None where the objective is
    not one the paired bootstrap computes (ROC-AUC, macro F1: the verdict then uses a t
    interval over the paired units). With ``groups`` (see :func:`declared_groups`), each
    fold's validation groups are resampled whole."""
    metric = config.metric
    if metric not in get_args(PairedMetric) and metric not in _TASK_METRICS:
        return None
    loaded: dict[str, Scores | None] = {}

    def scores(path: object) -> Scores | None:
        if not isinstance(path, str):
            return None
        if path not in loaded:
            loaded[path] = load_any_scores(config, path)
        return loaded[path]

    keys, warning = _fold_groups(config, confirm, groups, scores)

    def spread(setting: Setting, reference: Setting) -> np.ndarray | None:
        a, b = trials_of(confirm, setting), trials_of(confirm, reference)
        units = a.index.intersection(b.index)
        total, count = None, 0
        for fold in sorted({fold for _, fold in units}):
            mine = [u for u in units if u[1] == fold]
            pairs = [
                (scores(a.loc[u, "scores_file"]), scores(b.loc[u, "scores_file"])) for u in mine
            ]
            found = [x for pair in pairs for x in pair if x is not None]
            if not pairs or len(found) < 2 * len(pairs):
                return None  # scores not here (another machine's trials)
            group = None if keys is None else keys[int(fold)]
            classic = [x for x in found if isinstance(x, SampleScores)]
            if len(classic) < len(found):  # images: Dice, AP
                differences = paired_differences(
                    found[0::2],  # type: ignore[arg-type]
                    found[1::2],  # type: ignore[arg-type]
                    metric,
                    groups=group,
                    n_resamples=n_resamples,
                    seed=[config.seed, fold],
                )
            elif metric in get_args(PairedMetric) and all(x.val.ndim == 1 for x in classic):
                _, _, differences = resampled_differences(
                    classic[0].val_labels,
                    np.stack([x.val for x in classic[0::2]]),
                    np.stack([y.val for y in classic[1::2]]),
                    metric=metric,  # type: ignore[arg-type]
                    threshold=(_thresholds(a, mine), _thresholds(b, mine)),
                    n_resamples=n_resamples,
                    seed=[config.seed, fold],
                    groups=group,
                )
            else:
                return None  # multiclass
            if differences is None:
                return None  # a metric resampling does not compute (detection's F1)
            total = differences * len(mine) if total is None else total + differences * len(mine)
            count += len(mine)
        return None if total is None else total / count

    return ValidationSpread(spread, "samples" if keys is None else "groups", warning)


def _fold_groups(
    config: Config,
    confirm: pd.DataFrame,
    groups: Groups | None,
    scores: Callable[[object], Scores | None],
) -> tuple[dict[int, np.ndarray] | None, str | None]:
    """Each confirm fold's validation groups, in the order its scores are stored, checked
    against the labels its trials scored; or None and the warning why not."""
    if groups is None:
        return None, None
    units = groups.units
    if units is None or units.groups is None:
        return None, groups.warning or fallback(groups.column, "its table was not read")
    found: dict[int, np.ndarray] = {}
    for fold in sorted({int(f) for f in confirm["fold"].dropna()} if len(confirm) else ()):
        rows = refold_units(units, fold, seed=config.split_seed).val_ids
        stored = [scores(p) for p in confirm.loc[confirm["fold"] == fold, "scores_file"]]
        labels = next((s.val_labels for s in stored if isinstance(s, SampleScores)), None)
        if labels is not None and not np.array_equal(labels, units.labels[rows]):
            why = f"fold {fold}'s validation rows are not those its trials scored (edited table?)"
            return None, fallback(groups.column, why)
        found[fold] = units.groups[rows]
    return found, None


def trials_of(confirm: pd.DataFrame, setting: Setting) -> pd.DataFrame:
    """A setting's confirm trials, indexed by (repeat, fold)."""
    return confirm[setting_mask(confirm, setting)].set_index(_UNIT)


def _thresholds(part: pd.DataFrame, units: list[tuple[int, int]]) -> np.ndarray:
    return np.array([float(part.loc[u, "val_threshold"]) for u in units])
