"""The decision's intervals: a paired bootstrap over the validation samples and the seeds.

Seeds alone understate the noise of a comparison: every confirm repeat of a fold is judged on
the same validation samples. So for each comparison the validation samples of each fold are
resampled (stratified, the same resample for both settings and every repeat), and the
resampled mean difference over the paired (repeat, fold) units gives the interval.
"""

from __future__ import annotations

from typing import get_args

import numpy as np
import pandas as pd

from gammatune.bootstrap import PairedMetric, resampled_differences
from gammatune.config import Config
from gammatune.record import SampleScores, Setting
from gammatune.report._arms import setting_mask
from gammatune.report._verdict import Spread
from gammatune.storage import load_scores_file

_UNIT = ["repeat", "fold"]


def validation_spread(
    config: Config, confirm: pd.DataFrame, *, n_resamples: int = 1000
) -> Spread | None:
    """Return the resampler the verdict calls per comparison, or None where the objective is
    not one the paired bootstrap computes (ROC-AUC, macro F1: the verdict then uses a t
    interval over the paired units)."""
    if config.metric not in get_args(PairedMetric):
        return None
    metric: PairedMetric = config.metric  # type: ignore[assignment]
    loaded: dict[str, SampleScores | None] = {}

    def scores(path: object) -> SampleScores | None:
        if not isinstance(path, str):
            return None
        if path not in loaded:
            loaded[path] = load_scores_file(config, path)
        return loaded[path]

    def spread(setting: Setting, reference: Setting) -> np.ndarray | None:
        a, b = trials_of(confirm, setting), trials_of(confirm, reference)
        units = a.index.intersection(b.index)
        total, count = None, 0
        for fold in sorted({fold for _, fold in units}):
            mine = [u for u in units if u[1] == fold]
            pairs = [
                (scores(a.loc[u, "scores_file"]), scores(b.loc[u, "scores_file"])) for u in mine
            ]
            if not pairs or any(x is None or y is None or x.val.ndim != 1 for x, y in pairs):
                return None  # scores not here (another machine's trials), or multiclass
            _, _, differences = resampled_differences(
                pairs[0][0].val_labels,  # type: ignore[union-attr]
                np.stack([x.val for x, _ in pairs]),  # type: ignore[union-attr]
                np.stack([y.val for _, y in pairs]),  # type: ignore[union-attr]
                metric=metric,
                threshold=(_thresholds(a, mine), _thresholds(b, mine)),
                n_resamples=n_resamples,
                seed=[config.seed, fold],
            )
            total = differences * len(mine) if total is None else total + differences * len(mine)
            count += len(mine)
        return None if total is None else total / count

    return spread


def trials_of(confirm: pd.DataFrame, setting: Setting) -> pd.DataFrame:
    """A setting's confirm trials, indexed by (repeat, fold)."""
    return confirm[setting_mask(confirm, setting)].set_index(_UNIT)


def _thresholds(part: pd.DataFrame, units: list[tuple[int, int]]) -> np.ndarray:
    return np.array([float(part.loc[u, "val_threshold"]) for u in units])
