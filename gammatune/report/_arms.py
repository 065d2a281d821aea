"""Which rows of a trials table are which setting: arms (a setting without its seed, split and
model), read from the setting's columns, float noise aside."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from gammatune.record import EXTRA_FIELDS, Setting

ARM = "arm"


def order(setting: Setting) -> tuple[Any, ...]:
    """How settings are listed: cross-entropy (plain first), then focal, by gamma and alpha."""
    alpha = -1.0 if setting.alpha is None else setting.alpha
    return (setting.is_focal, setting.is_weighted, setting.gamma, alpha, repr(setting.key()))


def row_arms(trials: pd.DataFrame) -> list[Setting]:
    """Each row's arm (its setting without seed, split and model), from the setting's columns;
    a column that is absent or NaN is that field's default."""
    columns = [c for c in ("gamma", "alpha", *EXTRA_FIELDS) if c in trials]
    arms = []
    for values in trials[columns].itertuples(index=False):
        params = {c: v for c, v in zip(columns, values, strict=True) if not _missing(v)}
        arms.append(Setting.from_params(params).arm())
    return arms


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def arm_key(setting: Setting) -> str:
    """The arm's identity as text: ``trials_frame``'s ``arm`` column holds it per row."""
    return repr(setting.arm().key())


def setting_mask(trials: pd.DataFrame, setting: Setting) -> pd.Series:
    """Which rows have this arm (any seed, split and model), float noise aside: from the
    ``arm`` column where the table has one (read once), else from the setting's columns."""
    if ARM in trials:
        return trials[ARM] == arm_key(setting)
    key = setting.arm().key()
    return pd.Series([a.key() == key for a in row_arms(trials)], index=trials.index, dtype=bool)


def same_setting(a: Setting, b: Setting) -> bool:
    """Whether two settings are one arm, float noise below 1e-9 aside."""
    return a.arm().key() == b.arm().key()
