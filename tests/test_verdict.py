"""The confirm verdict on stand-in confirm stages: paired, corrected, and honest about noise."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gammatune.record import Setting
from gammatune.report._verdict import Verdict, decide

S = Setting

PLAIN: Setting = S(0.0, None)
TWIN_25: Setting = S(0.0, 0.25)
TWIN_75: Setting = S(0.0, 0.75)
CANDIDATES: list[Setting] = [S(1.0, 0.25), S(2.0, 0.25), S(2.0, 0.75)]
SEEDS = range(20)


def _bases(
    *, plain: float = 0.50, twin_25: float = 0.50, twin_75: float = 0.50, gain: float = 0.0
) -> dict[Setting, float]:
    """Base objectives: every candidate equals its twin, plus ``gain`` for gamma 2, alpha 0.25."""
    twins = {0.25: twin_25, 0.75: twin_75}
    bases = {PLAIN: plain, TWIN_25: twin_25, TWIN_75: twin_75}
    bases.update({c: twins[c.alpha] for c in CANDIDATES})
    bases[S(2.0, 0.25)] += gain
    return bases


def _confirm(
    bases: dict[Setting, float], *, seed: int, n_repeats: int = 5, n_folds: int = 1,
    noise_sd: float = 0.02,
) -> pd.DataFrame:  # fmt: skip
    """Simulate a confirm stage: a per-unit effect shared by all settings, plus own noise."""
    rng = np.random.default_rng(seed)
    units = [(repeat, fold) for repeat in range(n_repeats) for fold in range(n_folds)]
    shared = rng.normal(0.0, 0.05, len(units))  # same seed and split: the paired part
    rows = []
    for setting, base in bases.items():
        gamma, alpha = setting.gamma, setting.alpha
        for (repeat, fold), effect in zip(units, shared, strict=True):
            n_predicted = int(rng.integers(4, 20))
            rows.append({
                "gamma": gamma, "alpha": math.nan if alpha is None else alpha,
                "repeat": repeat, "fold": fold,
                "objective": base + effect + rng.normal(0.0, noise_sd),
                "val_predicted_positive": n_predicted, "val_true_positive": n_predicted // 2,
                "best_epoch": int(rng.integers(4, 30)),
            })  # fmt: skip
    return pd.DataFrame(rows)


def _decide(confirm: pd.DataFrame, n_val_positives: int = 12) -> Verdict:
    return decide(confirm, n_val_positives=n_val_positives, objective="f1")


def _ce_means(confirm: pd.DataFrame) -> dict[Setting, float]:
    ce = confirm[confirm["gamma"] == 0]
    means = ce.groupby(ce["alpha"].fillna(-1.0))["objective"].mean()
    return {S(0.0, None if a < 0 else float(a)): float(m) for a, m in means.items()}


def test_no_gamma_effect_is_rarely_called_focal() -> None:
    # Half the seeds with class weights that help, half with class weights that do not.
    kinds = [
        _decide(_confirm(_bases(twin_25=0.50 + 0.05 * (s % 2), twin_75=0.48), seed=s)).kind
        for s in SEEDS
    ]
    assert kinds.count("focal") <= 1


def test_a_clear_gamma_effect_is_called_focal_for_that_candidate() -> None:
    verdicts = [
        _decide(_confirm(_bases(twin_25=0.55, twin_75=0.52, gain=0.08), seed=s)) for s in SEEDS
    ]
    focal = [v for v in verdicts if v.kind == "focal"]
    assert len(focal) >= 18
    assert all(v.recommended == S(2.0, 0.25) for v in focal)
    sentence = focal[0].sentence
    assert sentence.startswith("focal: gamma 2, alpha 0.25 beats cross-entropy with the same")
    assert "F1 on average over 5 paired repeats" in sentence
    assert "95% interval corrected for 3 candidates" in sentence


def test_only_the_class_weight_helping_is_called_class_weight() -> None:
    verdicts = [_decide(_confirm(_bases(twin_25=0.55, twin_75=0.60), seed=s)) for s in SEEDS]
    weighted = [v for v in verdicts if v.kind == "class-weight"]
    assert len(weighted) >= 18
    assert all(v.recommended == TWIN_75 for v in weighted)
    assert "beats plain cross-entropy" in weighted[0].sentence
    assert "corrected for 2 class weights" in weighted[0].sentence


def test_nothing_helping_recommends_the_best_cross_entropy_by_mean() -> None:
    frames = [_confirm(_bases(), seed=s) for s in SEEDS]
    verdicts = [_decide(f) for f in frames]
    # Four tests in a ladder (twin, weight, combination): about 8 % of null stages are called
    # something other than cross-entropy (183 of 200 seeds were cross-entropy when measured).
    assert [v.kind for v in verdicts].count("cross-entropy") >= 17
    recommended = set()
    for frame, verdict in zip(frames, verdicts, strict=True):
        means = _ce_means(frame)
        if verdict.kind == "cross-entropy":
            assert verdict.recommended == max(means, key=means.__getitem__)
            assert "neither gamma nor the class weight made a measurable" in verdict.sentence
            recommended.add(verdict.recommended)
    assert recommended - {PLAIN}  # a weighted CE with the better mean is never dropped


def test_a_weighted_cross_entropy_better_on_average_is_not_replaced_by_plain() -> None:
    frame = _confirm(_bases(twin_75=0.53), seed=0, noise_sd=0.04)
    verdict = _decide(frame)
    assert verdict.kind == "cross-entropy"
    assert verdict.recommended == TWIN_75
    assert verdict.sentence.startswith(
        "cross-entropy: use gamma 0, alpha 0.75 (the best cross-entropy by mean F1"
    )


def test_a_gamma_gain_below_the_best_cross_entropy_is_not_focal() -> None:
    frame = _confirm(_bases(twin_25=0.50, twin_75=0.70, gain=0.10), seed=0)
    verdict = _decide(frame)
    beaten = [
        c for c in verdict.comparisons if c.setting == S(2.0, 0.25) and c.family == "vs_twin"
    ]
    assert beaten[0].is_above_zero
    assert verdict.kind != "focal"
    assert verdict.recommended == TWIN_75


def _halves(half: float) -> dict[Setting, float]:
    """gamma and the weight each add ``half``: alone, neither is clear; together they are."""
    return {
        PLAIN: 0.50, TWIN_25: 0.50, TWIN_75: 0.50 + half,
        S(1.0, 0.25): 0.50, S(2.0, 0.25): 0.50, S(2.0, 0.75): 0.50 + 2 * half,
    }  # fmt: skip


def test_a_combination_measured_only_against_plain_ce_is_focal_with_weight() -> None:
    verdicts = [_decide(_confirm(_halves(0.03), seed=s)) for s in SEEDS]
    both = [v for v in verdicts if v.kind == "focal-with-weight"]
    assert len(both) >= 5  # 8 of 20 when written
    for verdict in both:
        found = {(c.setting, c.family): c for c in verdict.comparisons}
        assert verdict.recommended == S(2.0, 0.75)
        assert verdict.decided_by == found[(S(2.0, 0.75), "vs_plain_ce")]
        assert verdict.decided_by.is_above_zero
        assert not found[(S(2.0, 0.75), "vs_twin")].is_above_zero
        weight = [c for c in verdict.comparisons if c.family == "weight_vs_plain_ce"]
        assert not any(c.is_above_zero for c in weight)
        assert verdict.sentence.startswith(
            "focal-with-weight: gamma 2, alpha 0.75 beats plain cross-entropy by +0.0"
        )
        assert "the gain is the combination, and how it splits between gamma and the" in (
            verdict.sentence
        )
        assert verdict.to_json()["decided_by"]["family"] == "vs_plain_ce"
    clear = [v for v in verdicts if v.kind == "focal"]
    assert all(v.decided_by and v.decided_by.family == "vs_twin" for v in clear)


def test_a_candidate_with_alpha_off_is_compared_with_plain_cross_entropy() -> None:
    bases = {PLAIN: 0.40, S(2.0, None): 0.50, TWIN_25: 0.40}
    verdict = _decide(_confirm(bases, seed=0))
    twin = [c for c in verdict.comparisons if c.family == "vs_twin"]
    assert [(c.setting, c.reference) for c in twin] == [(S(2.0, None), PLAIN)]
    assert verdict.kind == "focal" and verdict.recommended == S(2.0, None)
    assert "gamma 2, alpha off beats plain cross-entropy" in verdict.sentence


def test_the_interval_is_a_bonferroni_corrected_paired_t_interval() -> None:
    frame = _confirm(_bases(gain=0.05), seed=3)
    verdict = _decide(frame)
    c = next(c for c in verdict.comparisons if c.setting == S(2.0, 0.25) and c.family == "vs_twin")
    ours = frame[(frame["gamma"] == 2.0) & (frame["alpha"] == 0.25)]["objective"].to_numpy()
    twin = frame[(frame["gamma"] == 0.0) & (frame["alpha"] == 0.25)]["objective"].to_numpy()
    d = ours - twin
    half = stats.t.ppf(1 - 0.05 / 3 / 2, 4) * d.std(ddof=1) / math.sqrt(5)
    assert c.level == pytest.approx(1 - 0.05 / 3)
    assert c.differences == pytest.approx(tuple(d))
    assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert (c.wins, c.ties, c.losses) == ((d > 0).sum(), 0, (d < 0).sum())
    weight = [c for c in verdict.comparisons if c.family == "weight_vs_plain_ce"]
    assert [c.level for c in weight] == pytest.approx([1 - 0.05 / 2] * 2)


NO_POSITIVE = "no model predicted a single positive on validation"
FEW_POSITIVES = "only 3 validation positives; the objective cannot tell settings apart (need >= 5)"
FIRST_EPOCH = "most trainings kept their first epoch: training did not progress"


def test_repeats_and_folds_pair_per_unit_in_order() -> None:
    frame = _confirm(_bases(gain=0.05), seed=1, n_repeats=3, n_folds=2).sample(frac=1.0)
    c = _decide(frame).comparisons[0]
    assert (c.setting, c.reference, c.family) == (S(1.0, 0.25), TWIN_25, "vs_twin")
    ordered = frame.sort_values(["repeat", "fold"])
    ours = ordered[(ordered["gamma"] == 1.0)]["objective"].to_numpy()
    twin = ordered[(ordered["gamma"] == 0.0) & (ordered["alpha"] == 0.25)]["objective"].to_numpy()
    assert c.differences == pytest.approx(tuple(ours - twin))


@pytest.mark.parametrize(
    ("change", "n_val_positives", "reason"),
    [
        ({"val_predicted_positive": 0}, 12, NO_POSITIVE),
        ({}, 3, FEW_POSITIVES),
        ({"best_epoch": 1}, 12, FIRST_EPOCH),
        ({"objective": 0.4}, 12, "all confirm trials tied at 0.400"),
    ],
)
def test_unmeasurable_confirm_stages_say_why(
    change: dict[str, float], n_val_positives: int, reason: str
) -> None:
    frame = _confirm(_bases(twin_25=0.55, gain=0.10), seed=0).assign(**change)
    verdict = _decide(frame, n_val_positives=n_val_positives)
    assert verdict.kind == "not-measurable"
    assert verdict.reason == reason
    assert verdict.sentence.startswith(f"not-measurable: {reason}; use gamma 0")
    means = _ce_means(frame)
    assert verdict.recommended == max(means, key=means.__getitem__)
    assert verdict.comparisons  # still computed


def test_empty_or_unreferenced_confirm_stages_are_not_measurable() -> None:
    empty = _decide(pd.DataFrame())
    assert (empty.kind, empty.reason, empty.recommended) == (
        "not-measurable", "the confirm stage has not run", None,
    )  # fmt: skip
    frame = _confirm(_bases(), seed=0)
    no_plain = _decide(frame[frame["alpha"].notna()])
    assert no_plain.reason == "no plain cross-entropy reference"
    assert no_plain.recommended in {TWIN_25, TWIN_75}


def test_a_single_repeat_is_degenerate_and_said_in_words() -> None:
    verdict = _decide(_confirm(_bases(gain=0.10), seed=0, n_repeats=1))
    assert verdict.kind == "not-measurable"
    assert verdict.reason == "fewer than 2 paired repeats"
    assert all(c.degenerate and c.low == c.high == c.mean for c in verdict.comparisons)
    assert "a single repeat: no spread to judge" in verdict.sentence
    assert "0.00-0.00" not in verdict.sentence


def test_identical_differences_are_degenerate_and_said_in_words() -> None:
    frame = _confirm(_bases(), seed=0)
    twins = frame[frame["gamma"] == 0].set_index(["alpha", "repeat"])["objective"]
    focal = frame["gamma"] > 0
    keys = zip(frame.loc[focal, "alpha"], frame.loc[focal, "repeat"], strict=True)
    frame.loc[focal, "objective"] = [twins[key] + 0.05 for key in keys]  # the same gain each time
    verdict = _decide(frame)
    assert verdict.kind != "focal"  # a constant difference has no spread to judge
    twin = [c for c in verdict.comparisons if c.family == "vs_twin"]
    assert all(c.degenerate and c.low == c.high == c.mean for c in twin)
    assert "every repeat gave the same difference, +0.050: no spread to judge" in verdict.sentence
    assert "0.00-0.00" not in verdict.sentence


def test_to_json_round_trips() -> None:
    for frame in (_confirm(_bases(gain=0.10), seed=0), _confirm(_bases(), seed=0, n_repeats=1)):
        payload = _decide(frame).to_json()
        assert json.loads(json.dumps(payload, allow_nan=False)) == payload
        assert {"gamma": 0.0} in [c["reference"] for c in payload["comparisons"]]  # plain CE
    assert json.loads(json.dumps(_decide(pd.DataFrame()).to_json()))["recommended"] is None


def test_a_level_outside_zero_and_one_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"decide: level must be in \(0, 1\); got 1.5."):
        decide(_confirm(_bases(), seed=0), n_val_positives=12, level=1.5)


def test_the_validation_samples_noise_widens_the_interval_beyond_the_seeds() -> None:
    """Every repeat judged on one validation set agrees when the gain is that set's quirk; the
    resampled spread over its samples, not the seeds, decides then."""
    confirm = _confirm(_bases(gain=0.04), seed=3, noise_sd=0.002)
    seeds_only = _decide(confirm)
    assert seeds_only.kind == "focal"  # consistent over seeds: the t interval is narrow
    rng = np.random.default_rng(0)

    def wide(setting: Setting, reference: Setting) -> np.ndarray:
        return rng.normal(0.04 if setting == S(2.0, 0.25) else 0.0, 0.05, 1000)

    verdict = decide(confirm, n_val_positives=12, spread=wide)
    assert verdict.kind != "focal"
    twin = next(
        c for c in verdict.comparisons if c.setting == S(2.0, 0.25) and c.family == "vs_twin"
    )
    assert twin.low < 0 < twin.high and twin.mean == pytest.approx(0.04, abs=0.01)


def test_what_the_intervals_resampled_is_recorded_and_said() -> None:
    """A group bootstrap (data.groups) is named on each comparison it gave the interval of,
    in summary.json's verdict and in the sentence; a t interval resampled nothing."""
    confirm = _confirm(_bases(gain=0.04), seed=3, noise_sd=0.002)
    rng = np.random.default_rng(0)

    def spread(setting: Setting, reference: Setting) -> np.ndarray:
        return rng.normal(0.04 if setting == S(2.0, 0.25) else 0.0, 0.01, 1000)

    grouped = decide(confirm, n_val_positives=12, spread=spread, resampled="groups")
    assert {c.resampled for c in grouped.comparisons} == {"groups"}
    assert grouped.to_json()["resampled"] == "groups"
    assert "resampling whole validation groups" in grouped.sentence
    samples = decide(confirm, n_val_positives=12, spread=spread)
    assert samples.resampled == "samples" and "groups" not in samples.sentence
    seeds = _decide(confirm)
    assert seeds.to_json()["resampled"] is None
    assert {c.resampled for c in seeds.comparisons} == {None}


def test_a_threshold_free_objective_needs_no_positive_prediction() -> None:
    confirm = _confirm(_bases(gain=0.08, twin_25=0.55), seed=1).assign(val_predicted_positive=0)
    assert _decide(confirm).kind == "not-measurable"
    assert decide(confirm, n_val_positives=12, objective="pr_auc").kind == "focal"


def test_mostly_failed_settings_are_not_measurable() -> None:
    confirm = _confirm(_bases(gain=0.08, twin_25=0.55), seed=1)
    lost = confirm[
        ~((confirm["gamma"] == 2.0) & (confirm["alpha"] == 0.25) & (confirm["repeat"] > 1))
    ]
    verdict = decide(lost, n_val_positives=12, planned_units=5)
    assert verdict.kind == "not-measurable"
    assert verdict.reason == (
        "gamma 2, alpha 0.25 completed 2 of 5 confirm trials (the others failed): "
        "too few to compare"
    )
