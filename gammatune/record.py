"""What a trial is and what it produced: ``Setting`` (its inputs) and ``TrialRecord`` (its result).

The record is the one typed value that tuning writes to the study storage and the report reads
back: training fills it, ``storage`` stores it as versioned JSON in one user attribute, and
``report`` turns it into a row. Nothing else edits it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np

from gammatune.metrics import Evaluation

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


@dataclass(frozen=True, slots=True)
class Setting:
    """What one trial trains: the loss, the seed, the split and the model.

    Args:
        gamma: Focusing exponent; 0 is cross-entropy.
        alpha: Weight of the minority class, or None for none.
        repeat: The training seed is ``config.seed + repeat``; trials of one repeat share
            initial weights, batch order and dropout masks (paired comparisons).
        fold: 0 is the configured split; ``f > 0`` a stratified re-split of train+val.
        model: ``configured`` (the experiment's model), or a scikit-learn logistic regression
            (``logistic``, ``logistic_balanced``) as a yardstick.
    """

    gamma: float
    alpha: float | None = None
    repeat: int = 0
    fold: int = 0
    model: Role = "configured"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Setting:
        """Build from Optuna parameters; the ones a stage does not vary take their defaults."""
        alpha = params.get("alpha")
        return cls(
            gamma=float(params["gamma"]),
            alpha=None if alpha is None else float(alpha),
            repeat=int(params.get("repeat", 0)),
            fold=int(params.get("fold", 0)),
            model=params.get("model", "configured"),
        )

    def params(self) -> dict[str, Any]:
        """The Optuna parameters: every field, except ``alpha`` when it is off."""
        params = dataclasses.asdict(self)
        return {k: v for k, v in params.items() if not (k == "alpha" and v is None)}

    def key(self) -> tuple[Any, ...]:
        """A hashable identity, robust to float noise (0.85 vs 0.8500000000000001)."""
        alpha = None if self.alpha is None else round(self.alpha, 9)
        return (round(self.gamma, 9), alpha, self.repeat, self.fold, self.model)

    @property
    def label(self) -> str:
        """``'gamma=2 alpha=0.25'``, with the seed, fold and model where they differ."""
        text = f"gamma={self.gamma:g} alpha={format_alpha(self.alpha)}"
        text += f" repeat={self.repeat}" if self.repeat else ""
        text += f" fold={self.fold}" if self.fold else ""
        return text + (f" ({self.model})" if self.model != "configured" else "")

    def twin(self) -> Setting:
        """The cross-entropy twin: everything the same but gamma 0."""
        return replace(self, gamma=0.0)


@dataclass(frozen=True, slots=True)
class SampleScores:
    """Per-sample scores of one trial, ``(N,)`` positive-class or ``(N, C)`` probabilities,
    with the labels they are scored against (validation differs between folds)."""

    val: np.ndarray
    test: np.ndarray
    val_labels: np.ndarray
    test_labels: np.ndarray


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """One trial's result. ``fail_reason`` is set for a trial that ended without one.

    ``value`` is the validation objective; ``val``/``test`` the evaluations of the kept epoch;
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
    return Evaluation(**{n: values.get(n, math.nan) for n in names})
