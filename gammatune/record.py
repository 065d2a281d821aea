"""What a trial is and what it produced: ``Setting`` (its inputs) and ``TrialRecord`` (its result).

The record is the one typed value that tuning writes to the study storage and the report reads
back: training fills it, ``storage`` stores it as versioned JSON in one user attribute, and
``report`` turns it into a row. Nothing else edits it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gammatune.metrics import Evaluation, objective_value

if TYPE_CHECKING:
    from gammatune.config import Config

RECORD_VERSION = 2
Role = Literal["configured", "logistic", "logistic_balanced"]
ROLES: tuple[Role, ...] = ("configured", "logistic", "logistic_balanced")


def format_alpha(alpha: float | None) -> str:
    """``'off'`` for no class weight, else the number: ``format_alpha(0.75) == '0.75'``."""
    return (
        "off"
        if alpha is None or (isinstance(alpha, float) and math.isnan(alpha))
        else f"{alpha:g}"
    )


Schedule = Literal["fixed", "confidence", "flsd53"]
Weights = Literal["inverse", "effective"]
SCHEDULES: tuple[Schedule, ...] = ("fixed", "confidence", "flsd53")
WEIGHTS: tuple[Weights, ...] = ("inverse", "effective")
# The loss and training fields beyond gamma and alpha, in the order they are shown; each is off
# (None, or "fixed") unless a stage's search space declares it.
EXTRA_FIELDS = ("lr", "gamma_rare", "schedule", "k", "weights", "beta", "dice")


@dataclass(frozen=True, slots=True)
class Setting:
    """What one trial trains: the loss, the learning rate, the seed, the split and the model.

    Args:
        gamma: Focusing exponent; 0 is cross-entropy. With a ``schedule``, its upper clamp.
        alpha: Weight of the minority class, or None for none.
        repeat: The training seed is ``config.seed + repeat``; trials of one repeat share
            initial weights, batch order and dropout masks (paired comparisons).
        fold: 0 is the configured split; ``f > 0`` a stratified re-split of train+val.
        model: ``configured`` (the experiment's model), or a scikit-learn logistic regression
            (``logistic``, ``logistic_balanced``) as a yardstick.
        lr: Learning rate, or None for ``train.lr``.
        gamma_rare: Gamma of the rare classes (binary: the positive class; multiclass:
            ``search.rare_classes``, default the rarest), ``gamma`` for the others; None: one
            gamma for all.
        schedule: ``fixed`` gamma, or adaptive: ``confidence`` (gamma = k * logit(p_t),
            clamped to [0, gamma]) or ``flsd53`` (Mukhoti et al. 2020: 5 where p_t < 0.2, else 3).
        k: Slope of the ``confidence`` schedule.
        weights: Per-class weights from the training counts instead of ``alpha``: ``inverse``
            frequency, or ``effective`` number of samples with ``beta`` (Cui et al. 2019).
        beta: The ``effective`` scheme's beta, in [0, 1).
        dice: Weight of a Dice term added to the loss (segmentation), or None for none; a
            focal setting's twin keeps it.
    """

    gamma: float
    alpha: float | None = None
    repeat: int = 0
    fold: int = 0
    model: Role = "configured"
    lr: float | None = None
    gamma_rare: float | None = None
    schedule: Schedule = "fixed"
    k: float | None = None
    weights: Weights | None = None
    beta: float | None = None
    dice: float | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Setting:
        """Build from Optuna parameters; the ones a stage does not vary take their defaults."""

        def number(name: str) -> float | None:
            value = params.get(name)
            return None if value is None else float(value)

        return cls(
            gamma=float(params["gamma"]),
            alpha=number("alpha"),
            repeat=int(params.get("repeat", 0)),
            fold=int(params.get("fold", 0)),
            model=params.get("model", "configured"),
            lr=number("lr"),
            gamma_rare=number("gamma_rare"),
            schedule=params.get("schedule", "fixed"),
            k=number("k"),
            weights=params.get("weights"),
            beta=number("beta"),
            dice=number("dice"),
        )

    def params(self) -> dict[str, Any]:
        """The Optuna parameters: every field that is on (``alpha`` and the extras only then)."""
        params = dataclasses.asdict(self)
        off = {"alpha": None, **{name: _OFF[name] for name in EXTRA_FIELDS}}
        return {k: v for k, v in params.items() if not (k in off and v == off[k])}

    def key(self) -> tuple[Any, ...]:
        """A hashable identity, robust to float noise (0.85 vs 0.8500000000000001)."""
        return tuple(round(v, 9) if isinstance(v, float) else v for v in dataclasses.astuple(self))

    @property
    def label(self) -> str:
        """``'gamma=2 alpha=0.25'``, with the extras, seed, fold and model where they differ."""
        return (
            self.arm().name
            + (f" repeat={self.repeat}" if self.repeat else "")
            + (f" fold={self.fold}" if self.fold else "")
            + (f" ({self.model})" if self.model != "configured" else "")
        )

    @property
    def name(self) -> str:
        """The loss and learning rate in words, ``'gamma=2 alpha=0.25'``: what the report calls
        a setting (see :meth:`parts`)."""
        return " ".join(self.parts())

    def parts(self) -> list[str]:
        """``['gamma=2', 'alpha=0.25']``, with ``gamma_rare``, the schedule, the per-class
        weights and ``lr`` where they are on."""
        if self.schedule == "flsd53":
            parts = ["gamma=flsd53"]
        elif self.schedule == "confidence":
            parts = [f"gamma=confidence(k={self.k:g},max={self.gamma:g})"]
        else:
            parts = [f"gamma={self.gamma:g}"]
            parts += [] if self.gamma_rare is None else [f"gamma_rare={self.gamma_rare:g}"]
        if self.weights == "effective":
            parts.append(f"weights=effective(beta={self.beta:g})")
        elif self.weights is not None:
            parts.append(f"weights={self.weights}")
        else:
            parts.append(f"alpha={format_alpha(self.alpha)}")
        parts += [] if self.dice is None else [f"dice={self.dice:g}"]
        return parts + ([] if self.lr is None else [f"lr={self.lr:g}"])

    @property
    def is_focal(self) -> bool:
        """Whether the loss focuses at all (any gamma above 0, or a schedule)."""
        return self.gamma > 0 or bool(self.gamma_rare) or self.schedule != "fixed"

    @property
    def is_weighted(self) -> bool:
        """Whether a class weight is on (``alpha`` or a per-class scheme)."""
        return self.alpha is not None or self.weights is not None

    def arm(self) -> Setting:
        """The setting without its seed, split and model: what a comparison is about."""
        return replace(self, repeat=0, fold=0, model="configured")

    def twin(self) -> Setting:
        """The cross-entropy twin: everything the same (class weight, learning rate, seed,
        split) but no focusing."""
        return replace(self, gamma=0.0, gamma_rare=None, schedule="fixed", k=None)


_OFF: dict[str, Any] = {
    "lr": None, "gamma_rare": None, "schedule": "fixed", "k": None, "weights": None, "beta": None,
    "dice": None,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SampleScores:
    """Per-sample scores of one trial, ``(N,)`` positive-class or ``(N, C)`` probabilities,
    with the labels they are scored against (validation differs between folds). ``test`` is
    None where a user's trainer returned no test scores (the test split's labels stay)."""

    val: np.ndarray
    test: np.ndarray | None
    val_labels: np.ndarray
    test_labels: np.ndarray


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """One trial's result. ``fail_reason`` is set for a trial that ended without one.

    ``value`` is the validation metric that ranks trials (``config.metric``), ``values`` the
    objectives of a multi-objective study, ``feasible`` whether ``config.constraints`` hold on
    validation; ``val``/``test`` the evaluations of the kept epoch (``test`` None where a user's
    trainer returned no test scores);
    ``curves`` the per-epoch ``train_loss``, ``val_loss`` and ``val_monitor``; ``scores_file``
    the per-sample scores, relative to the run folder.
    """

    setting: Setting
    seed: int
    device: str = ""
    value: float | None = None
    fail_reason: str | None = None
    duration_s: float = 0.0
    epochs_run: int = 0
    best_epoch: int = 0
    stop_reason: str = ""
    curves: dict[str, list[float | None]] = field(default_factory=dict)
    val: Evaluation | None = None
    test: Evaluation | None = None
    scores_file: str | None = None
    stage: str = ""
    warm_start_from: int | None = None
    reused_from: int | None = None
    values: list[float] | None = None
    feasible: bool = True
    weights_file: str | None = None  # a user trainer's kept weights (its payload's "weights")
    extra: dict[str, Any] | None = None  # a user trainer's figures, shown, never decided on
    # confirm.check_determinism: the largest |score| difference of this trial trained twice
    repeat_difference: float | None = None

    @property
    def failed(self) -> bool:
        return self.fail_reason is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict with ``version``; :meth:`from_json` reads it back."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["setting"] = dataclasses.asdict(self.setting)
        for split in ("val", "test"):
            evaluation = data[split]
            data[split] = None if evaluation is None else dataclasses.asdict(evaluation)
        return {"version": RECORD_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, params: dict[str, Any]) -> TrialRecord:
        """Read a stored record; ``params`` (the trial's) fill in records of version 1.

        Raises:
            ValueError: A record written by a newer gammatune.
        """
        version = data.get("version", 1)
        if version > RECORD_VERSION:
            raise ValueError(f"trial record version {version}; this gammatune reads <= 2")
        if version == 1:
            data = _from_version_1(data, params)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["setting"] = Setting(**values["setting"])
        for split in ("val", "test"):
            if values.get(split) is not None:
                values[split] = _evaluation(values[split])
        return cls(**values)


def _from_version_1(data: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Version 1 spread the record over flat keys, and had a torch 'linear' yardstick."""
    setting = Setting.from_params({**params, "model": "configured"})
    return {**data, "setting": dataclasses.asdict(setting), "seed": data.get("seed", 0)}


def _evaluation(values: dict[str, Any]) -> Evaluation:
    """An ``Evaluation`` from stored fields; fields added since it was stored are NaN/None."""
    names = [f.name for f in fields(Evaluation)]
    return Evaluation(
        **{n: values.get(n, math.nan) for n in names if n != "task_metrics"},
        task_metrics=values.get("task_metrics") or {},
    )


def scored(
    config: Config, record: TrialRecord, val: Evaluation, test: Evaluation | None
) -> TrialRecord:
    """``record`` with its evaluations, objective value(s) and feasibility; failed where an
    objective is not finite (a task metric the trial's task has not: Dice of boxes)."""
    value = objective_value(val, config.metric)
    reason = None if math.isfinite(value) else f"the objective {config.metric} is {value}"
    values = [objective_value(val, o) for o in config.objectives]
    if reason is None and not all(math.isfinite(v) for v in values):
        reason = f"an objective is not finite: {values}"
    feasible = all(objective_value(val, m) >= low for m, low in config.constraints.items())
    multi = values if len(values) > 1 else None
    return replace(record, val=val, test=test, value=value, values=multi, feasible=feasible,
                   fail_reason=reason)  # fmt: skip
