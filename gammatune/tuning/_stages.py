"""What each stage runs: fixed points (baseline, search) or a TPE search space (refine)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from gammatune.config import Config
from gammatune.errors import StudyError
from gammatune.storage import Stage, load_study, study_name


@dataclass(frozen=True, slots=True)
class StagePlan:
    """What a stage runs: fixed ``points`` (baseline, search) or a TPE ``space`` (refine)."""

    stage: Stage
    distributions: dict[str, BaseDistribution]
    points: list[dict[str, Any]] | None
    n_trials: int
    warm_start: list[FrozenTrial]


def plan_stage(config: Config, stage: Stage, storage: optuna.storages.BaseStorage) -> StagePlan:
    """Return what ``stage`` runs under ``config``.

    Raises:
        StudyError: ``refine`` before any search trial completed.
    """
    gammas = [float(g) for g in config.search.gamma]  # YAML's 1 and 1.0 must be one value
    alphas = [None if a is None else float(a) for a in config.search.alpha]
    if stage == "search":
        points: list[dict[str, Any]] = [{"gamma": g, "alpha": a} for g in gammas for a in alphas]
        dists: dict[str, BaseDistribution] = {"gamma": _choices(gammas), "alpha": _choices(alphas)}
        return StagePlan(stage, dists, points, len(points), [])
    if stage == "baseline":
        repeats = list(range(config.baseline.repeats))
        points = [
            {"gamma": 0.0, "alpha": None, "repeat": r, "model": "configured"} for r in repeats
        ]
        points += [
            {"gamma": 0.0, "alpha": a, "repeat": 0, "model": "configured"}
            for a in dict.fromkeys(alphas)
            if a is not None and config.baseline.balanced
        ]
        if config.baseline.linear and config.model.kind != "linear":
            points.append({"gamma": 0.0, "alpha": None, "repeat": 0, "model": "linear"})
        dists = {
            "gamma": _choices([0.0]),
            "alpha": _choices([None, *alphas]),
            "repeat": _choices(repeats),
            "model": _choices(["configured", "linear"]),
        }
        return StagePlan(stage, dists, points, len(points), [])
    return _refine_plan(config, storage)


def rounds(stages: Sequence[Stage]) -> list[list[Stage]]:
    """Split ``stages`` into what can run together: baseline and search, then refine."""
    fixed: list[Stage] = [s for s in stages if s != "refine"]
    later: list[Stage] = [s for s in stages if s == "refine"]
    return [group for group in (fixed, later) if group]


def _choices(values: list[Any]) -> CategoricalDistribution:
    return CategoricalDistribution(list(dict.fromkeys(values)))


def _refine_plan(config: Config, storage: optuna.storages.BaseStorage) -> StagePlan:
    search = load_study(config, "search", storage)
    done = (
        [] if search is None else search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )
    if not done:
        raise StudyError(
            f"refine: no completed search trial in study {study_name(config, 'search')!r}; "
            "run `gammatune search` with this config first."
        )
    best = max(done, key=lambda t: t.value if t.value is not None else float("-inf"))
    refine = config.refine
    # An unweighted best (alpha off) is refined around 0.5, which weighs classes equally.
    alpha_center = 0.5 if best.params["alpha"] is None else best.params["alpha"]
    dists: dict[str, BaseDistribution] = {
        "gamma": _window(best.params["gamma"], refine.gamma_window, refine.gamma_step, 0.0, 20.0),
        "alpha": _window(alpha_center, refine.alpha_window, refine.alpha_step, 0.0, 1.0),
    }
    inside = [
        t
        for t in done
        if t.params["alpha"] is not None
        and all(dists[k]._contains(dists[k].to_internal_repr(t.params[k])) for k in dists)
    ]
    return StagePlan("refine", dists, None, refine.n_trials, inside)


def _window(center: float, half: float, step: float, low: float, high: float) -> FloatDistribution:
    """A stepped range of about ``center +- half``, aligned to multiples of ``step``."""
    lo = max(low, round(round((center - half) / step) * step, 10))
    n_steps = int(round((min(high, center + half) - lo) / step, 6))
    return FloatDistribution(lo, round(lo + max(n_steps, 1) * step, 10), step=step)


def complete_params(params: dict[str, Any]) -> dict[str, Any]:
    """Fill in the parameters a stage does not vary (seed repeat 0, the configured model)."""
    return {"repeat": 0, "model": "configured", **params}
