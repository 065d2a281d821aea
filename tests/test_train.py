"""The training loop: learning, early stopping, failures, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gammatune.config import TrainConfig
from gammatune.training._loop import EpochTracker, fit, make_loss


def _data(n: int = 600, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] + 0.3 * torch.randn(n, generator=g) > 1.2).long()
    return x[:400], y[:400], x[400:], y[400:]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def test_fit_learns_and_keeps_curves() -> None:
    config = TrainConfig(epochs=15, batch_size=64, lr=0.01, patience=50)
    loss = make_loss(gamma=1.0, alpha=None, n_classes=2, minority=1)
    result = fit(_model(), _data(), loss_fn=loss, config=config, device=torch.device("cpu"))
    assert result.failure is None and result.epochs_run == 15
    assert len(result.train_loss) == len(result.val_loss) == len(result.val_monitor) == 15
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.val_monitor[result.best_epoch - 1] == max(result.val_monitor)
    assert max(result.val_monitor) > 0.8  # average precision on an easy problem


def test_early_stopping_waits_for_min_epochs_then_patience() -> None:
    config = TrainConfig(epochs=50, batch_size=64, lr=1e-12, patience=2, min_epochs=6)
    loss = make_loss(gamma=0.0, alpha=None, n_classes=2, minority=1)
    result = fit(_model(), _data(), loss_fn=loss, config=config, device=torch.device("cpu"))
    # lr ~0: the monitor never improves after epoch 1, so training stops at min_epochs
    assert (
        result.stop_reason == "early_stopping"
        and result.epochs_run == 6
        and result.best_epoch == 1
    )


def test_non_finite_loss_fails_the_training() -> None:
    config = TrainConfig(epochs=5, batch_size=64)

    def exploding(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits.sum() * math.inf

    result = fit(_model(), _data(), loss_fn=exploding, config=config, device=torch.device("cpu"))
    assert result.failure == "training loss became nan at epoch 1" or "inf" in result.failure
    assert result.stop_reason == "non_finite_loss"


def test_same_seed_same_training() -> None:
    config = TrainConfig(epochs=3, batch_size=32)
    loss = make_loss(gamma=2.0, alpha=0.25, n_classes=2, minority=1)
    runs = [
        fit(_model(), _data(), loss_fn=loss, config=config, device=torch.device("cpu"), seed=7)
        for _ in range(2)
    ]
    assert runs[0].train_loss == runs[1].train_loss


def test_gamma_zero_without_alpha_is_cross_entropy() -> None:
    logits, targets = torch.randn(10, 1), (torch.rand(10) < 0.3).long()
    binary = make_loss(gamma=0.0, alpha=None, n_classes=2, minority=1)
    assert binary(logits, targets).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits[:, 0], targets.float()).item(), rel=1e-6
    )
    multi_logits, multi_targets = torch.randn(10, 3), torch.randint(0, 3, (10,))
    multi = make_loss(gamma=0.0, alpha=None, n_classes=3, minority=2)
    assert multi(multi_logits, multi_targets).item() == pytest.approx(
        F.cross_entropy(multi_logits, multi_targets).item(), rel=1e-6
    )


def test_multiclass_alpha_weights_the_minority_class() -> None:
    logits, targets = torch.zeros(2, 3), torch.tensor([2, 0])
    weighted = make_loss(gamma=0.0, alpha=0.9, n_classes=3, minority=2)
    # per sample: alpha_t * log(3), alpha_t = 0.9 for the minority class 2 and 0.1 otherwise
    assert weighted(logits, targets).item() == pytest.approx((0.9 + 0.1) / 2 * math.log(3))


def test_keep_last_trains_every_epoch_and_keeps_the_last() -> None:
    """For a refit on train+val, where the validation rows are training rows."""
    config = TrainConfig(epochs=9, batch_size=64, lr=1e-12, patience=1, min_epochs=1)
    loss = make_loss(gamma=0.0, alpha=None, n_classes=2, minority=1)
    model = _model()
    result = fit(model, _data(), loss_fn=loss, config=config, device=torch.device("cpu"),
                 keep="last")  # fmt: skip
    assert result.epochs_run == result.best_epoch == 9  # no early stop at a flat monitor
    best = fit(_model(), _data(), loss_fn=loss, config=config, device=torch.device("cpu"))
    assert best.epochs_run < 9  # the default stops after patience


def test_a_tied_monitor_keeps_the_epoch_with_the_lower_validation_loss() -> None:
    """PR-AUC 1.0 from epoch 1 on a small validation split: the later, better-fitted epoch wins,
    and each such epoch resets the patience."""
    tracker = EpochTracker(TrainConfig(epochs=10, patience=2, min_epochs=1))
    kept = [tracker.record(e, 0.5, loss, 1.0) for e, loss in enumerate([0.6, 0.4, 0.3, 0.35], 1)]
    assert kept == [True, True, True, False] and tracker.best_epoch == 3
    assert not tracker.stopped
    assert not tracker.record(5, 0.5, 0.2, 0.9)  # a lower loss does not beat a higher monitor
    assert tracker.stopped and tracker.best_epoch == 3
