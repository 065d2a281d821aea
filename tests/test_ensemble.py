"""Stacked training is the same training as each member alone."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch

from gammatune.config import ModelConfig, TrainConfig
from gammatune.models import build_model
from gammatune.training._engines import (
    FlatAdamW,
    StackedMLP,
    VmappedModels,
    dropout_masks,
    dropout_streams,
    keep_rate,
    stackable,
    vmappable,
)
from gammatune.training._loop import fit, make_loss
from gammatune.training._stacked import Member, choose_parallel, fit_stacked

CPU = torch.device("cpu")


def _data(n_classes: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g, dtype=torch.float64)
    if n_classes == 2:
        y = (x[:, 0] + 0.5 * torch.randn(300, generator=g, dtype=torch.float64) > 1.0).long()
    else:
        y = torch.bucketize(x[:, 0].contiguous(), torch.tensor([-1.0, 0.5], dtype=torch.float64))
    return x[:200], y[:200], x[200:], y[200:]


def _members(n_outputs: int, settings: list[tuple[float, float | None, int]]) -> list[Member]:
    members = []
    for gamma, alpha, seed in settings:
        torch.manual_seed(seed)
        model = build_model(
            ModelConfig(kind="mlp", hidden=[8, 8], dropout=0.0), n_features=6, n_outputs=n_outputs
        ).double()
        members.append(Member(model, gamma, alpha, seed))
    return members


def _alone(member: Member, data, config: TrainConfig, n_classes: int) -> tuple:
    model = copy.deepcopy(member.model)
    loss = make_loss(gamma=member.gamma, alpha=member.alpha, n_classes=n_classes, minority=2)
    result = fit(
        model,
        data,
        loss_fn=loss,
        config=config,
        device=CPU,
        seed=member.seed,
        report=member.report,
    )
    return model, result


@pytest.mark.parametrize("n_classes", [2, 3])
def test_members_train_as_they_would_alone(n_classes: int) -> None:
    data = _data(n_classes)
    config = TrainConfig(epochs=12, batch_size=32, lr=0.01, patience=2, min_epochs=3)
    settings = [(0.0, None, 0), (0.5, 0.25, 1), (2.0, 0.75, 2), (1.0, None, 0)]
    members = _members(1 if n_classes == 2 else n_classes, settings)
    alone = [_alone(m, data, config, n_classes) for m in members]
    stacked = fit_stacked(
        members, data, n_classes=n_classes, minority=2, config=config, device=CPU
    )
    for member, (model, result), together in zip(members, alone, stacked, strict=True):
        assert (together.epochs_run, together.best_epoch, together.stop_reason) == (
            result.epochs_run,
            result.best_epoch,
            result.stop_reason,
        )
        assert together.train_loss == pytest.approx(result.train_loss, rel=1e-10)
        for p_stacked, p_alone in zip(member.model.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(p_stacked, p_alone, rtol=1e-10, atol=1e-12)
    if n_classes == 2:
        assert len({r.epochs_run for r in stacked}) > 1  # members stopped at different epochs


def _dropout_member(gamma: float, alpha: float | None, seed: int) -> Member:
    torch.manual_seed(seed)
    config = ModelConfig(kind="mlp", hidden=[8, 8], dropout=0.1)
    return Member(build_model(config, n_features=6, n_outputs=1).double(), gamma, alpha, seed)


def test_a_trial_with_dropout_is_the_same_alone_and_in_stacks_of_5_and_13() -> None:
    """A trial's result is a function of its own setting: its dropout masks come from its
    seed, not from a stream it shares with the trials stacked beside it."""
    data = _data()
    config = TrainConfig(epochs=6, batch_size=32, lr=0.01, patience=2, min_epochs=3)
    trained = {}
    for k in (1, 5, 13):
        others = [_dropout_member(0.5 * i, 0.75 if i % 2 else None, 10 + i) for i in range(k - 1)]
        members = [_dropout_member(2.0, 0.25, 7), *others]
        (result, *_) = fit_stacked(
            members, data, n_classes=2, minority=1, config=config, device=CPU
        )
        trained[k] = (result, [p.detach().clone() for p in members[0].model.parameters()])
    alone, alone_params = trained[1]
    for k in (5, 13):
        result, params = trained[k]
        assert (result.epochs_run, result.best_epoch) == (alone.epochs_run, alone.best_epoch)
        assert result.train_loss == pytest.approx(alone.train_loss, rel=1e-12)
        assert result.val_monitor == pytest.approx(alone.val_monitor, rel=1e-12)
        for got, expected in zip(params, alone_params, strict=True):  # float64 rounding only
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_dropout_masks_keep_their_rate_and_each_members_stream() -> None:
    masks = dropout_masks(dropout_streams([3, 4], CPU), (400, 500), 0.1, torch.float64)
    assert masks.shape == (2, 400, 500)
    kept = masks > 0
    assert abs(kept.double().mean().item() - 0.9) < 0.005
    # Each of the four 16-bit numbers of a random word keeps its share (a sign bit that is never
    # set would keep every fourth unit).
    lanes = kept.reshape(2, -1, 4).double().mean(dim=(0, 1))
    assert torch.all((lanes - 0.9).abs() < 0.005), lanes
    assert torch.equal(masks[kept], torch.ones_like(masks[kept]))  # the scale is the matmul's
    assert keep_rate(0.1) == 1 - round(0.1 * 2**16) / 2**16
    alone = dropout_masks(dropout_streams([4], CPU), (400, 500), 0.1, torch.float64)
    assert torch.equal(alone[0], masks[1])  # member 4's masks do not depend on member 3
    assert not torch.equal(masks[0], masks[1])


def test_models_with_dropout_do_not_vmap() -> None:
    cnn = ModelConfig(kind="cnn", channels=[2], dropout=0.1)
    model = build_model(cnn, n_features=64, n_outputs=1, image_shape=(1, 8, 8))
    assert not vmappable(model, 64)


def test_a_failing_member_does_not_stop_the_others() -> None:
    data = _data()
    config = TrainConfig(epochs=4, batch_size=32, lr=0.01, patience=10)
    members = _members(1, [(2.0, None, 0), (2.0, None, 1)])
    healthy = _alone(members[1], data, config, 2)
    with torch.no_grad():
        members[0].model[0].weight[0, 0] = math.nan
    results = fit_stacked(members, data, n_classes=2, minority=1, config=config, device=CPU)
    assert results[0].failure == "training loss became nan at epoch 1"
    assert results[1].failure is None and results[1].epochs_run == 4
    assert results[1].train_loss == pytest.approx(healthy[1].train_loss, rel=1e-10)


def test_what_can_be_stacked() -> None:
    assert stackable(build_model(ModelConfig(kind="linear"), n_features=4, n_outputs=1))
    assert stackable(build_model(ModelConfig(kind="mlp"), n_features=4, n_outputs=1))
    cnn = build_model(ModelConfig(kind="cnn"), n_features=64, n_outputs=1, image_shape=(1, 8, 8))
    assert not stackable(cnn)


@pytest.mark.parametrize("fused", [True, False])
def test_flat_adamw_is_torch_adamw(fused: bool) -> None:
    if fused and not hasattr(torch, "_fused_adamw_"):
        pytest.skip("this torch has no fused AdamW kernel")
    g = torch.Generator().manual_seed(0)
    ours = torch.randn(50, generator=g, dtype=torch.float64)
    theirs = torch.nn.Parameter(ours.clone())
    reference = torch.optim.AdamW([theirs], lr=0.01, weight_decay=0.1)
    optimizer = FlatAdamW(ours, lr=0.01, weight_decay=0.1, fused=fused)
    for _ in range(20):
        grad = torch.randn(50, generator=g, dtype=torch.float64)
        theirs.grad = grad.clone()
        reference.step()
        optimizer.step(grad)
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("n_outputs", "dropout"), [(1, 0.0), (3, 0.0), (1, 0.3)])
def test_written_out_backward_is_autograd(n_outputs: int, dropout: float) -> None:
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        config = ModelConfig(kind="mlp", hidden=[8, 5], dropout=dropout)
        models.append(build_model(config, n_features=6, n_outputs=n_outputs).double())
    stacked = StackedMLP(models, CPU)
    x = torch.randn(3, 16, 6, dtype=torch.float64)
    upstream = torch.randn(3, 16, n_outputs, dtype=torch.float64)
    flat = stacked.flat.clone().requires_grad_()
    stacked.streams = dropout_streams([0, 1, 2], CPU)  # the same dropout masks both times
    logits = stacked.forward(x, stacked.layers(flat), [])
    (expected,) = torch.autograd.grad((logits * upstream).sum(), flat)
    stacked.streams = dropout_streams([0, 1, 2], CPU)
    saved: list[torch.Tensor] = []
    stacked.forward(x, stacked.work_layers, saved)
    got = stacked.backward(x, saved, upstream)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    assert len(saved) == 2  # the inputs of the layers after the first (masks applied)


def test_training_forward_is_inverted_dropout() -> None:
    """A hidden unit is kept with probability keep and then scaled by 1 / keep, as nn.Dropout
    does (the scale is the next matmul's alpha; here it is written out)."""
    torch.manual_seed(0)
    config = ModelConfig(kind="mlp", hidden=[8, 5], dropout=0.3)
    models = [build_model(config, n_features=6, n_outputs=1).double() for _ in range(2)]
    stacked = StackedMLP(models, CPU, seeds=[0, 1])
    x = torch.randn(2, 16, 6, dtype=torch.float64)
    stacked.streams = dropout_streams([0, 1], CPU)
    got = stacked.forward(x, stacked.work_layers, [])
    stacked.streams = dropout_streams([0, 1], CPU)
    (w0, b0), (w1, b1), (w2, b2) = stacked.work_layers
    keep = keep_rate(0.3)
    h = (x @ w0 + b0).relu() * dropout_masks(stacked.streams, (16, 8), 0.3, x.dtype) / keep
    h = (h @ w1 + b1).relu() * dropout_masks(stacked.streams, (16, 5), 0.3, x.dtype) / keep
    torch.testing.assert_close(got, h @ w2 + b2, rtol=1e-12, atol=1e-14)


def test_float16_is_refused() -> None:
    members = _members(1, [(2.0, None, 0), (2.0, None, 1)])
    config = TrainConfig(epochs=1, batch_size=32)
    with pytest.raises(ValueError, match="float16"):
        fit_stacked(
            members, _data(), n_classes=2, minority=1, config=config, device=CPU,
            autocast=torch.float16,
        )  # fmt: skip


def _cnn() -> torch.nn.Module:
    cnn = ModelConfig(kind="cnn", channels=[2, 3], dropout=0.0)
    return build_model(cnn, n_features=16, n_outputs=1, image_shape=(1, 4, 4))


def _batch_norm() -> torch.nn.Module:  # a plugin model with buffers updated in training
    nn = torch.nn
    return nn.Sequential(nn.Linear(16, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 1))


def test_vmapped_members_train_as_they_would_alone() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 16, generator=g, dtype=torch.float64)
    y = (x[:, :4].sum(1) > 0.5).long()
    data = (x[:80], y[:80], x[80:], y[80:])
    config = TrainConfig(epochs=4, batch_size=16, lr=0.01, patience=1, min_epochs=2)
    members = []
    for gamma, alpha, seed in [(0.0, None, 0), (2.0, 0.25, 1), (1.0, 0.75, 2)]:
        torch.manual_seed(seed)
        members.append(Member(_cnn().double(), gamma, alpha, seed))
    assert not stackable(members[0].model) and vmappable(members[0].model, 16)
    alone = [_alone(m, data, config, 2) for m in members]
    together = fit_stacked(members, data, n_classes=2, minority=1, config=config, device=CPU)
    for member, (model, result), stacked in zip(members, alone, together, strict=True):
        assert (stacked.best_epoch, stacked.stop_reason) == (result.best_epoch, result.stop_reason)
        assert stacked.train_loss == pytest.approx(result.train_loss, rel=1e-10)
        for name, tensor in model.state_dict().items():  # parameters and running statistics
            torch.testing.assert_close(
                member.model.state_dict()[name], tensor, rtol=1e-10, atol=1e-12
            )


def test_vmapped_batch_norm_keeps_each_members_statistics_and_gradients() -> None:
    """Not compared over a whole training: a bias before batch norm has a gradient of rounding
    size, whose sign Adam's first steps turn into full steps, alone as much as stacked."""
    torch.manual_seed(0)
    models = [_batch_norm().double() for _ in range(2)]
    stack = VmappedModels([copy.deepcopy(m) for m in models], CPU)
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    stack.base.train()
    logits = torch.func.vmap(stack._call, randomness="different")(stack.params, stack.buffers, x)
    grads = torch.autograd.grad(logits.square().sum(), list(stack.params.values()))
    for k, model in enumerate(models):
        model(x[k]).square().sum().backward()
        for param, grad in zip(model.parameters(), grads, strict=True):
            torch.testing.assert_close(grad[k], param.grad, rtol=1e-12, atol=1e-14)
        for name, buffer in model.named_buffers():  # running mean, variance, count
            torch.testing.assert_close(stack.buffers[name][k], buffer)


class _DataDependent(torch.nn.Module):
    """Control flow on a tensor's value: vmap cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) if x.sum().item() > 0 else -self.linear(x)


def test_what_vmap_cannot_batch_trains_one_at_a_time() -> None:
    model = _DataDependent()
    before = copy.deepcopy(model.state_dict())
    assert not stackable(model) and not vmappable(model, 4)
    for name, tensor in model.state_dict().items():  # the probe ran on copies
        torch.testing.assert_close(tensor, before[name])


def test_auto_parallel_counts_activations_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    free = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 2 * free))
    cuda = torch.device("cuda")
    cnn = build_model(
        ModelConfig(kind="cnn", channels=[16, 32]),
        n_features=64,
        n_outputs=1,
        image_shape=(1, 8, 8),
    )
    n_parameters = sum(p.numel() for p in cnn.parameters())
    chosen = choose_parallel("auto", model=cnn, n_features=64, batch_size=256, device=cuda)
    by_parameters = free // 2 // (16 * n_parameters)
    assert 1 <= chosen < by_parameters / 4  # the CNN's feature maps dominate its memory
    assert choose_parallel(3, model=cnn, n_features=64, batch_size=256, device=cuda) == 3
    cpu = torch.device("cpu")
    assert choose_parallel("auto", model=cnn, n_features=64, batch_size=256, device=cpu) == 16


@pytest.mark.parametrize("neighbour", ["flsd53", "per_class"], ids=["schedule", "per-class-gamma"])
def test_a_member_trains_the_same_beside_an_adaptive_or_per_class_member(neighbour: str) -> None:
    """float32, where a vectorized and a one-by-one loss round differently: a fixed-gamma
    member's path must not depend on the loss of the member beside it."""
    from gammatune.loss import GammaSchedule

    data = tuple(t.float() if t.is_floating_point() else t for t in _data(2))
    config = TrainConfig(epochs=6, batch_size=32, lr=0.01, patience=20, min_epochs=1)
    alone = _members(1, [(2.0, 0.25, 1)])
    pair = _members(1, [(2.0, 0.25, 1), (0.0, None, 3)])
    other = GammaSchedule("flsd53") if neighbour == "flsd53" else (1.0, 2.5)
    pair[1] = replace(pair[1], gamma=other)
    for m in alone + pair:
        m.model.float()
    (expected,) = fit_stacked(alone, data, n_classes=2, minority=1, config=config, device=CPU)
    found = fit_stacked(pair, data, n_classes=2, minority=1, config=config, device=CPU)
    assert found[0].train_loss == expected.train_loss
    assert found[0].val_monitor == expected.val_monitor


def _stopping_group(dropout: float) -> list[Member]:
    """Six members that stop apart: a NaN weight (failure at epoch 1), pruned after epochs 3
    and 6, the others by early stopping or at the last epoch."""
    settings = [(0.0, None, 0), (0.5, 0.25, 1), (2.0, 0.75, 2), (1.0, None, 3), (2.0, None, 4)]
    members = [
        _dropout_member(g, a, s) if dropout else _members(1, [(g, a, s)])[0]
        for g, a, s in [*settings, (0.5, 0.5, 5)]
    ]
    members[1] = replace(members[1], report=lambda event: event.epoch >= 3)
    members[4] = replace(members[4], report=lambda event: event.epoch >= 6)
    with torch.no_grad():
        members[2].model[0].weight[0, 0] = math.nan
    return members


def _stack_sizes(monkeypatch: pytest.MonkeyPatch, engine: type) -> list[int]:
    """Record the number of members of every training step (the real step runs)."""
    sizes: list[int] = []
    step = engine.step

    def counting(
        self: object, inputs: torch.Tensor, targets: torch.Tensor, loss_fn
    ) -> torch.Tensor:
        sizes.append(inputs.shape[0])
        return step(self, inputs, targets, loss_fn)

    monkeypatch.setattr(engine, "step", counting)
    return sizes


STOPPING = TrainConfig(epochs=12, batch_size=32, lr=0.01, patience=2, min_epochs=3)


def test_stopped_members_leave_the_stack_and_the_others_train_as_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _data()
    members = _stopping_group(dropout=0.0)
    alone = [_alone(m, data, STOPPING, 2) for m in members]
    sizes = _stack_sizes(monkeypatch, StackedMLP)
    together = fit_stacked(members, data, n_classes=2, minority=1, config=STOPPING, device=CPU)
    stops = [(r.epochs_run, r.stop_reason) for r in together]
    assert stops[1:3] == [(3, "pruned"), (0, "non_finite_loss")]
    assert stops[4] == (6, "pruned") and "early_stopping" in {reason for _, reason in stops}
    for member, (model, result), found in zip(members, alone, together, strict=True):
        assert (found.epochs_run, found.best_epoch, found.stop_reason, found.failure) == (
            result.epochs_run, result.best_epoch, result.stop_reason, result.failure,
        )  # fmt: skip
        assert found.train_loss == pytest.approx(result.train_loss, rel=1e-10)
        assert found.val_monitor == pytest.approx(result.val_monitor, rel=1e-10)
        for got, expected in zip(member.model.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12, equal_nan=True)
    # 7 steps an epoch; after an epoch in which members stopped, the others step without them.
    assert len(sizes) == 7 * 12 and sizes[::7] == [6, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 2]


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_compaction_changes_no_result(dropout: float) -> None:
    """Compacted or not (``compact_below=0``: stopped members compute on), each member trains
    the same, its dropout masks included: only float64 rounding differs (torch's elementwise
    kernels round an element in a vector's lanes and in a loop's scalar tail differently, and
    where a member's elements fall depends on the stack's size, compacted or not). With
    dropout, each member also equals its stack of one: its masks come from its own stream."""
    data = _data()
    runs = {}
    for compact_below in (1.0, 0.5, 0.0):
        members = _stopping_group(dropout)
        results = fit_stacked(
            members, data, n_classes=2, minority=1, config=STOPPING, device=CPU,
            compact_below=compact_below,
        )  # fmt: skip
        runs[compact_below] = (results, [list(m.model.parameters()) for m in members])
    runs["one"] = ([], [])
    for member in _stopping_group(dropout) if dropout else []:
        (one,) = fit_stacked([member], data, n_classes=2, minority=1, config=STOPPING, device=CPU)
        runs["one"][0].append(one)
        runs["one"][1].append(list(member.model.parameters()))
    for compared in (1.0, 0.5, "one") if dropout else (1.0, 0.5):
        for found, expected in zip(runs[compared][0], runs[0.0][0], strict=True):
            assert (found.epochs_run, found.best_epoch, found.stop_reason, found.failure) == (
                expected.epochs_run, expected.best_epoch, expected.stop_reason, expected.failure,
            )  # fmt: skip
            for curve in ("train_loss", "val_loss", "val_monitor"):
                assert getattr(found, curve) == pytest.approx(getattr(expected, curve), rel=1e-12)
        for got, expected in zip(runs[compared][1], runs[0.0][1], strict=True):
            for p, q in zip(got, expected, strict=True):
                torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_vmapped_members_leave_the_stack_as_they_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 16, generator=g, dtype=torch.float64)
    y = (x[:, :4].sum(1) > 0.5).long()
    data = (x[:80], y[:80], x[80:], y[80:])
    config = TrainConfig(epochs=5, batch_size=16, lr=0.01, patience=10, min_epochs=1)
    members = []
    for gamma, alpha, seed, stop in [(0.0, None, 0, 2), (2.0, 0.25, 1, 9), (1.0, 0.75, 2, 4)]:
        torch.manual_seed(seed)
        prune = lambda event, stop=stop: event.epoch >= stop  # noqa: E731
        members.append(Member(_cnn().double(), gamma, alpha, seed, prune))
    alone = [_alone(m, data, config, 2) for m in members]
    sizes = _stack_sizes(monkeypatch, VmappedModels)
    together = fit_stacked(members, data, n_classes=2, minority=1, config=config, device=CPU)
    assert [r.epochs_run for r in together] == [2, 5, 4]
    assert sizes[::5] == [3, 3, 2, 2, 1]  # five steps an epoch
    for member, (model, result), found in zip(members, alone, together, strict=True):
        assert (found.best_epoch, found.stop_reason) == (result.best_epoch, result.stop_reason)
        assert found.train_loss == pytest.approx(result.train_loss, rel=1e-10)
        for name, tensor in model.state_dict().items():  # parameters and running statistics
            torch.testing.assert_close(
                member.model.state_dict()[name], tensor, rtol=1e-10, atol=1e-12
            )


def _moments(stack: StackedMLP | VmappedModels) -> list[torch.Tensor]:
    """AdamW's two moments, as ``(K, ...)`` tensors."""
    if isinstance(stack, VmappedModels):
        return [m for o in stack.optimizers for m in (o.exp_avg, o.exp_avg_sq)]
    flats = (stack.optimizer.exp_avg, stack.optimizer.exp_avg_sq)
    return [t for flat in flats for pair in stack.layers(flat) for t in pair]


@pytest.mark.parametrize("engine", [StackedMLP, VmappedModels])
def test_compact_takes_each_kept_members_weights_and_optimizer_state(engine: type) -> None:
    """Batch norm's running statistics too; the compacted stack steps on."""
    torch.manual_seed(0)
    mlp = ModelConfig(kind="mlp", hidden=[8, 8], dropout=0.1)
    vmapped = engine is VmappedModels
    models = [
        _batch_norm().double()
        if vmapped
        else build_model(mlp, n_features=16, n_outputs=1).double()
        for _ in range(4)
    ]
    stack = engine(models, CPU, lr=0.01, seeds=range(4))
    loss = lambda logits, _: logits.square().mean(dim=(1, 2))  # noqa: E731
    for _ in range(3):
        stack.step(torch.randn(4, 8, 16, dtype=torch.float64), torch.zeros(4, 8), loss)
    states = [stack.member_state(k) for k in range(4)]
    moments = [m.clone() for m in _moments(stack)]
    stack.compact([3, 1])
    assert stack.k == 2
    for row, k in enumerate([3, 1]):
        for name, tensor in stack.member_state(row).items():
            assert torch.equal(tensor, states[k][name]), name
    for found, before in zip(_moments(stack), moments, strict=True):
        assert torch.equal(found, before[[3, 1]])
    stack.step(torch.randn(2, 8, 16, dtype=torch.float64), torch.zeros(2, 8), loss)
    assert all(torch.isfinite(t).all() for t in stack.member_state(1).values())
