"""The confirm stage on real Optuna storage, with stand-in objectives (no training): what it
plans, that it resumes, and the verdict its paired trials lead to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gammatune.config import Config
from gammatune.data import load_data, refold
from gammatune.metrics import evaluate
from gammatune.record import Setting, TrialRecord
from gammatune.report import study_summary
from gammatune.storage import open_storage
from gammatune.tuning import run_stages
from tests.conftest import TINY

_LABELS = np.r_[np.zeros(90, np.int64), np.ones(10, np.int64)]
_SCORES = np.r_[np.linspace(0.0, 0.6, 90), np.linspace(0.3, 0.9, 10)]  # some positives found


def _config(tmp_path: Path, **changes: object) -> Config:
    return Config.model_validate({**TINY, "output_dir": str(tmp_path), **changes})


def _stand_in(gains: dict[tuple[float, float | None], float], seen: list[Setting]):
    """Objective = 0.5 + the planted gain of the setting + what its seed does to every setting
    (the paired part) + a little noise of its own."""

    def objective(
        settings: list[Setting], _reporters=None, _trials=None
    ) -> list[tuple[TrialRecord, None]]:
        out = []
        for s in settings:
            seen.append(s)
            rng = np.random.default_rng(
                [s.repeat, s.fold, int(s.gamma * 10), int((s.alpha or 0) * 100)]
            )
            shared = np.random.default_rng([s.repeat, s.fold]).normal(0, 0.05)
            value = 0.5 + gains.get((s.gamma, s.alpha), 0.0) + shared + rng.normal(0, 0.005)
            val = evaluate(_LABELS, _SCORES)
            out.append(
                (TrialRecord(s, seed=s.repeat, value=float(value), best_epoch=4, val=val), None)
            )
        return out

    return objective


def _run(config: Config, gains: dict, stages: list[str]) -> list[Setting]:
    seen: list[Setting] = []
    run_stages(config, stages, _stand_in(gains, seen), storage=open_storage(config), parallel=8)  # type: ignore[arg-type]
    return seen


def test_confirm_plans_finalists_twins_and_references_over_fresh_seeds(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        baseline={"repeats": 2},
        search={"gamma": [0.5, 1.0, 2.0], "alpha": [0.25, 0.75]},
        refine={"n_trials": 1, "gamma_window": 0.1, "alpha_window": 0.05},
        confirm={"top_k": 2, "repeats": 3, "folds": 2},
    )
    gains = {(2.0, 0.75): 0.2, (1.0, 0.25): 0.15, (0.0, 0.25): 0.05}
    _run(config, gains, ["baseline", "search", "refine"])
    seen = _run(config, gains, ["confirm"])
    settings = {(s.gamma, s.alpha) for s in seen}
    # the 2 best focal settings, their twins, plain CE, the best weighted CE (alpha 0.25)
    assert settings == {(2.0, 0.75), (1.0, 0.25), (0.0, 0.75), (0.0, 0.25), (0.0, None)}
    # fresh seeds after the baseline's, and re-splits only: never the split that chose them
    assert {(s.repeat, s.fold) for s in seen} == {(r, f) for r in (2, 3, 4) for f in (1, 2)}
    assert len(seen) == len(set(seen)) == 5 * 3 * 2  # each point exactly once
    assert _run(config, gains, ["confirm"]) == []  # a rerun trains nothing
    more = Config.model_validate(
        {**config.model_dump(), "confirm": {"top_k": 2, "repeats": 4, "folds": 2}}
    )
    assert {(s.repeat, s.fold) for s in _run(more, gains, ["confirm"])} == {(5, 1), (5, 2)}


@pytest.mark.parametrize(
    ("gains", "kind", "recommended"),
    [
        ({(2.0, 0.75): 0.10, (0.0, 0.75): 0.02}, "focal", (2.0, 0.75)),
        ({(2.0, 0.75): 0.10, (0.0, 0.75): 0.10}, "class-weight", (0.0, 0.75)),
        ({}, "cross-entropy", None),
    ],
)
def test_the_verdict_follows_the_planted_effect(tmp_path: Path, gains, kind, recommended) -> None:
    config = _config(tmp_path, search={"gamma": [0.5, 2.0], "alpha": [0.75]})
    _run(config, gains, ["baseline", "search", "refine", "confirm"])
    _, summary, _ = study_summary(config)
    assert summary.verdict.kind == kind
    if recommended is not None:
        assert summary.verdict.recommended == Setting(*recommended)


def test_a_refold_keeps_the_test_split_and_the_validation_class_counts() -> None:
    splits = load_data(Config.model_validate(TINY))
    again, other = refold(splits, 1, seed=0), refold(splits, 2, seed=0)
    assert torch.equal(again.x_test, splits.x_test) and torch.equal(again.y_test, splits.y_test)
    counts = torch.bincount(splits.y_val).tolist()
    assert torch.bincount(again.y_val).tolist() == counts == torch.bincount(other.y_val).tolist()
    assert len(again.y_train) == len(splits.y_train)
    assert not torch.equal(again.x_val, splits.x_val) and not torch.equal(again.x_val, other.x_val)
    assert torch.equal(refold(splits, 1, seed=0).x_val, again.x_val)  # reproducible
    assert refold(splits, 0, seed=0) is splits
    pooled = torch.cat([splits.x_train, splits.x_val])
    assert sorted(map(tuple, torch.cat([again.x_train, again.x_val]).tolist())) == sorted(
        map(tuple, pooled.tolist())
    )  # train+val re-split, nothing lost or added
