"""The group bootstrap (``data.groups``): whole groups resampled, the samples' weights their
group's count. The sample bootstrap's own checks live in test_metrics.py."""

from __future__ import annotations

import numpy as np
import pytest

import gammatune.bootstrap as bootstrap
from gammatune.bootstrap import group_units, paired_bootstrap, resampled_differences


def _clustered(n_groups: int = 20, size: int = 10, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``n_groups`` patients of ``size`` near-identical rows each (6 of them sick): two models'
    scores vary between patients, hardly within one."""
    rng = np.random.default_rng(seed)
    sick = np.zeros(n_groups, dtype=int)
    sick[:6] = 1
    y = np.repeat(sick, size)
    groups = np.repeat([f"patient{g}" for g in range(n_groups)], size)
    a, b = (
        np.repeat(1 / (1 + np.exp(-(2.0 * sick + rng.normal(-1, 1, n_groups)))), size)
        + rng.normal(0, 1e-3, n_groups * size)
        for _ in range(2)
    )
    return y, np.clip(a, 0, 1), np.clip(b, 0, 1), groups


def test_groups_of_one_sample_give_exactly_the_sample_bootstrap() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(int)
    a, b = rng.random((3, 300)), rng.random((3, 300))
    keys = np.array([f"id{k}" for k in rng.permutation(300)])  # unsorted, one row each
    for metric in ("f1", "pr_auc"):
        bootstrap._KEPT.clear()
        samples = resampled_differences(y, a, b, metric=metric, n_resamples=400, seed=[3, 1])
        bootstrap._KEPT.clear()
        grouped = resampled_differences(
            y, a, b, metric=metric, n_resamples=400, seed=[3, 1], groups=keys
        )
        assert np.array_equal(samples[2], grouped[2]) and samples[:2] == grouped[:2]


def test_clustered_groups_widen_the_interval() -> None:
    """20 patients x 10 near-identical rows: the sample bootstrap counts 200 independent rows
    where there are 20, so its interval is about sqrt(10) times too narrow."""
    y, a, b, groups = _clustered()
    for metric in ("f1", "pr_auc"):
        samples = paired_bootstrap(y, a, b, metric=metric, n_resamples=2000, seed=0)
        grouped = paired_bootstrap(y, a, b, metric=metric, n_resamples=2000, seed=0, groups=groups)
        ratio = (grouped.high - grouped.low) / (samples.high - samples.low)
        assert ratio > 2.0, (metric, ratio)
        assert grouped.difference == samples.difference  # the point estimate is the same


def test_a_group_resample_moves_whole_groups_and_keeps_the_sick_count() -> None:
    y, _, _, groups = _clustered(size=4)
    units = group_units(groups)
    rng = np.random.default_rng(0)
    weights = bootstrap._stratified_weights(y.astype(float), 300, rng, units)
    assert weights.shape == (300, len(y)) and (weights == weights.round()).all()
    for g in range(units.max() + 1):  # every row of a group has its group's count
        rows = weights[:, units == g]
        assert (rows == rows[:, :1]).all()
    per_group = weights[:, np.unique(units, return_index=True)[1]]
    holds = np.array([y[units == g].max() for g in range(units.max() + 1)])
    assert (per_group @ holds == holds.sum()).all()  # 6 sick patients drawn in every resample
    assert (per_group @ (1 - holds) == (1 - holds).sum()).all()


def test_groups_must_match_the_samples() -> None:
    y, a, b, groups = _clustered()
    with pytest.raises(ValueError, match=r"groups must be \(N,\), N = 200: \(199,\)"):
        paired_bootstrap(y, a, b, groups=groups[1:], n_resamples=10)


def test_kept_resamples_tell_groups_from_samples() -> None:
    """The verdict keeps resamples per sample and seed: a grouped draw is another draw."""
    y, a, b, groups = _clustered()
    bootstrap._KEPT.clear()
    samples = resampled_differences(y, a, b, n_resamples=300, seed=[0, 1])[2]
    grouped = resampled_differences(y, a, b, n_resamples=300, seed=[0, 1], groups=groups)[2]
    assert len(bootstrap._KEPT) == 2 and not np.array_equal(samples, grouped)
    again = resampled_differences(y, a, b, n_resamples=300, seed=[0, 1], groups=groups)[2]
    assert np.array_equal(grouped, again)


@pytest.mark.parametrize("metric", ["f1", "precision", "recall"])
@pytest.mark.parametrize("grouped", [False, True])
def test_kept_resamples_read_as_float32_give_the_drawn_float64_differences(
    metric: str, grouped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count metric's second comparison on a sample reads the kept resamples as float32 (its
    counts are sums of integers below 2^24, exact): the differences the first, on the drawn
    float64 weights, gave, to the last bit."""
    rng = np.random.default_rng(5)
    y = (rng.random(8000) < 0.06).astype(int)
    a, b = (1 / (1 + np.exp(-(3 * y - 2 + rng.normal(0, s, (3, 8000))))) for s in (1.2, 1.4))
    groups = np.arange(8000) // 4 if grouped else None  # 2,000 groups of 4 rows
    seen: list[np.dtype] = []
    means = bootstrap._paired_means
    monkeypatch.setattr(
        bootstrap, "_paired_means", lambda w, *r: seen.append(w.dtype) or means(w, *r)
    )
    bootstrap._KEPT.clear()
    drawn = resampled_differences(y, a, b, metric=metric, n_resamples=500, seed=3, groups=groups)
    kept = resampled_differences(y, a, b, metric=metric, n_resamples=500, seed=3, groups=groups)
    assert seen == [np.float64, np.float64, np.float64, np.float32]  # full sample, then resamples
    assert np.array_equal(drawn[2], kept[2]) and drawn[2].std() > 0
