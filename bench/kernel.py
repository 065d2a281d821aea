"""Forward+backward time of gammatune's focal_loss against the textbook formula, same process.

Run: python bench/kernel.py [--repeats 7] [--threads 2] [--json] [--no-compile]
Prints medians of several runs and the ratio reference / gammatune (> 1 means gammatune is
faster): the eager kernel (compile=False) and the compiled pass that focal_loss takes by default
for large binary/multilabel inputs (compile=True here, with its one-off compile time; multiclass
has no compiled pass). The reference is torchvision's form, written out here:
(1 - p_t) ** gamma * BCE.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gammatune.loss import focal_loss


def textbook_binary(logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: float):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * loss).mean()


def textbook_multiclass(logits: torch.Tensor, targets: torch.Tensor, gamma: float):
    log_p = F.log_softmax(logits, dim=1)
    log_p_t = log_p.gather(1, targets[:, None]).squeeze(1)
    return (-((1 - log_p_t.exp()) ** gamma) * log_p_t).mean()


def time_fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int):
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    for _ in range(2):  # warm-up
        fn(x.requires_grad_()).backward()
    times = []
    for _ in range(repeats):
        x.grad = None
        sync()
        start = time.perf_counter()
        fn(x).backward()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), bool(torch.isfinite(x.grad).all())


def cases(device: torch.device):
    gen = torch.Generator(device="cpu").manual_seed(0)
    n = 2**22
    xb = (torch.randn(n, generator=gen) * 4).to(device)
    yb = (torch.rand(n, generator=gen) < 0.05).float().to(device)
    xb[:1000] = 40.0  # a few confident predictions, as real training produces
    yb[:1000] = 1.0
    xm = (torch.randn(2**18, 16, generator=gen) * 4).to(device)
    tm = torch.randint(0, 16, (2**18,), generator=gen).to(device)
    for gamma in (0.5, 2.0):
        yield (
            f"binary N=2^22 gamma={gamma:g}",
            xb,
            lambda x, gamma=gamma: textbook_binary(x, yb, gamma, 0.25),
            lambda x, c, gamma=gamma: focal_loss(x, yb, gamma=gamma, alpha=0.25, compile=c),
        )
    yield (
        "multiclass N=2^18 C=16 gamma=2",
        xm,
        lambda x: textbook_multiclass(x, tm, 2.0),
        lambda x, c: focal_loss(x, tm, gamma=2.0, mode="multiclass", compile=c),
    )


def compiled(
    fn: Callable[[torch.Tensor, bool], torch.Tensor], x: torch.Tensor
) -> tuple[Callable, float]:
    """``fn`` with compile=True, and the time of its first call (the compile)."""
    start = time.perf_counter()
    fn(x.clone().requires_grad_(), True).backward()
    return (lambda t: fn(t, True)), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{args.threads}"
        for label, x, reference, ours in cases(device):
            ref_s, ref_finite = time_fwd_bwd(reference, x.clone(), args.repeats)
            eager = functools.partial(ours, c=False)
            our_s, our_finite = time_fwd_bwd(eager, x.clone(), args.repeats)
            row = {
                "device": name,
                "case": label,
                "reference_ms": ref_s * 1e3,
                "gammatune_ms": our_s * 1e3,
                "ratio": ref_s / our_s,
                "reference_grad_finite": ref_finite,
                "gammatune_grad_finite": our_finite,
            }
            if not args.no_compile and "multiclass" not in label:
                fast, compile_s = compiled(ours, x)
                fast_s, fast_finite = time_fwd_bwd(fast, x.clone(), args.repeats)
                row.update(
                    compiled_ms=fast_s * 1e3,
                    compiled_ratio=ref_s / fast_s,
                    compile_s=compile_s,
                    compiled_grad_finite=fast_finite,
                )
            rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"focal loss forward+backward, median of {args.repeats} (torch {torch.__version__})")
    header = f"{'device':<14}{'case':<32}{'textbook ms':>12}{'eager ms':>10}{'ratio':>7}"
    print(header + f"{'compiled ms':>13}{'ratio':>7}{'compile s':>11}  finite grad")
    for r in rows:
        compiled_cells = (
            f"{r['compiled_ms']:>13.1f}{r['compiled_ratio']:>7.2f}{r['compile_s']:>11.1f}"
            if "compiled_ms" in r
            else f"{'-':>13}{'-':>7}{'-':>11}"
        )
        print(
            f"{r['device']:<14}{r['case']:<32}{r['reference_ms']:>12.1f}{r['gammatune_ms']:>10.1f}"
            f"{r['ratio']:>7.2f}{compiled_cells}  textbook={r['reference_grad_finite']} "
            f"gammatune={r['gammatune_grad_finite']}"
        )


if __name__ == "__main__":
    main()
