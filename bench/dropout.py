"""Dropout masks for a stack of K members: gammatune's per-member masks against the references,
same process, interleaved.

Run: python bench/dropout.py [--repeats 200] [--threads 2] [--k 16] [--json]

For one hidden activation (K x batch x width, the workflow benchmark's MLP: 16 x 256 x 128),
in bfloat16 and float32, the median time of:
- `bernoulli_`: `torch.empty(...).bernoulli_(keep) / keep` on one shared stream (what nn.Dropout
  does; a trial's masks then depend on its stack);
- torch's generator (the previous gammatune): per-member random 64-bit words from one
  `torch.Generator` each, seen as four 16-bit numbers, compared straight into the dtype, then
  scaled by 1 / keep;
- gammatune now (`dropout_masks`): the same words from numpy's SFC64 per member, compared into
  the dtype as 0/1 (the 1 / keep is the next matmul's alpha, no pass of its own);
- the stacked step's matmul of the same shape (one `bmm`, K x 256 x 128 @ K x 128 x 128), for scale.
Ratios are reference / gammatune (> 1: gammatune faster). Never asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable

import torch

from gammatune.device import autocast_dtype
from gammatune.training import dropout_masks, dropout_streams, keep_rate

P = 0.1


def bernoulli_shared(generator: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype):
    keep = 1 - P
    return torch.empty(shape, dtype=dtype).bernoulli_(keep, generator=generator).div_(keep)


def torch_generator(streams: list[torch.Generator], shape: tuple[int, ...], dtype: torch.dtype):
    k, n = shape[0], math.prod(shape[1:])
    words = torch.empty(k, (n + 3) // 4, dtype=torch.int64)
    for row, stream in zip(words, streams, strict=True):
        row.random_(-(2**63), None, generator=stream)
    cut = round(P * 2**16)
    masks = torch.empty(k, n, dtype=dtype)
    torch.ge(words.view(torch.int16)[:, :n], cut - 2**15, out=masks)
    return masks.mul_(1 / keep_rate(P)).view(shape)


def _median_ms(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):  # interleaved, so that the machine's load falls on all alike
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def measure(k: int, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    shape = (k, 256, 128)
    streams = dropout_streams(range(k), torch.device("cpu"))
    generators = [torch.Generator().manual_seed(seed) for seed in range(k)]
    shared = torch.Generator().manual_seed(0)
    inputs, weights = torch.randn(shape, dtype=dtype), torch.randn(k, 128, 128, dtype=dtype)
    calls = {
        "bernoulli_": lambda: bernoulli_shared(shared, shape, dtype),
        "torch generator": lambda: torch_generator(generators, shape, dtype),
        "gammatune": lambda: dropout_masks(streams, shape[1:], P, dtype),
        "bmm": lambda: torch.bmm(inputs, weights),
    }
    for call in calls.values():  # warm up
        call()
    return _median_ms(calls, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for dtype in (torch.bfloat16, torch.float32):
        results[str(dtype).removeprefix("torch.")] = measure(args.k, dtype, args.repeats)
    if args.json:
        print(json.dumps(results))
        return
    native = autocast_dtype(torch.device("cpu")) or "fp32"
    print(
        f"K={args.k} x 256 x 128, p={P}, {args.threads} threads, torch {torch.__version__}, "
        f"precision auto on this CPU: {native}; medians of {args.repeats}"
    )
    for dtype, ms in results.items():
        print(
            f"  {dtype}: bernoulli_ {ms['bernoulli_']:.3f} ms, torch generator {ms['torch generator']:.3f} ms, "
            f"gammatune {ms['gammatune']:.3f} ms, one bmm {ms['bmm']:.3f} ms; "
            f"bernoulli_/gammatune {ms['bernoulli_'] / ms['gammatune']:.2f}x, "
            f"torch generator/gammatune {ms['torch generator'] / ms['gammatune']:.2f}x, "
            f"gammatune/bmm {ms['gammatune'] / ms['bmm']:.2f}"
        )


if __name__ == "__main__":
    main()
