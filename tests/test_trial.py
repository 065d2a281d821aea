"""Trials: out-of-memory handling, and the CUDA path when a GPU is present."""

from __future__ import annotations

import pytest
import torch

import gammatune.tuning._objective
from gammatune.config import Config
from gammatune.data import load_data
from gammatune.record import Setting
from gammatune.training._stacked import fit_stacked
from gammatune.tuning._objective import make_objective
from tests.conftest import TINY


def _params(gamma: float) -> Setting:
    return Setting(gamma, 0.75)


def test_out_of_memory_splits_the_group_then_fails_only_that_trial(monkeypatch) -> None:
    config = Config.model_validate(TINY)
    splits = load_data(config)
    sizes: list[int] = []

    def oom_with_gamma_2(members, *args, **kwargs):
        sizes.append(len(members))
        if any(m.gamma == 2.0 for m in members):  # the member that cannot fit
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return fit_stacked(members, *args, **kwargs)

    monkeypatch.setattr(gammatune.tuning._objective, "fit_stacked", oom_with_gamma_2)
    objective = make_objective(config, splits, device=torch.device("cpu"), autocast=None)
    outcomes = objective([_params(0.5), _params(1.0), _params(2.0), _params(0.0)])
    assert sizes == [4, 2, 2, 1, 1]  # the group split in two, the pair with gamma 2 in ones
    failed = [record for record, _ in outcomes if record.failed]
    assert len(failed) == 1 and failed[0].fail_reason == "CUDA out of memory"
    assert failed[0].setting.gamma == 2.0
    assert all(record.value is not None for record, _ in outcomes if not record.failed)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_stacked_trials_train_in_bf16_on_cuda() -> None:
    config = Config.model_validate({**TINY, "train": {**TINY["train"], "device": "cuda"}})
    splits = load_data(config)
    objective = make_objective(
        config, splits, device=torch.device("cuda"), autocast=torch.bfloat16
    )
    outcomes = objective([_params(0.5), _params(2.0)])
    assert all(isinstance(o, tuple) for o in outcomes)
    assert outcomes[0][1]["device"].startswith("cuda:")
