"""The test split, used once: the decided setting against the baselines, paired per repeat.

The verdict was reached on validation alone. Here the recommendation's confirm trials and the
baselines' trials of the same seeds and folds score the test split, and a stratified bootstrap
(the same resampled indices for both, 2000 resamples; whole groups with ``data.groups``) gives
an interval of the difference.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from gammatune.bootstrap import paired_bootstrap
from gammatune.config import Config
from gammatune.record import SampleScores, Setting
from gammatune.report._arms import row_arms, same_setting
from gammatune.report._resample import Groups, trials_of
from gammatune.report._summary import Summary, TestCheck
from gammatune.scores_files import Scores, load_any_scores
from gammatune.task_scores import TaskScores, paired_test, supported

_PAIRED_METRICS = ("f1", "precision", "recall", "pr_auc")
_UNIT = ["repeat", "fold"]


def check_on_test(
    config: Config, frame: pd.DataFrame, summary: Summary, *, groups: Groups | None = None
) -> Summary:
    """Return ``summary`` with its test checks: the recommendation against plain cross-entropy
    and against the best alpha-weighted cross-entropy of the confirm stage; with ``groups``
    (``data.groups``, read by ``report._resample.declared_groups``) resampling whole groups."""
    recommended = summary.verdict.recommended
    confirm = _confirm(frame)
    if recommended is None or confirm.empty:
        return summary
    metric = config.metric
    checks = [
        _check(
            config, trials_of(confirm, recommended), trials_of(confirm, ref), name, metric, groups
        )
        for ref, name in _references(confirm, recommended)
    ]
    return replace(summary, test_checks=tuple(checks))


def _confirm(frame: pd.DataFrame) -> pd.DataFrame:
    done = frame[(frame["state"] == "COMPLETE") & (frame["stage"] == "confirm")]
    return done[done["model"] == "configured"]


def _references(confirm: pd.DataFrame, recommended: Setting) -> list[tuple[Setting, str]]:
    """Plain cross-entropy, the weighted cross-entropy with the best mean validation
    objective, and for a focal recommendation its cross-entropy twin (the comparison the
    verdict was decided on); the recommendation itself is not its own reference."""
    arms = row_arms(confirm)
    means = confirm["objective"].groupby([repr(a.key()) for a in arms]).mean()
    weighted = {repr(a.key()): a for a in arms if not a.is_focal and a.is_weighted}
    refs: list[tuple[Setting, str]] = [(Setting(0.0), "plain cross-entropy")]
    twin = recommended.twin()
    if recommended.is_focal and twin != Setting(0.0):
        refs.append((twin, f"its twin, cross-entropy at {_weight(twin)}"))
    if weighted:
        best = weighted[max(weighted, key=means.__getitem__)]
        refs.append((best, f"cross-entropy at {_weight(best)}"))
    kept: dict[tuple[object, ...], tuple[Setting, str]] = {}
    for setting, name in refs:
        if not same_setting(setting, recommended):
            kept.setdefault(setting.key(), (setting, name))
    return list(kept.values())


def _weight(setting: Setting) -> str:
    """``'alpha 0.25'``, ``'weights inverse'``, with the learning rate where it is set."""
    return " ".join(p.replace("=", " ", 1) for p in setting.parts()[1:])


def _check(
    config: Config,
    chosen: pd.DataFrame,
    reference: pd.DataFrame,
    name: str,
    metric: str,
    groups: Groups | None = None,
) -> TestCheck:
    units = chosen.index.intersection(reference.index)
    if not len(units):
        return TestCheck(name, None, "no trial of both with the same seed")
    loaded = [(_scores(config, chosen.loc[u]), _scores(config, reference.loc[u])) for u in units]
    pairs = [(a, b) for a, b in loaded if a is not None and b is not None]
    if len(pairs) < len(loaded):
        return TestCheck(name, None, "per-sample scores are not in this run folder")
    lacking = _lacking(pairs, name)
    if lacking:
        return TestCheck(name, None, lacking)
    if not isinstance(pairs[0][0], SampleScores):  # images: Dice, AP
        return _task_check(config, pairs, name, metric, groups)  # type: ignore[arg-type]
    if metric not in _PAIRED_METRICS:
        metric = "f1"
    a_scores, b_scores = (np.stack([p[i].test for p in pairs]) for i in (0, 1))  # type: ignore[misc]
    if a_scores.ndim != 2:
        return TestCheck(name, None, "a multiclass task has none: compare the per-class figures")
    thresholds = (_thresholds(chosen, units), _thresholds(reference, units))
    targets = pairs[0][0].test_labels
    keys, note = _test_groups(groups, targets)
    difference = paired_bootstrap(
        targets, a_scores, b_scores, metric=metric, threshold=thresholds, seed=config.seed,  # type: ignore[arg-type]
        groups=keys,
    )  # fmt: skip
    return TestCheck(name, difference, f"{len(units)} paired repeats{note}")


def _task_check(
    config: Config,
    pairs: list[tuple[TaskScores, TaskScores]],
    name: str,
    metric: str,
    groups: Groups | None,
) -> TestCheck:
    """A segmentation or detection recommendation against a reference on test images."""
    if not supported(pairs[0][0], metric):
        return TestCheck(name, None, f"{metric} is not resampled per image; see the test columns")
    units = None if groups is None else groups.units
    keys = None if groups is None or units is None else groups.of(units.test_ids)
    note = "" if groups is None else (
        f", whole groups of {groups.column!r} resampled" if keys is not None
        else f", single images resampled: the groups of {groups.column!r} not found"
    )  # fmt: skip
    difference = paired_test(
        [a for a, _ in pairs], [b for _, b in pairs], metric, groups=keys, seed=config.seed
    )
    return TestCheck(name, difference, f"{len(pairs)} paired repeats{note}")


def _test_groups(groups: Groups | None, targets: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The test rows' groups, checked against the labels the trials scored, and the words
    that say what was resampled (nothing without ``data.groups``)."""
    if groups is None:
        return None, ""
    units = groups.units
    keys = None if units is None else groups.of(units.test_ids)
    if units is None or keys is None or not np.array_equal(units.labels[units.test_ids], targets):
        return None, f", single samples resampled: the groups of {groups.column!r} not found"
    return keys, f", whole groups of {groups.column!r} resampled"


def _lacking(pairs: list[tuple[Scores, Scores]], name: str) -> str:
    """Whose trials have no test scores (a user's trainer may leave them out), or ''."""
    chosen, reference = (any(p[i].test is None for p in pairs) for i in (0, 1))
    if chosen and reference:
        return "the trainer returned no test scores"
    if chosen or reference:
        who = "the recommendation" if chosen else name
        return f"the trainer returned no test scores for the trials of {who}"
    return ""


def _thresholds(part: pd.DataFrame, units: pd.Index) -> np.ndarray:
    return np.array([float(t) for t in part.loc[units, "test_threshold"]])


def _scores(config: Config, row: pd.Series) -> Scores | None:
    path = row.get("scores_file")
    return None if not isinstance(path, str) else load_any_scores(config, path)
