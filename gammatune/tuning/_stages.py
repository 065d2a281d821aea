"""What each stage runs, as data: fixed points (baseline, search, confirm) or a TPE space (refine).

- ``baseline``: gamma 0 (plain cross-entropy), alpha off, ``baseline.repeats`` seeds;
  cross-entropy at each alpha of the search grid; logistic regression, plain and balanced.
- ``search``: the grid gamma x alpha.
- ``refine``: TPE inside a window around the best search trial, warm-started with the search
  trials that fall inside it; ``refine.n_trials`` is the stage's total.
- ``confirm``: the ``confirm.top_k`` best distinct focal settings of search and refine, their
  same-alpha cross-entropy twins, plain CE and the best alpha-weighted CE, each over
  ``confirm.repeats`` fresh seeds x ``confirm.folds`` re-splits of train+val: the paired
  evidence the verdict decides on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)
from optuna.trial import FrozenTrial, TrialState

from gammatune.config import Config
from gammatune.errors import StudyError
from gammatune.record import ROLES, SCHEDULES, WEIGHTS, Setting
from gammatune.storage import (
    RESULT,
    Stage,
    key_figures,
    load_record,
    load_study,
    rank,
    study_name,
)
from gammatune.tuning._optuna import contains

Kind = Literal["points", "tpe"]
KINDS: dict[Stage, Kind] = {
    "baseline": "points",
    "search": "points",
    "refine": "tpe",
    "confirm": "points",
}
# Stages of one round train together; each round needs the ones before it.
ROUNDS: tuple[tuple[Stage, ...], ...] = (("baseline", "search"), ("refine",), ("confirm",))
# Fixed points are stored over one constant space: Optuna refuses a categorical whose choices
# change within a study, and the points of confirm (and baseline) depend on earlier results.
# Alpha off is a trial without an ``alpha`` parameter.
POINT_SPACE: dict[str, BaseDistribution] = {
    "gamma": FloatDistribution(0.0, 20.0),
    "alpha": FloatDistribution(0.0, 1.0),
    "repeat": IntDistribution(0, 2**31 - 1),
    "fold": IntDistribution(0, 2**31 - 1),
    "model": CategoricalDistribution(list(ROLES)),
    "lr": FloatDistribution(1e-8, 10.0, log=True),
    "gamma_rare": FloatDistribution(0.0, 20.0),
    "schedule": CategoricalDistribution(list(SCHEDULES)),
    "k": FloatDistribution(0.0, 100.0),
    "weights": CategoricalDistribution(list(WEIGHTS)),
    "beta": FloatDistribution(0.0, 1.0),
    "dice": FloatDistribution(0.0, 100.0),
}
DICE_WINDOW, DICE_STEP = 0.5, 0.25  # refine's window around the best search point's Dice weight


_PAIRING = ("repeat", "fold", "model")  # what a point has besides its loss and lr


@dataclass(frozen=True, slots=True)
class StagePlan:
    """What a stage runs: its ``points`` (kind ``points``) or ``n_trials`` of TPE over
    ``distributions`` (kind ``tpe``), warm-started with ``warm_start``."""

    stage: Stage
    kind: Kind
    distributions: dict[str, BaseDistribution]
    points: list[Setting]
    n_trials: int
    warm_start: list[FrozenTrial]


def plan_stage(config: Config, stage: Stage, storage: optuna.storages.BaseStorage) -> StagePlan:
    """Return what ``stage`` runs under ``config``.

    Raises:
        StudyError: ``refine`` or ``confirm`` before the stages they build on.
        ValueError: An unknown stage name (a programming error).
    """
    match stage:
        case "baseline":
            return _fixed(stage, _baseline_points(config))
        case "search":
            return _fixed(stage, grid_points(config))
        case "refine":
            return _refine_plan(config, storage)
        case "confirm":
            return _fixed(stage, confirm_points(config, storage))
    raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(KINDS)}")


def rounds(stages: Sequence[Stage]) -> list[list[Stage]]:
    """Split ``stages`` into what can run together, in order: baseline and search, refine,
    confirm."""
    return [[s for s in group if s in stages] for group in ROUNDS if set(group) & set(stages)]


def _weights(config: Config) -> list[Setting]:
    """Cross-entropy at each class weight of the grid (alpha off first): ``alpha`` or
    ``weights`` set, everything else at its default."""
    found: dict[tuple[object, ...], Setting] = {}
    for alpha in config.search.alpha:
        if alpha in ("inverse", "effective"):
            beta = config.search.beta if alpha == "effective" else None
            setting = Setting(0.0, weights=alpha, beta=beta)
        else:
            setting = Setting(0.0, None if alpha is None else float(alpha))  # YAML's 1 and 1.0
        found.setdefault(setting.key(), setting)
    return list(found.values())


def grid_points(config: Config) -> list[Setting]:
    """Search's points: every focus (gamma, with each rare-class gamma; each adaptive
    schedule) with every class weight and learning rate."""
    search = config.search
    rares: list[float | None] = [None] if search.gamma_rare is None else [*search.gamma_rare]
    focus: list[dict[str, object]] = [
        {"gamma": float(g), "gamma_rare": None if rare is None or rare == g else float(rare)}
        for g in search.gamma
        for rare in rares
    ]
    for schedule in search.gamma_schedule:
        if schedule.kind == "flsd53":
            focus.append({"gamma": 5.0, "schedule": "flsd53"})
        else:
            focus += [
                {"gamma": schedule.max_gamma, "schedule": "confidence", "k": float(k)}
                for k in schedule.k
            ]
    lrs: list[float | None] = [float(lr) for lr in search.lr or []] or [None]
    points = [
        replace(weight, lr=lr, dice=dice, **f)  # type: ignore[arg-type]
        for f in focus
        for weight in _weights(config)
        for lr in lrs
        for dice in _dice_weights(config)
    ]
    return list({p.key(): p for p in points}.values())


def _dice_weights(config: Config) -> list[float | None]:
    """``search.dice``'s weights, or [None] (no Dice term) without it."""
    return [float(d) for d in config.search.dice or []] or [None]


def _baseline_points(config: Config) -> list[Setting]:
    points = [Setting(0.0, None, repeat=r) for r in range(config.baseline.repeats)]
    # Cross-entropy + Dice at each weight of the grid: the reference focal + Dice must beat.
    points += [Setting(0.0, None, dice=d) for d in _dice_weights(config) if d]
    if config.baseline.balanced:
        points += [w for w in _weights(config) if w.is_weighted]
    if config.baseline.linear and config.trainer is None:  # a trainer's units have no features
        points += [Setting(0.0, None, model=role) for role in ROLES[1:]]
    return points


def _fixed(stage: Stage, points: list[Setting]) -> StagePlan:
    unique = list({p.key(): p for p in points}.values())
    return StagePlan(stage, "points", POINT_SPACE, unique, len(unique), [])


def _completed(
    config: Config, stage: Stage, storage: optuna.storages.BaseStorage
) -> list[FrozenTrial]:
    study = load_study(config, stage, storage)
    states = (TrialState.COMPLETE,)
    return [] if study is None else study.get_trials(deepcopy=False, states=states)


def _refine_plan(config: Config, storage: optuna.storages.BaseStorage) -> StagePlan:
    done = _completed(config, "search", storage)
    if not done:
        raise StudyError(
            f"refine: no completed search trial in study {study_name(config, 'search')!r}; "
            "run `gammatune search` with this config first."
        )
    best = Setting.from_params(max(done, key=rank).params)
    dists = _refine_space(config, best)
    inside = [
        t
        for t in done
        if all(k in t.params and contains(d, t.params[k]) for k, d in dists.items())
        and all(k in dists for k in t.params if k not in _PAIRING)
    ]
    return StagePlan("refine", "tpe", dists, [], config.refine.n_trials, inside)


def _refine_space(config: Config, best: Setting) -> dict[str, BaseDistribution]:
    """TPE's space around the best search point: stepped windows over gamma (or the
    schedule's k), the rare-class gamma and alpha (unless ``refine.alpha: fixed``), a log range
    over lr, a stepped window over the Dice weight; what the point has but refine does not vary is
    a single value."""
    refine = config.refine
    gammas = (refine.gamma_window, refine.gamma_step, 0.0, 20.0)
    dists: dict[str, BaseDistribution] = {}
    if best.schedule == "fixed":
        dists["gamma"] = _window(best.gamma, *gammas)
    else:
        dists["gamma"] = FloatDistribution(best.gamma, best.gamma)
        dists["schedule"] = CategoricalDistribution([best.schedule])
    if best.k is not None:
        dists["k"] = FloatDistribution(best.k / 2, best.k * 2, log=True)
    if best.gamma_rare is not None:
        dists["gamma_rare"] = _window(best.gamma_rare, *gammas)
    if best.weights is not None:
        dists["weights"] = CategoricalDistribution([best.weights])
        if best.beta is not None:
            dists["beta"] = FloatDistribution(best.beta, best.beta)
    elif refine.alpha == "fixed" and best.alpha is not None:
        dists["alpha"] = FloatDistribution(best.alpha, best.alpha)
    elif refine.alpha == "tune":
        # An unweighted best (alpha off) is refined around 0.5, which weighs classes equally.
        center = 0.5 if best.alpha is None else best.alpha
        dists["alpha"] = _window(center, refine.alpha_window, refine.alpha_step, 0.0, 1.0)
    if best.dice is not None:
        dists["dice"] = _window(best.dice, DICE_WINDOW, DICE_STEP, 0.0, 100.0)
    if best.lr is not None:
        factor = refine.lr_factor
        dists["lr"] = FloatDistribution(best.lr / factor, best.lr * factor, log=True)
    return dists


def _window(center: float, half: float, step: float, low: float, high: float) -> FloatDistribution:
    """A stepped range of about ``center +- half``, aligned to multiples of ``step``."""
    lo = max(low, round(round((center - half) / step) * step, 10))
    n_steps = int(round((min(high, center + half) - lo) / step, 6))
    return FloatDistribution(lo, round(lo + max(n_steps, 1) * step, 10), step=step)


def confirm_points(config: Config, storage: optuna.storages.BaseStorage) -> list[Setting]:
    """The finalists and their references, each over fresh seeds and folds.

    Finalists are the ``confirm.top_k`` best distinct focal settings (gamma > 0) of search and
    refine by validation objective; references are each one's same-alpha cross-entropy twin,
    plain cross-entropy and the best alpha-weighted cross-entropy of the baseline. Seeds are
    fresh (repeats start after the baseline's), and so are the validation samples: every fold
    is a stratified re-split of train+val (fold 1 on), never the split that chose the
    finalists, whose validation samples would flatter them.

    Raises:
        StudyError: Search (or, with ``baseline.balanced``, the baseline) has not completed a
            trial yet.
    """
    tuned = [*_completed(config, "search", storage), *_completed(config, "refine", storage)]
    if not tuned:
        raise StudyError(
            f"confirm: no completed search or refine trial in {study_name(config, 'search')!r}; "
            "run `gammatune search` (and `refine`) with this config first."
        )
    finalists: dict[tuple[object, ...], Setting] = {}
    for trial in sorted(tuned, key=rank, reverse=True):
        setting = Setting.from_params(trial.params)
        if setting.is_focal and len(finalists) < config.confirm.top_k:
            finalists.setdefault(setting.key(), setting)
    baseline = _completed(config, "baseline", storage)
    if config.baseline.balanced and not baseline:
        raise StudyError(
            f"confirm: no completed baseline trial in {study_name(config, 'baseline')!r}; run "
            "`gammatune baseline` first: each finalist is also compared with the baseline's "
            "best alpha-weighted cross-entropy."
        )
    weighted = [
        t
        for t in baseline
        if t.params.get("model", "configured") == "configured"
        and Setting.from_params(t.params).is_weighted
    ]
    references = [Setting(0.0, None), *(s.twin() for s in finalists.values())]
    if weighted:
        references.append(Setting.from_params(max(weighted, key=rank).params))
    settings = {s.key(): s for s in [*finalists.values(), *references]}.values()
    return [
        replace(s, repeat=r, fold=f)
        for s in settings
        for f in range(1, config.confirm.folds + 1)
        for r in config.confirm_repeats
    ]


def check_spaces(study: optuna.Study, plan: StagePlan) -> None:
    """Refuse a study whose trials store a parameter in another kind of space (one made by an
    earlier gammatune): Optuna would raise a bare ValueError at the first new trial.

    Raises:
        StudyError: Naming the parameter, both spaces, and the fix.
    """
    seen: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        for name, old in trial.distributions.items():
            new = plan.distributions.get(name)
            if new is None or name in seen:
                continue
            seen.add(name)
            try:
                check_distribution_compatibility(old, new)
            except ValueError:
                raise StudyError(
                    f"study {study.study_name!r} stores {name!r} as {old!r}, which this "
                    f"gammatune cannot extend (it uses {new!r}): the study was made by an "
                    "earlier version; set a new `name` to start a new study."
                ) from None


WARM_START = "warm_start_from"  # the user attribute that marks a warm-start copy


def add_warm_start(study: optuna.Study, plan: StagePlan) -> None:
    """Copy the search trials inside the refine window into the refine study, once each."""
    copied = {t.user_attrs.get(WARM_START) for t in study.get_trials(deepcopy=False)}
    for source in plan.warm_start:
        record = load_record(source)
        if source.number in copied or record is None:
            continue
        copy = replace(record, warm_start_from=source.number)
        study.add_trial(
            optuna.trial.create_trial(
                params={k: source.params[k] for k in plan.distributions},
                distributions=plan.distributions,
                values=source.values,
                # Also a top-level attribute: budgets count copies without parsing records,
                # and the dashboard shows which trials are copies.
                user_attrs={
                    **key_figures(record),
                    RESULT: copy.to_json(),
                    WARM_START: source.number,
                },
            )
        )
