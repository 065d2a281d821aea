"""The focal-loss kernel: identities with torch's losses, stability, tails, dtypes, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gammatune.errors import ConfigError
from gammatune.loss import _compiled as fused
from gammatune.loss._kernel import FocalLoss, focal_loss
from gammatune.loss._schedules import GammaSchedule

REDUCTIONS = ["none", "mean", "sum"]


def _textbook_binary(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha
) -> torch.Tensor:
    """torchvision's form, the reference the kernel must agree with where that form is finite."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def _exact_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(-margin)): torch's own BCE loses digits past a margin of ~17."""
    margin = (2 * targets - 1) * logits
    return torch.logaddexp(torch.zeros_like(margin), -margin)


def _grad(loss_fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    value = loss_fn(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(257,), (64, 1)])
def test_gamma_zero_is_bce_in_value_and_gradient(reduction: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64) * 6
    y = (torch.rand(shape, dtype=torch.float64) < 0.3).double()
    ours = _grad(lambda v: focal_loss(v, y, gamma=0.0, reduction=reduction), x)
    ref = _grad(lambda v: F.binary_cross_entropy_with_logits(v, y, reduction=reduction), x)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gamma_zero_is_cross_entropy_with_ignore_index(reduction: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(90, 7, dtype=torch.float64) * 4
    t = torch.randint(0, 7, (90,))
    t[::9] = -100
    ours = _grad(lambda v: focal_loss(v, t, gamma=0.0, mode="multiclass", reduction=reduction), x)
    ref = _grad(lambda v: F.cross_entropy(v, t, reduction=reduction), x)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    assert torch.all(ours[1][::9] == 0)  # ignored rows: exactly zero gradient


def test_gamma_zero_is_bce_for_multilabel() -> None:
    torch.manual_seed(2)
    x = torch.randn(40, 5, dtype=torch.float64) * 3
    y = (torch.rand(40, 5) < 0.2).double()
    ours = _grad(lambda v: focal_loss(v, y, gamma=0.0, mode="multilabel"), x)
    ref = _grad(lambda v: F.binary_cross_entropy_with_logits(v, y), x)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
@pytest.mark.parametrize("scale", [0.1, 3.0, 15.0])
def test_ratio_to_bce_is_alpha_t_times_focal_factor(gamma, alpha, scale) -> None:
    torch.manual_seed(3)
    x = torch.randn(500, dtype=torch.float64) * scale
    y = (torch.rand(500) < 0.5).double()
    margin = (2 * y - 1) * x
    one_minus_p_t = torch.sigmoid(-margin)  # not 1 - p_t, which rounds to 0 in the tails
    alpha_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    bce = _exact_bce(x, y)
    ratio = focal_loss(x, y, gamma=gamma, alpha=alpha, reduction="none") / bce
    torch.testing.assert_close(ratio, alpha_t * one_minus_p_t**gamma, rtol=1e-9, atol=1e-300)


def test_agrees_with_textbook_where_textbook_is_finite() -> None:
    torch.manual_seed(4)
    x = torch.randn(2000, dtype=torch.float64) * 4
    y = (torch.rand(2000) < 0.1).double()
    ours = _grad(lambda v: focal_loss(v, y, gamma=1.5, alpha=0.75, reduction="mean"), x)
    ref = _grad(lambda v: _textbook_binary(v, y, 1.5, 0.75).mean(), x)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-14)


def test_gradcheck_every_mode() -> None:
    torch.manual_seed(5)
    xb = torch.randn(12, dtype=torch.float64, requires_grad=True)
    yb = (torch.rand(12) < 0.5).double()
    xm = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    tm = torch.randint(0, 4, (8,))
    ym = (torch.rand(8, 4) < 0.5).double()
    assert torch.autograd.gradcheck(
        lambda v: focal_loss(v, yb, gamma=0.7, alpha=0.3, reduction="none"), (xb,)
    )
    assert torch.autograd.gradcheck(
        lambda v: focal_loss(
            v, tm, gamma=[0.5, 1, 2, 3], alpha=[0.1, 0.2, 0.3, 0.4], mode="multiclass"
        ),
        (xm,),
    )
    assert torch.autograd.gradcheck(
        lambda v: focal_loss(v, ym, gamma=2.0, alpha=[0.2, 0.4, 0.6, 0.8], mode="multilabel"),
        (xm,),
    )


@settings(deadline=None, max_examples=60)
@given(
    logit=st.floats(-1e4, 1e4),
    target=st.sampled_from([0.0, 1.0]),
    gamma=st.floats(0, 20),
    mode=st.sampled_from(["binary", "multiclass"]),
)
def test_loss_and_gradient_finite_everywhere(logit, target, gamma, mode) -> None:
    if mode == "binary":
        x = torch.tensor([logit, -logit, 0.0], requires_grad=True)
        loss = focal_loss(x, torch.tensor([target, target, target]), gamma=gamma)
    else:
        x = torch.tensor([[logit, 0.0, -logit]], requires_grad=True)
        loss = focal_loss(x, torch.tensor([int(target)]), gamma=gamma, mode="multiclass")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_textbook_form_is_nan_where_kernel_is_finite() -> None:
    """The bug this kernel exists to avoid: 0 < gamma < 1 at a confident prediction."""
    x = torch.tensor([40.0], requires_grad=True)
    _textbook_binary(x, torch.ones(1), 0.5, None).sum().backward()
    assert torch.isnan(x.grad).all()
    x.grad = None
    focal_loss(x, torch.ones(1), gamma=0.5).backward()
    assert torch.isfinite(x.grad).all()


@settings(deadline=None, max_examples=60)
@given(
    logit=st.floats(-60, 60),
    target=st.sampled_from([0.0, 1.0]),
    gamma_low=st.floats(0, 10),
    gamma_step=st.floats(0, 10),
    alpha=st.one_of(st.none(), st.floats(0, 1)),
)
def test_monotone_in_gamma_and_below_bce(logit, target, gamma_low, gamma_step, alpha) -> None:
    x = torch.tensor([logit], dtype=torch.float64)
    y = torch.tensor([target], dtype=torch.float64)
    low = focal_loss(x, y, gamma=gamma_low, alpha=alpha)
    high = focal_loss(x, y, gamma=gamma_low + gamma_step, alpha=alpha)
    bce = _exact_bce(x, y)
    assert high <= low <= bce * (1 + 1e-12)  # equal at gamma 0, up to rounding


@pytest.mark.parametrize(("logit", "gamma"), [(10.0, 2.0), (20.0, 2.0), (25.0, 2.0), (50.0, 0.5)])
def test_confident_correct_keeps_its_tail_in_float32(logit: float, gamma: float) -> None:
    """Where the textbook form rounds 1 - p_t to 0, the loss stays at its fp64 value."""
    # fp64 closed form: softplus(-z) * exp(-gamma * softplus(z))
    softplus_neg = math.log1p(math.exp(-logit))
    direct = softplus_neg * math.exp(-gamma * (logit + softplus_neg))
    x64 = torch.tensor([logit], dtype=torch.float64)
    assert focal_loss(x64, torch.ones(1, dtype=torch.float64), gamma=gamma).item() == (
        pytest.approx(direct, rel=1e-12)
    )
    got = focal_loss(torch.tensor([logit]), torch.ones(1), gamma=gamma)
    assert got.item() == pytest.approx(direct, rel=1e-5)
    if logit >= 20:
        assert _textbook_binary(torch.tensor([logit]), torch.ones(1), gamma, None).item() == 0.0


def test_multiclass_tail_is_positive_where_cross_entropy_rounds_to_zero() -> None:
    x = torch.tensor([[30.0, 0.0, 0.0]])
    assert F.cross_entropy(x, torch.tensor([0])).item() == 0.0
    got = focal_loss(x, torch.tensor([0]), gamma=0.0, mode="multiclass").item()
    assert got == pytest.approx(2 * math.exp(-30.0), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_and_reduce_in_float32(dtype: torch.dtype) -> None:
    torch.manual_seed(6)
    x = torch.randn(4096) * 4
    y = (torch.rand(4096) < 0.2).float()
    reference = focal_loss(x.to(dtype).float(), y, gamma=2.0, alpha=0.75)
    half = x.to(dtype).requires_grad_()
    got = focal_loss(half, y, gamma=2.0, alpha=0.75)
    got.backward()
    assert got.dtype == torch.float32
    assert half.grad.dtype == dtype
    torch.testing.assert_close(got, reference, rtol=1e-6, atol=0)


def test_float64_stays_float64() -> None:
    x = torch.randn(5, dtype=torch.float64)
    assert focal_loss(x, torch.ones(5, dtype=torch.float64)).dtype == torch.float64


def test_per_class_alpha_and_gamma_match_a_loop() -> None:
    torch.manual_seed(7)
    x = torch.randn(30, 4, dtype=torch.float64) * 3
    t = torch.randint(0, 4, (30,))
    gamma, alpha = [0.0, 0.5, 2.0, 4.0], [0.1, 0.2, 0.3, 0.4]
    got = focal_loss(x, t, gamma=gamma, alpha=alpha, mode="multiclass", reduction="none")
    for i in range(30):
        p = torch.softmax(x[i], 0)[t[i]]
        c = int(t[i])
        assert got[i].item() == pytest.approx(
            (-alpha[c] * (1 - p) ** gamma[c] * torch.log(p)).item(), rel=1e-10
        )


def test_binary_pairs_weight_negatives_then_positives() -> None:
    x = torch.tensor([1.0, -2.0, 0.3, 0.7], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    got = focal_loss(x, y, gamma=[1.0, 3.0], alpha=[0.2, 0.8], reduction="none")
    for i in range(4):
        positive = y[i] > 0
        p_t = torch.sigmoid(x[i] if positive else -x[i])
        g, a = (3.0, 0.8) if positive else (1.0, 0.2)
        assert got[i].item() == pytest.approx((-a * (1 - p_t) ** g * torch.log(p_t)).item())


def test_multilabel_per_class_alpha_weights_positives() -> None:
    x = torch.zeros(1, 2, dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    got = focal_loss(x, y, gamma=0.0, alpha=[0.9, 0.9], mode="multilabel", reduction="none")
    torch.testing.assert_close(got, torch.tensor([[0.9, 0.1]], dtype=torch.float64) * math.log(2))


def test_stacked_members_match_separate_calls() -> None:
    """A (K, 1) gamma and a per-element alpha_t train K models in one call."""
    torch.manual_seed(8)
    x = torch.randn(3, 50, dtype=torch.float64)
    y = (torch.rand(3, 50) < 0.3).double()
    gammas = torch.tensor([[0.0], [0.5], [2.0]], dtype=torch.float64)
    alpha_t = torch.where(y > 0, 0.75, 0.25)
    stacked = focal_loss(x, y, gamma=gammas, alpha=alpha_t, reduction="none").mean(dim=1)
    for k in range(3):
        alone = focal_loss(x[k], y[k], gamma=float(gammas[k]), alpha=0.75)
        assert stacked[k].item() == pytest.approx(alone.item(), rel=1e-12)


def test_flsd53_schedule_uses_5_below_p_02_and_3_above() -> None:
    x = torch.tensor([-2.0, 2.0], dtype=torch.float64)  # p_t = 0.12 and 0.88 for positives
    y = torch.ones(2, dtype=torch.float64)
    got = focal_loss(x, y, gamma=GammaSchedule("flsd53"), reduction="none")
    expected = torch.stack(
        [
            focal_loss(x[:1], y[:1], gamma=5.0, reduction="none"),
            focal_loss(x[1:], y[1:], gamma=3.0, reduction="none"),
        ]
    ).flatten()
    torch.testing.assert_close(got, expected)


def test_confidence_schedule_is_clamped_k_logit_and_constant_for_the_gradient() -> None:
    schedule = GammaSchedule("confidence", k=2.0, min_gamma=0.0, max_gamma=3.0)
    x = torch.tensor([-1.0, 0.5, 4.0], dtype=torch.float64)
    y = torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(schedule(x), torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64))
    ours = _grad(lambda v: focal_loss(v, y, gamma=schedule, reduction="none"), x)
    fixed_gamma = torch.tensor([[0.0, 1.0, 3.0]], dtype=torch.float64)  # per element, constant
    fixed = _grad(lambda v: focal_loss(v, y[None], gamma=fixed_gamma, reduction="none"), x[None])
    torch.testing.assert_close(ours[0], fixed[0][0])
    torch.testing.assert_close(ours[1], fixed[1][0])


def test_empty_and_all_ignored_give_zero_not_nan() -> None:
    assert focal_loss(torch.zeros(0), torch.zeros(0)).item() == 0.0
    x = torch.zeros(3, 4, requires_grad=True)
    loss = focal_loss(x, torch.full((3,), -100), mode="multiclass")
    loss.backward()
    assert loss.item() == 0.0 and torch.all(x.grad == 0)


def test_module_matches_function() -> None:
    x = torch.randn(10)
    y = (torch.rand(10) < 0.5).float()
    module = FocalLoss(gamma=1.0, alpha=0.6, reduction="sum")
    assert module(x, y).item() == focal_loss(x, y, gamma=1.0, alpha=0.6, reduction="sum").item()


def test_compiles_without_graph_breaks() -> None:
    compiled = torch.compile(
        lambda x, y: focal_loss(x, y, gamma=0.5, alpha=0.25), backend="aot_eager", fullgraph=True
    )
    x = torch.randn(64, requires_grad=True)
    y = (torch.rand(64) < 0.5).float()
    loss = compiled(x, y)
    loss.backward()
    assert loss.item() == pytest.approx(focal_loss(x, y, gamma=0.5, alpha=0.25).item(), rel=1e-6)
    multiclass = torch.compile(
        lambda x, t: focal_loss(x, t, gamma=2.0, mode="multiclass"),
        backend="aot_eager",
        fullgraph=True,
    )
    assert torch.isfinite(multiclass(torch.randn(8, 3), torch.tensor([0, 1, 2, -100] * 2)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gamma": -1.0}, "gamma must be a finite number >= 0; got -1.0"),
        ({"gamma": float("nan")}, "gamma must be a finite number >= 0; got nan"),
        ({"gamma": [1.0, -0.5]}, "got -0.5"),
        ({"alpha": 1.5}, "alpha must be in [0, 1] or None; got 1.5"),
        ({"alpha": -1}, "got -1"),
        ({"reduction": "avg"}, "reduction must be one of ('none', 'mean', 'sum'); got 'avg'"),
        ({"mode": "softmax"}, "mode must be one of"),
        ({"gamma": [1.0, 2.0, 3.0]}, "per-class gamma must have length 2; got shape (3,)"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        focal_loss(torch.zeros(4), torch.zeros(4), **kwargs)
    assert message in str(info.value)


def test_bad_shapes_and_multiclass_scalar_alpha_are_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"targets must have the logits' shape \(4,\); got \(3,\)"
    ):
        focal_loss(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="multiclass alpha must be a per-class vector"):
        focal_loss(
            torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), alpha=0.5, mode="multiclass"
        )
    with pytest.raises(ValueError, match="per-class alpha must have length 3; got shape"):
        focal_loss(
            torch.zeros(2, 3),
            torch.zeros(2, dtype=torch.long),
            alpha=[0.5, 0.5],
            mode="multiclass",
        )
    with pytest.raises(ValueError, match="gamma must be"):
        FocalLoss(gamma=-2.0)


def test_multiclass_wrong_tail_is_exact() -> None:
    """A confidently wrong prediction costs its full margin, not a capped value."""
    x = torch.tensor([[-200.0, 0.0, 0.0]])
    got = focal_loss(x, torch.tensor([0]), gamma=2.0, mode="multiclass").item()
    assert got == pytest.approx(200.0 + math.log(2.0), rel=1e-6)


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_compiled_pass_equals_the_eager_kernel(mode: str) -> None:
    g = torch.Generator().manual_seed(0)
    shape = (300,) if mode == "binary" else (100, 3)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 6
    logits.view(-1)[:5] = torch.tensor([40.0, -40.0, 80.0, 0.0, -3.0], dtype=torch.float64)
    targets = (torch.rand(shape, generator=g) < 0.3).double()
    for gamma, alpha, reduction in [(0.0, None, "mean"), (0.5, 0.25, "sum"), (2.0, 0.75, "none")]:
        results = []
        for compile in (False, True):
            x = logits.clone().requires_grad_()
            loss = focal_loss(
                x, targets, gamma=gamma, alpha=alpha, mode=mode, reduction=reduction,
                compile=compile,
            )  # fmt: skip
            loss.backward(torch.ones_like(loss))
            results.append((loss.detach(), x.grad))
        (eager_loss, eager_grad), (fused_loss, fused_grad) = results
        torch.testing.assert_close(fused_loss, eager_loss, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(fused_grad, eager_grad, rtol=1e-12, atol=1e-15)
        # The compiled pass ran (rather than falling back to the eager kernel unseen).
        direct = fused.fused_sigmoid_focal(logits, targets, gamma, alpha, reduction, compile=True)
        assert direct is not None and not fused._failed
        torch.testing.assert_close(direct, eager_loss, rtol=1e-12, atol=1e-15)


def test_a_compiler_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_compiled", {True: broken, False: broken})
    monkeypatch.setattr(fused, "_failed", set())
    monkeypatch.setattr(fused, "_working", set())  # a process where nothing compiled yet
    logits, targets = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    expected = focal_loss(logits, targets, gamma=2.0, compile=False)
    assert focal_loss(logits, targets, gamma=2.0, compile=True) == expected
    assert fused._failed == {"cpu"}  # found out once, not tried again


def test_soft_dice_against_a_hand_computation() -> None:
    from gammatune.loss import dice_loss

    # one image, 2 classes, 4 pixels: class 1 probabilities p, mask t
    p1 = torch.tensor([0.9, 0.2, 0.6, 0.1], dtype=torch.float64)
    logits = torch.stack([torch.zeros(4, dtype=torch.float64), torch.log(p1 / (1 - p1))])
    targets = torch.tensor([[1, 0, 1, 0]])
    expected = 1 - (2 * (0.9 + 0.6) + 1e-5) / (p1.sum() + 2 + 1e-5)
    got = dice_loss(logits[None, :, None], targets[:, None], mode="multiclass")
    assert float(got) == pytest.approx(float(expected))
    binary = dice_loss(torch.log(p1 / (1 - p1))[None], targets.double(), mode="binary")
    assert float(binary) == pytest.approx(float(expected))


def test_soft_dice_penalizes_false_positives_on_empty_images_and_has_gradients() -> None:
    from gammatune.loss import DiceLoss

    loss = DiceLoss(mode="multiclass")
    empty = torch.zeros(1, 4, 4, dtype=torch.long)
    quiet = torch.full((1, 3, 4, 4), -20.0)
    quiet[:, 0] = 20.0
    loud = quiet.clone()
    loud[:, 2, 0, 0], loud[:, 0, 0, 0] = 20.0, -20.0
    assert float(loss(quiet, empty)) < 1e-3  # nothing to find, nothing predicted: no loss
    assert float(loss(loud, empty)) == pytest.approx(0.5, abs=1e-3)  # one class of two wrong
    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    loss(logits, torch.randint(0, 3, (2, 5, 5))).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ConfigError, match="must be \\(N, C, \\*spatial\\)"):
        loss(torch.zeros(2, 3, 5), torch.zeros(2, 4, 4, dtype=torch.long))
