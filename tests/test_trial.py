"""Trials: out-of-memory handling, and the CUDA path when a GPU is present."""

from __future__ import annotations

import pytest
import torch

import gammatune.tuning._objective
from gammatune.config import Config
from gammatune.data import load_data
from gammatune.training._loop import fit, make_loss
from gammatune.tuning._objective import make_objective
from gammatune.tuning._runner import TrialFailed
from tests.conftest import TINY


def _params(gamma: float) -> dict:
    return {"gamma": gamma, "alpha": 0.75, "repeat": 0, "model": "configured"}


def test_out_of_memory_splits_the_group_then_fails_only_that_trial(monkeypatch) -> None:
    config = Config.model_validate(TINY)
    splits = load_data(config)
    sizes: list[int] = []

    def stacked_oom(members, *args, **kwargs):
        sizes.append(len(members))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    def tagged_loss(**kwargs):
        loss = make_loss(**kwargs)
        tagged = lambda logits, targets: loss(logits, targets)  # noqa: E731
        tagged.gamma = kwargs["gamma"]
        return tagged

    def alone_oom_at_gamma_2(model, data, *, loss_fn, **kwargs):
        if loss_fn.gamma == 2.0:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return fit(model, data, loss_fn=loss_fn, **kwargs)

    monkeypatch.setattr(gammatune.tuning._objective, "fit_stacked", stacked_oom)
    monkeypatch.setattr(gammatune.tuning._objective, "make_loss", tagged_loss)
    monkeypatch.setattr(gammatune.tuning._objective, "fit", alone_oom_at_gamma_2)
    objective = make_objective(config, splits, device=torch.device("cpu"), autocast=None)
    outcomes = objective([_params(0.5), _params(1.0), _params(2.0), _params(0.0)])
    assert sizes == [4, 2, 2]  # the group of 4 split in two, each pair split to single trials
    failed = [o for o in outcomes if isinstance(o, TrialFailed)]
    assert len(failed) == 1 and failed[0].reason == "CUDA out of memory"
    assert failed[0].attrs["gamma"] == 2.0
    assert all(isinstance(o, tuple) for o in outcomes if not isinstance(o, TrialFailed))


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
