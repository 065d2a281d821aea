"""The confirm stage's verdict: did gamma, the class weight, or neither make a difference?

The finalists were retrained over fresh seeds beside cross-entropy references trained with the
same seeds and splits, so every comparison is paired per (repeat, fold). Never sees the test split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from gammatune.metrics import METRIC_NAMES
from gammatune.record import Setting
from gammatune.report._arms import order, row_arms, setting_mask
from gammatune.report._sentences import claim, headline_words, join, neither_alone, safe_choice
from gammatune.report._sentences import format_setting as _format

VerdictKind = Literal[
    "focal", "class-weight", "focal-with-weight", "cross-entropy", "not-measurable"
]
Family = Literal["vs_twin", "vs_plain_ce", "weight_vs_plain_ce"]
_Means = dict[Setting, float]

_UNIT = ["repeat", "fold"]  # a pairing unit: the same seed and the same split
_COLUMNS = ["gamma", "alpha", *_UNIT, "objective", "val_predicted_positive", "best_epoch"]
_PLAIN_CE = Setting(0.0)
_TIE = 1e-12  # a paired difference this small is a tie
_THRESHOLD_FREE = ("pr_auc", "roc_auc")
Spread = Callable[[Setting, Setting], np.ndarray | None]
Resampled = Literal["samples", "groups"]  # what a spread resamples in validation
_NAMES = METRIC_NAMES


@dataclass(frozen=True, slots=True)
class Comparison:
    """One setting against one reference, paired per (repeat, fold) unit; settings are arms
    (see ``Setting.arm``).

    ``level`` is the Bonferroni-corrected level of the interval, ``1 - (1 - level) /
    family_size``; ``differences`` are in (repeat, fold) order. ``resampled`` says what the
    interval's bootstrap resampled with the repeats: validation ``samples``, or whole
    ``groups`` (``data.groups``); None for a t interval over the paired units.
    """

    setting: Setting
    reference: Setting
    family: Family
    family_size: int
    differences: tuple[float, ...]
    mean: float
    low: float
    high: float
    level: float
    wins: int
    ties: int
    losses: int
    degenerate: bool
    resampled: Resampled | None = None

    @property
    def n(self) -> int:
        """The number of paired units."""
        return len(self.differences)

    @property
    def is_above_zero(self) -> bool:
        """Whether the interval lies entirely above 0 (never for a degenerate one)."""
        return not self.degenerate and self.low > 0

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-safe dict: settings as their parameters (alpha off: none), 6-digit
        floats."""
        return _json(asdict(self))


_Comparisons = tuple[Comparison, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision of the confirm stage, the setting to use, and the sentence that says why.

    ``decided_by`` is the comparison the recommendation rests on (None for ``cross-entropy``
    and ``not-measurable``, where no comparison was measurable).
    """

    kind: VerdictKind
    recommended: Setting | None
    sentence: str
    reason: str | None
    comparisons: tuple[Comparison, ...]
    decided_by: Comparison | None = None

    def __str__(self) -> str:
        return self.sentence

    @property
    def resampled(self) -> Resampled | None:
        """What the intervals' bootstrap resampled (``samples`` or ``groups``), or None where
        every interval is a t interval over the paired units."""
        return next((c.resampled for c in self.comparisons if c.resampled), None)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-safe dict: settings as their parameters (alpha off: none), 6-digit
        floats, and ``resampled``."""
        return {**_json(asdict(self)), "resampled": self.resampled}


def decide(
    confirm: pd.DataFrame,
    *,
    n_val_positives: int,
    objective: str = "f1",
    min_positives: int = 5,
    level: float = 0.95,
    spread: Spread | None = None,
    planned_units: int | None = None,
    constraints: dict[str, float] | None = None,
    resampled: Resampled = "samples",
) -> Verdict:
    """Turn the completed confirm trials into one verdict.

    Checked in order, the first that holds decides (docs/concepts/verdict.md):
    ``not-measurable`` (the data cannot tell settings apart); ``focal`` (a candidate's corrected
    interval against its same-weight cross-entropy twin lies above 0 and its mean is not below
    the best cross-entropy's); ``class-weight`` (the best weighted cross-entropy's interval
    against plain cross-entropy lies above 0); ``focal-with-weight`` (a weighted candidate's
    interval against plain cross-entropy lies above 0, and its mean is not below the best
    cross-entropy's, though neither gamma nor the weight alone is measurable: the best such
    candidate is recommended, the only setting measured better than plain cross-entropy); else
    ``cross-entropy``. Under ``cross-entropy`` and ``not-measurable`` the recommendation is the
    cross-entropy setting, plain or weighted, with the best mean objective.

    Args:
        confirm: One row per completed confirm trial, with columns gamma, alpha (NaN for off),
            repeat, fold, objective (higher is better), val_predicted_positive and best_epoch,
            and any of the setting's other fields (lr, gamma_rare, ...) the trials vary.
        n_val_positives: Minority samples in each validation split (the smallest over folds).
        objective: The objective's name, used only in the sentence. Default "f1".
        min_positives: Fewest validation positives that make the objective usable. Default 5.
        level: Family-wise confidence level of the intervals, in (0, 1). Default 0.95.
        spread: ``(setting, reference) -> (B,)`` resampled mean differences of the objective
            (a paired bootstrap over the validation samples and the repeats, see
            ``report._resample``), or None where it cannot be computed. With it an interval
            is the resamples' percentiles, so it also covers the validation sample's noise,
            not only the seeds'; without it, a t interval over the paired units.
        planned_units: The (repeat, fold) units each setting was planned for; a setting that
            completed fewer than half of them makes the verdict not-measurable.
        constraints: Validation minimums (``{"recall": 0.8}``, read from ``val_<metric>``
            columns): only a setting whose mean meets them all is recommended.
        resampled: What ``spread`` resamples, ``samples`` or whole ``groups`` (recorded on
            each comparison it gave the interval of). Default "samples".

    Returns:
        The verdict, with every comparison that has at least one paired unit.

    Raises:
        ValueError: ``level`` outside (0, 1), or a non-empty ``confirm`` missing a column.
    """
    _check_arguments(confirm, level)
    name = _NAMES.get(objective, objective)
    means = {s: float(_per_unit(confirm, s).mean()) for s in _settings(confirm)}
    comparisons = _comparisons(confirm, list(means), level, spread, resampled)
    meets = _meets(confirm, list(means), constraints or {})
    means = {s: m if meets[s] else -math.inf for s, m in means.items()}  # never recommended
    eligible_ce = [s for s in means if not s.is_focal and meets[s]]
    best_ce = max(eligible_ce, key=means.__getitem__, default=None)
    headline = _headline(comparisons, means)
    tail = [] if headline is None else [headline_words(headline, name, level)]
    reason = _unmeasurable_reason(confirm, n_val_positives, min_positives, objective)
    reason = reason or _incomplete(confirm, list(means), planned_units)
    if reason is None and means and not any(meets.values()):
        wanted = " and ".join(f"{m} >= {low:g}" for m, low in (constraints or {}).items())
        reason = f"no confirmed setting meets {wanted} on validation (mean over its repeats)"
    focal = None
    if reason is None:
        best_ce_mean = -math.inf if best_ce is None else means[best_ce]
        focal = _focal_winner(comparisons, means, best_ce_mean=best_ce_mean)
    if reason is not None or (best_ce is None and focal is None):
        reason = reason or "no plain cross-entropy reference"
        parts = [f"not-measurable: {reason}", safe_choice(best_ce, means, name), *tail]
        return Verdict("not-measurable", best_ce, join(parts), reason, comparisons)
    if focal is not None:
        parts = [f"focal: {claim(focal, name, level)}"]
        return Verdict("focal", focal.setting, join(parts), None, comparisons, focal)
    weight = _weight_winner(comparisons, means)
    if weight is not None:
        parts = [f"class-weight: {claim(weight, name, level)}", "gamma adds nothing measurable"]
        return Verdict("class-weight", weight.setting, join(parts), None, comparisons, weight)
    both = _combined_winner(
        comparisons, means, best_ce_mean=means[best_ce] if best_ce else -math.inf
    )
    if both is not None:
        alone = [c for c in comparisons if c.setting in (both.setting, both.setting.twin())]
        parts = [f"focal-with-weight: {claim(both, name, level)}", neither_alone(alone, level)]
        return Verdict("focal-with-weight", both.setting, join(parts), None, comparisons, both)
    nothing = "neither gamma nor the class weight made a measurable difference"
    parts = [f"cross-entropy: {safe_choice(best_ce, means, name)}", nothing, *tail]
    return Verdict("cross-entropy", best_ce, join(parts), None, comparisons)


def _check_arguments(confirm: pd.DataFrame, level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"decide: level must be in (0, 1); got {level!r}.")
    missing = [c for c in _COLUMNS if c not in confirm.columns]
    if len(confirm) and missing:
        raise ValueError(f"decide: confirm must have the columns {_COLUMNS}; missing {missing}.")


def _incomplete(confirm: pd.DataFrame, settings: list[Setting], planned: int | None) -> str | None:
    """A setting whose confirm trials mostly failed cannot be compared on the rest."""
    if planned is None:
        return None
    done = {s: len(_per_unit(confirm, s)) for s in settings}
    short = [s for s, n in done.items() if n < planned / 2]
    if not short:
        return None
    return (
        f"{_format(short[0])} completed {done[short[0]]} of {planned} confirm trials "
        "(the others failed): too few to compare"
    )


def _meets(
    confirm: pd.DataFrame, settings: list[Setting], constraints: dict[str, float]
) -> dict[Setting, bool]:
    """Whether each setting's mean validation figures meet every minimum."""
    found = {}
    for s in settings:
        rows = confirm[setting_mask(confirm, s)]
        found[s] = all(float(rows[f"val_{m}"].mean()) >= low for m, low in constraints.items())
    return found


def _unmeasurable_reason(
    confirm: pd.DataFrame, n_val_positives: int, minimum: int, objective: str = "f1"
) -> str | None:
    """Why the confirm trials cannot support a verdict, or None when they can."""
    if not len(confirm):
        return "the confirm stage has not run"
    if n_val_positives < minimum:
        return (
            f"only {n_val_positives} validation positive{'' if n_val_positives == 1 else 's'}; "
            "the objective cannot tell settings "
            f"apart (need >= {minimum})"
        )
    if not setting_mask(confirm, _PLAIN_CE).any():
        return "no plain cross-entropy reference"
    thresholded = objective not in _THRESHOLD_FREE  # PR-AUC needs no prediction above 0.5
    if thresholded and not (confirm["val_predicted_positive"] > 0).any():
        return "no model predicted a single positive on validation"
    # A user's trainer may report no epochs (spec.report is optional): nothing to judge there.
    trained = confirm[confirm["epochs_run"] > 0] if "epochs_run" in confirm else confirm
    if len(trained) and (trained["best_epoch"] <= 1).mean() > 0.5:
        return "most trainings kept their first epoch: training did not progress"
    if len(confirm[_UNIT].drop_duplicates()) < 2:
        return "fewer than 2 paired repeats"
    values = confirm["objective"].to_numpy(dtype=float)
    if np.ptp(values) < _TIE:  # a tie at zero is not evidence: "the winner" is the first row
        return f"all confirm trials tied at {values[0]:.3f}"
    return None


def _settings(confirm: pd.DataFrame) -> list[Setting]:
    """The distinct arms, cross-entropy first (plain first), then by gamma and alpha."""
    found = {arm.key(): arm for arm in row_arms(confirm)}
    return sorted(found.values(), key=order)


def _per_unit(confirm: pd.DataFrame, setting: Setting) -> pd.Series:
    """The setting's objective per (repeat, fold) unit, in unit order."""
    return confirm[setting_mask(confirm, setting)].groupby(_UNIT)["objective"].mean().sort_index()


def _comparisons(
    confirm: pd.DataFrame,
    settings: list[Setting],
    level: float,
    spread: Spread | None = None,
    resampled: Resampled = "samples",
) -> tuple[Comparison, ...]:
    """Each candidate vs its cross-entropy twin (the same class weight and learning rate) and
    vs plain CE; each weighted CE vs plain CE."""
    candidates = [s for s in settings if s.is_focal]
    weighted = [s for s in settings if not s.is_focal and s.is_weighted]
    plans: list[tuple[Setting, Setting, Family, int]] = [
        *((c, c.twin(), "vs_twin", len(candidates)) for c in candidates),
        *((c, _PLAIN_CE, "vs_plain_ce", len(candidates)) for c in candidates),
        *((w, _PLAIN_CE, "weight_vs_plain_ce", len(weighted)) for w in weighted),
    ]
    found = (
        _compare(confirm, *plan, level=level, spread=spread, resampled=resampled) for plan in plans
    )
    return tuple(c for c in found if c is not None)


def _compare(
    confirm: pd.DataFrame, setting: Setting, reference: Setting, family: Family, size: int, *,
    level: float, spread: Spread | None = None, resampled: Resampled = "samples",
) -> Comparison | None:  # fmt: skip
    ours, theirs = _per_unit(confirm, setting), _per_unit(confirm, reference)
    shared = ours.index.intersection(theirs.index).sort_values()
    if not len(shared):
        return None
    d = (ours.loc[shared] - theirs.loc[shared]).to_numpy(dtype=float)
    corrected = 1 - (1 - level) / size
    resampled_differences = None if spread is None else spread(setting, reference)
    if resampled_differences is None:
        mean, low, high, degenerate = _interval(d, corrected)
    else:
        mean, (low, high) = float(d.mean()), _percentiles(resampled_differences, corrected)
        degenerate = high - low < _TIE
    wins, losses = int((d >= _TIE).sum()), int((d <= -_TIE).sum())
    return Comparison(
        setting, reference, family, size, tuple(float(x) for x in d), mean, low, high,
        corrected, wins, len(d) - wins - losses, losses, degenerate,
        None if resampled_differences is None else resampled,
    )  # fmt: skip


def _percentiles(resampled: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return float(low), float(high)


def _interval(d: np.ndarray, level: float) -> tuple[float, float, float, bool]:
    """Mean and two-sided t interval of the differences; degenerate without spread."""
    mean = float(d.mean())
    if len(d) < 2 or np.ptp(d) < _TIE:
        return mean, mean, mean, True
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return mean, mean - float(half), mean + float(half), False


def _focal_winner(
    comparisons: _Comparisons, means: _Means, *, best_ce_mean: float
) -> Comparison | None:
    winners = [
        c
        for c in comparisons
        if c.family == "vs_twin" and c.is_above_zero and means[c.setting] > -math.inf
    ]
    if not winners:
        return None
    best = max(winners, key=lambda c: means[c.setting])
    return best if means[best.setting] >= best_ce_mean else None


def _weight_winner(comparisons: _Comparisons, means: _Means) -> Comparison | None:
    weighted = (s for s in means if not s.is_focal and s.is_weighted and means[s] > -math.inf)
    best = max(weighted, key=means.__getitem__, default=None)
    found = [c for c in comparisons if c.family == "weight_vs_plain_ce" and c.setting == best]
    return found[0] if found and found[0].is_above_zero else None


def _combined_winner(
    comparisons: _Comparisons, means: _Means, *, best_ce_mean: float
) -> Comparison | None:
    """The best-mean weighted candidate measured above plain CE, if its mean is not below the
    best cross-entropy's (the same guard as ``focal``)."""
    above = [
        c
        for c in comparisons
        if c.family == "vs_plain_ce" and c.is_above_zero and means[c.setting] > -math.inf
    ]
    best = max(above, key=lambda c: means[c.setting], default=None)
    return best if best is not None and means[best.setting] >= best_ce_mean else None


def _headline(comparisons: _Comparisons, means: _Means) -> Comparison | None:
    """The comparison a reader wants next: the best candidate vs its twin, else class weight."""
    for family in ("vs_twin", "weight_vs_plain_ce"):
        found = [c for c in comparisons if c.family == family]
        if found:
            return max(found, key=lambda c: means[c.setting])
    return None


def _json(value: Any) -> Any:
    if isinstance(value, dict) and "schedule" in value and "repeat" in value:  # a Setting
        value = Setting(**value).params()
        return _json({k: v for k, v in value.items() if k not in ("repeat", "fold", "model")})
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_json(item) for item in value]
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value
