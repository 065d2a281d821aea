"""K models of one architecture trained as one: the same trainings, at a fraction of the cost.

Two engines with one interface (``k``, ``input_dtype``, ``step``, ``logits``, ``member_state``,
``unstack_into``, ``compact``), used by :func:`gammatune.training.fit_stacked`:

- :class:`StackedMLP` for the built-in linear and MLP models: parameters in one flat buffer,
  batched matmuls and a written-out backward pass;
- :class:`VmappedModels` for any other architecture that ``torch.func.vmap`` can batch (the CNN,
  most plugin models): parameters stacked ``(K, ...)``, one vmapped forward, autograd's backward.

AdamW is elementwise, so each member trains as it would alone (up to floating-point rounding).
A StackedMLP member draws its dropout masks from a random stream of its own, seeded from its
seed, so with dropout too a trial trains the same in any stack. VmappedModels draws dropout from
one shared stream: models with dropout do not stack there (see ``vmappable``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from gammatune.training._adamw import FlatAdamW

StackedLoss = Callable[[Tensor, Tensor], Tensor]  # (K, B, out) logits, (K, B) labels -> (K,)


def stackable(model: nn.Module) -> bool:
    """True for ``nn.Linear`` and ``nn.Sequential`` of Linear/ReLU/Dropout ending in Linear."""
    if isinstance(model, nn.Linear):
        return True
    layers = list(model.children()) if isinstance(model, nn.Sequential) else []
    dropouts = {m.p for m in layers if isinstance(m, nn.Dropout)}
    return (
        bool(layers)
        and isinstance(layers[-1], nn.Linear)
        and all(isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)) for m in layers)
        and all(m.bias is not None for m in layers if isinstance(m, nn.Linear))
        and len(dropouts) <= 1  # one rate for every layer
    )


MaskStream = torch.Generator | np.random.SFC64


def dropout_streams(seeds: Sequence[int], device: torch.device) -> list[MaskStream]:
    """One random stream per member for its dropout masks, from its seed alone: on a CPU
    numpy's SFC64 (masks 1.4-1.6x faster than from torch's CPU generator, ``bench/dropout.py``),
    on other devices torch's generator there."""
    seeds = [(seed + 1) * 0x9E3779B1 % 2**63 for seed in seeds]
    if device.type == "cpu":
        return [np.random.SFC64(seed) for seed in seeds]
    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]


def dropout_masks(
    streams: list[MaskStream], shape: tuple[int, ...], p: float, dtype: torch.dtype
) -> Tensor:
    """Dropout's keep masks ``(K, *shape)`` in ``dtype``: 1 with probability ``keep_rate(p)``,
    else 0 (the ``1 / keep`` of inverted dropout goes into the next layer's matmul, for free).

    Each member's mask comes from its own stream: random 64-bit words seen as four 16-bit
    numbers each, compared with one threshold (so ``p`` is taken to the nearest multiple of
    2^-16); ``bench/dropout.py`` times it against ``bernoulli_`` on one shared stream.
    """
    n = math.prod(shape)
    words = _random_words(streams, (n + 3) // 4)
    uniform = words.view(torch.int16)[:, :n]  # uniform on [-2^15, 2^15)
    # The comparison writes the 0/1 mask in `dtype` itself (4.5x faster than ge then .to on an
    # AVX2 CPU, and than a torch.where).
    masks = torch.empty(uniform.shape, dtype=dtype, device=words.device)
    torch.ge(uniform, _cut(p) - 2**15, out=masks)
    return masks.view(len(streams), *shape)


def _random_words(streams: list[MaskStream], n: int) -> Tensor:
    """``(K, n)`` random int64 words, every bit random (the sign too), row k from stream k."""
    if isinstance(streams[0], torch.Generator):
        words = torch.empty(len(streams), n, dtype=torch.int64, device=streams[0].device)
        for row, generator in zip(words, streams, strict=True):
            row.random_(-(2**63), None, generator=generator)
        return words
    array = np.empty((len(streams), n), dtype=np.uint64)
    for row, bits in zip(array, streams, strict=True):
        row[:] = bits.random_raw(n)  # type: ignore[union-attr]
    return torch.from_numpy(array.view(np.int64))


def keep_rate(p: float) -> float:
    """The share of units that ``dropout_masks`` keeps for a dropout rate ``p``."""
    return 1 - _cut(p) / 2**16


def _cut(p: float) -> int:
    return min(round(p * 2**16), 2**16 - 1)  # a rate within 2^-17 of 1 keeps one in 2^16


def _layers(model: nn.Module) -> list[nn.Module]:
    return [model] if isinstance(model, nn.Linear) else list(model.children())


class StackedMLP:
    """K MLPs of one architecture, all their parameters in one flat buffer.

    Layer by layer, the buffer holds the weights ``(K, in, out)`` then the biases ``(K, 1, out)``,
    each contiguous: one cast gives every member's mixed-precision weights, one optimizer pass
    updates them all, and the backward pass writes its gradients straight into place. The
    training copy (``work``, in ``dtype``) and the gradient buffers are allocated once.
    """

    def __init__(
        self,
        models: list[nn.Module],
        device: torch.device,
        dtype: torch.dtype | None = None,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seeds: Sequence[int] | None = None,
    ) -> None:
        linear = [[m for m in _layers(model) if isinstance(m, nn.Linear)] for model in models]
        self.k = len(models)
        self.shapes = [(layer.in_features, layer.out_features) for layer in linear[0]]
        pieces = []
        for i in range(len(self.shapes)):
            pieces.append(torch.stack([ls[i].weight.detach().T for ls in linear]).reshape(-1))
            pieces.append(torch.stack([ls[i].bias.detach() for ls in linear]).reshape(-1))
        self.input_dtype = dtype or pieces[0].dtype  # inputs are cast once, gathered per batch
        self._allocate(torch.cat(pieces).to(device))
        dropouts = [m.p for m in _layers(models[0]) if isinstance(m, nn.Dropout)]
        self.dropout = dropouts[0] if dropouts else 0.0
        self.scale = 1 / keep_rate(self.dropout)  # inverted dropout's, in the matmuls after it
        self.streams = dropout_streams(seeds or range(self.k), device)
        self.optimizer = FlatAdamW(self.flat, lr=lr, weight_decay=weight_decay)

    def _allocate(self, flat: Tensor) -> None:
        """Hold ``flat`` as the master parameters, with a training copy and gradient buffers."""
        self.flat = flat
        same = self.input_dtype == flat.dtype
        self.work = flat if same else torch.empty_like(flat, dtype=self.input_dtype)
        self.grad = torch.empty_like(self.work)
        self.master_grad = self.grad if same else torch.empty_like(flat)
        self.master_layers, self.work_layers = self.layers(flat), self.layers(self.work)
        self.grad_layers = self.layers(self.grad)

    def compact(self, rows: Sequence[int]) -> None:
        """Keep only the members at ``rows`` (in that order), so that each step costs what they
        need: parameters, AdamW state and dropout streams are taken along, unchanged."""
        index = torch.tensor(rows, device=self.flat.device)

        def take(flat: Tensor) -> Tensor:  # the rows of every layer's weights and biases
            pieces = [
                t.index_select(0, index).reshape(-1) for pair in self.layers(flat) for t in pair
            ]
            return torch.cat(pieces)

        flat = take(self.flat)
        moments = take(self.optimizer.exp_avg), take(self.optimizer.exp_avg_sq)
        self.k, self.streams = len(rows), [self.streams[r] for r in rows]  # layers() reads k
        self._allocate(flat)
        self.optimizer.take(flat, *moments)

    def step(self, inputs: Tensor, targets: Tensor, loss_fn: StackedLoss) -> Tensor:
        """One optimizer step of every member on its batch ``(K, B, ...)``; their losses."""
        if self.work is not self.flat:
            self.work.copy_(self.flat)  # one cast for all members
        saved: list[Tensor] = []
        logits = self.forward(inputs, self.work_layers, saved).detach().requires_grad_()
        losses = loss_fn(logits, targets)  # (K,) members' means
        (grad,) = torch.autograd.grad(losses.sum(), logits)  # the sum trains each alone
        self.optimizer.step(self.backward(inputs, saved, grad))
        return losses.detach()

    @torch.no_grad()
    def logits(self, x: Tensor, budget: int = 2**19) -> Tensor:
        """Every member's logits ``(K, N, out)`` of a shared input, for validation.

        The hidden layers run in the training precision (on a CPU with bfloat16 units 2.5x
        faster than float32), the output layer on the float32 master weights, so scores do not
        tie as bfloat16 logits would. In chunks of ``budget`` activations (``K x rows x
        width``): they stay in cache (2x faster on a CPU than all rows at once), and a large
        validation set does not need K times its memory.
        """
        chunk = max(1, budget // (self.k * max(n_out for _, n_out in self.shapes)))
        if self.work is not self.flat:
            self.work.copy_(self.flat)
        layers = [*self.work_layers[:-1], self.master_layers[-1]]
        x = x.to(self.input_dtype)
        return torch.cat([self.forward(part, layers) for part in x.split(chunk)], dim=1)

    def layers(self, flat: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Views of a flat buffer (parameters or gradients) as ``(weight, bias)`` per layer."""
        views, offset = [], 0
        for n_in, n_out in self.shapes:
            weight = flat[offset : offset + self.k * n_in * n_out].view(self.k, n_in, n_out)
            offset += weight.numel()
            bias = flat[offset : offset + self.k * n_out].view(self.k, 1, n_out)
            offset += bias.numel()
            views.append((weight, bias))
        return views

    def forward(
        self, x: Tensor, layers: list[tuple[Tensor, Tensor]], saved: list[Tensor] | None = None
    ) -> Tensor:
        """Return logits ``(K, B, out)``; a shared ``(B, F)`` input goes to every member.

        With ``saved`` (training), dropout is on and the input of every layer after the first
        is appended for :meth:`backward`: the hidden units times their 0/1 keep masks; the
        ``1 / keep`` scale of inverted dropout is the next matmul's ``alpha``.
        """
        h = x.expand(self.k, -1, -1) if x.dim() == 2 else x  # 8x faster than matmul
        for index, (weight, bias) in enumerate(layers):
            alpha = self._alpha(index, saved is not None)
            h = torch.baddbmm(bias, h.to(weight.dtype), weight, alpha=alpha)  # mixed precisions
            if index == len(layers) - 1:
                break
            h = h.relu_()  # in place: the matmul keeps its inputs, not its output
            if saved is not None and self.dropout > 0:
                mask = dropout_masks(self.streams, h.shape[1:], self.dropout, h.dtype)
                # In place where autograd is not watching (training is written out).
                h = h * mask if h.requires_grad else h.mul_(mask)
            if saved is not None:
                saved.append(h)
        return h

    def _alpha(self, index: int, training: bool) -> float:
        """The scale of layer ``index``'s matmul: inverted dropout's after a dropped layer."""
        return self.scale if training and index > 0 and self.dropout > 0 else 1.0

    def backward(self, x: Tensor, saved: list[Tensor], grad: Tensor) -> Tensor:
        """Return the flat gradient (master precision) of every member's loss after a training
        :meth:`forward` on ``work_layers``, given ``d loss / d logits``.

        Written out rather than left to autograd: a third of the ops, none of its bookkeeping.
        One ``threshold_backward`` on a saved (ReLU, then dropout) output is both layers'
        backward: it is zero where either zeroed a unit; dropout's scale is the matmuls' alpha.
        """
        inputs = [x, *saved]
        grad = grad.to(self.work.dtype)
        for index in range(len(self.shapes) - 1, -1, -1):
            (weight, _), (grad_weight, grad_bias) = (
                self.work_layers[index],
                self.grad_layers[index],
            )
            alpha = self._alpha(index, training=True)
            transposed = inputs[index].transpose(1, 2)
            torch.baddbmm(grad_weight, transposed, grad, beta=0, alpha=alpha, out=grad_weight)
            torch.sum(grad, dim=1, keepdim=True, out=grad_bias)
            if index > 0:
                nothing = grad.new_zeros(())  # beta=0: only alpha * grad @ weight^T
                grad = torch.baddbmm(nothing, grad, weight.transpose(1, 2), beta=0, alpha=alpha)
                grad = torch.ops.aten.threshold_backward(grad, inputs[index], 0)
        return self.grad if self.master_grad is self.grad else self.master_grad.copy_(self.grad)

    def member_state(self, k: int) -> dict[str, Tensor]:
        """Return clones of member ``k``'s weights and biases, by linear layer."""
        return {
            f"{i}.{name}": t[k].clone()
            for i, pair in enumerate(self.master_layers)
            for name, t in zip(("weight", "bias"), pair, strict=True)
        }

    def unstack_into(self, k: int, state: dict[str, Tensor], model: nn.Module) -> None:
        """Copy a saved member state (from :meth:`member_state`) into the original model."""
        linear = [m for m in _layers(model) if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for i, layer in enumerate(linear):
                layer.weight.copy_(state[f"{i}.weight"].T)
                layer.bias.copy_(state[f"{i}.bias"][0])


class VmappedModels:
    """K models of any one architecture that ``torch.func.vmap`` can batch (see :func:`vmappable`).

    Their parameters and buffers are stacked ``(K, ...)``; a step is one vmapped forward (under
    autocast for mixed precision, dropout drawn per member) and autograd's backward. Validation
    runs in full precision.
    """

    def __init__(
        self,
        models: list[nn.Module],
        device: torch.device,
        dtype: torch.dtype | None = None,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seeds: Sequence[int] | None = None,  # no streams to seed: models with dropout
    ) -> None:  # train one at a time (see vmappable)
        from torch.func import stack_module_state

        self.k, self.device, self.autocast = len(models), device, dtype
        params, self.buffers = stack_module_state([m.to(device) for m in models])
        self.params = {name: p.detach().requires_grad_() for name, p in params.items()}
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture, without weights
        self.input_dtype = next(iter(self.params.values())).dtype
        self.optimizers = [
            FlatAdamW(p.detach(), lr=lr, weight_decay=weight_decay) for p in self.params.values()
        ]

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        from torch.func import functional_call

        return functional_call(self.base, (params, buffers), (x,))

    def step(self, inputs: Tensor, targets: Tensor, loss_fn: StackedLoss) -> Tensor:
        """One optimizer step of every member on its batch ``(K, B, ...)``; their losses."""
        from torch.func import vmap

        self.base.train()
        with torch.autocast(
            self.device.type, dtype=self.autocast or torch.float32, enabled=bool(self.autocast)
        ):
            logits = vmap(self._call, randomness="different")(self.params, self.buffers, inputs)
        losses = loss_fn(logits, targets)
        grads = torch.autograd.grad(losses.sum(), list(self.params.values()))
        for optimizer, grad in zip(self.optimizers, grads, strict=True):
            optimizer.step(grad)
        return losses.detach()

    @torch.no_grad()
    def logits(self, x: Tensor, rows: int = 4096) -> Tensor:
        """Every member's logits ``(K, N, out)`` of a shared input, in full precision."""
        from torch.func import vmap

        self.base.eval()
        call = vmap(self._call, in_dims=(0, 0, None))
        return torch.cat([call(self.params, self.buffers, p) for p in x.split(rows)], dim=1)

    def compact(self, rows: Sequence[int]) -> None:
        """Keep only the members at ``rows`` (in that order): parameters, buffers and AdamW
        state are taken along, unchanged."""
        index = torch.tensor(rows, device=self.device)
        self.k = len(rows)
        self.buffers = {name: b.index_select(0, index) for name, b in self.buffers.items()}
        for (name, param), optimizer in zip(self.params.items(), self.optimizers, strict=True):
            self.params[name] = param.detach().index_select(0, index).requires_grad_()
            optimizer.take(
                self.params[name].detach(),
                optimizer.exp_avg.index_select(0, index),
                optimizer.exp_avg_sq.index_select(0, index),
            )

    def member_state(self, k: int) -> dict[str, Tensor]:
        """Return clones of member ``k``'s parameters and buffers, by name."""
        return {n: t[k].detach().clone() for n, t in {**self.params, **self.buffers}.items()}

    def unstack_into(self, k: int, state: dict[str, Tensor], model: nn.Module) -> None:
        """Copy a saved member state (from :meth:`member_state`) into the original model."""
        with torch.no_grad():
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                tensor.copy_(state[name])


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def vmappable(model: nn.Module, n_features: int) -> bool:
    """True when two copies of ``model`` train and evaluate as :class:`VmappedModels`.

    Tried on copies (a step on 2 rows of zeros), so nothing of ``model`` changes; fails, for
    example, for models that update buffers in place in training (batch norm). False for
    models with dropout: vmap draws every member's masks from one stream, so a trial's result
    would depend on which trials share its stack.
    """
    if any(isinstance(m, _DROPOUTS) and m.p > 0 for m in model.modules()):
        return False
    try:
        stack = VmappedModels([copy.deepcopy(model) for _ in range(2)], torch.device("cpu"))
        inputs = torch.zeros(2, 2, n_features, dtype=stack.input_dtype)
        stack.step(inputs, torch.zeros(2, 2), lambda logits, _: logits.float().mean(dim=(1, 2)))
        stack.logits(inputs[0])
    except Exception:  # noqa: BLE001 - whatever vmap cannot batch trains one model at a time
        return False
    return True
