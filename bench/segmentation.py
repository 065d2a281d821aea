"""A segmentation study: gammatune's U-Net trials against a hand-written loop, in one process.

Run: python bench/segmentation.py [--epochs 6] [--images 300] [--repeats 1] [--json]

Workload (both sides): examples/make_lesions.py's set (64 x 64 grey images, background, lesion,
cyst), the first ``--images`` of it; the split gammatune makes (60/20/20, patients kept whole);
a U-Net with channels [8, 16] (gammatune.models.UNet on both sides, so the model's cost is
equal); AdamW lr 0.01, weight decay 1e-4, batch 12 images; ``--epochs`` epochs with no early
stopping; the validation Dice after every epoch; 6 settings: gamma {0, 1, 2} x Dice weight
{0, 1}, alpha off.

- reference: what a MONAI / segmentation_models_pytorch user writes: for each setting a fresh
  model, ``DataLoader(TensorDataset(...), shuffle=True)``, softmax focal loss by the textbook
  formula over every pixel plus the weighted soft Dice, one model at a time, fp32.
- gammatune: ``gammatune search`` over the same grid (``model.kind: unet``): a process per trial
  (the trainer contract), SQLite storage, payload checks, per-image counts, records, scores
  files; ``train.precision`` auto (bf16 autocast where the CPU has it natively), and again
  in fp32 (the same arithmetic as the reference).

Prints the CPU, the threads, the wall time of each side (median over ``--repeats``), seconds per
trial and the ratio. One model at a time on both sides: the U-Net trials are not stacked (a
trainer-contract trial owns its process). Whether stacking would pay is measured apart: one
training step of 6 U-Nets (batch 12, 64 x 64) as one ``torch.func.vmap`` over their stacked
weights against the 6 one after another (the first check on 6 December 2026, 2 busy cores,
1 thread: 585 ms stacked, 474 ms one at a time). Never asserts; meaningless on a busy machine
(the load average is printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, TensorDataset

from gammatune.config import load_config
from gammatune.data import load_data
from gammatune.models import UNet
from gammatune.tuning import run_workflow

GAMMAS, DICE, LR, BATCH, CHANNELS = [0.0, 1.0, 2.0], [0.0, 1.0], 0.01, 12, [8, 16]
ROOT = Path(__file__).resolve().parents[1]


def write_lesions(folder: Path, n_images: int) -> Path:
    """examples/make_lesions.py's set, its first ``n_images``, as folder/lesions.npz."""
    spec = importlib.util.spec_from_file_location(
        "make_lesions", ROOT / "examples/make_lesions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    arrays = {k: v[:n_images] if k != "classes" else v for k, v in module.lesions().items()}
    path = folder / "lesions.npz"
    np.savez(path, **arrays)
    return path


def experiment(folder: Path, epochs: int, precision: str) -> Path:
    raw = {
        "name": f"bench-{precision}",
        "data": {"source": "npz", "path": "lesions.npz", "groups": "patient"},
        "model": {"kind": "unet", "channels": CHANNELS},
        "train": {
            "epochs": epochs, "lr": LR, "batch_size": BATCH, "patience": epochs,
            "min_epochs": epochs, "precision": precision,
            "threads": torch.get_num_threads(),  # as the reference's, not the load's "auto"
        },
        "objective": "dice",
        "search": {"gamma": GAMMAS, "alpha": [None], "dice": DICE},
        "output_dir": str(folder / "runs"),
    }  # fmt: skip
    path = folder / f"{precision}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def gammatune_side(folder: Path, epochs: int, precision: str) -> float:
    config = load_config(experiment(folder, epochs, precision))
    started = time.perf_counter()
    run_workflow(config, ["search"])
    return time.perf_counter() - started


# ---- the reference: a hand-written loop ------------------------------------------------------


def textbook_focal(logits: torch.Tensor, masks: torch.Tensor, gamma: float) -> torch.Tensor:
    log_p = F.log_softmax(logits, dim=1).gather(1, masks[:, None]).squeeze(1)
    return (-((1 - log_p.exp()) ** gamma) * log_p).mean()


def soft_dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    probs = F.softmax(logits, dim=1)[:, 1:]
    truth = F.one_hot(masks, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
    overlap = (probs * truth).sum((2, 3))
    return 1 - ((2 * overlap + 1e-5) / (probs.sum((2, 3)) + truth.sum((2, 3)) + 1e-5)).mean()


def val_dice(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    scores = []
    for c in range(1, n_classes):
        p, t = pred == c, y == c
        held = t.any(dim=(1, 2))
        inter = (p & t).sum((1, 2)).float()
        dice = 2 * inter / (p.sum((1, 2)) + t.sum((1, 2))).clamp(min=1)
        scores.append(dice[held].mean().item())
    return float(np.nanmean(scores))


def reference_side(folder: Path, epochs: int) -> tuple[float, list[float]]:
    config = load_config(experiment(folder, epochs, "fp32"))
    splits = load_data(config)
    units = splits.units
    assert units is not None
    with np.load(folder / "lesions.npz") as arrays:
        x, y = torch.from_numpy(arrays["X"]).float(), torch.from_numpy(arrays["y"]).long()
    train, val = torch.as_tensor(units.train_ids), torch.as_tensor(units.val_ids)
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    n_classes = len(splits.class_names)
    started, found = time.perf_counter(), []
    for gamma in GAMMAS:
        for weight in DICE:
            torch.manual_seed(0)
            model = UNet(1, CHANNELS, n_classes)
            optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
            loader = DataLoader(TensorDataset(x[train], y[train]), batch_size=BATCH, shuffle=True)
            best = 0.0
            for _ in range(epochs):
                model.train()
                for xb, yb in loader:
                    optimizer.zero_grad()
                    logits = model(xb)
                    loss = textbook_focal(logits, yb, gamma)
                    if weight:
                        loss = loss + weight * soft_dice_loss(logits, yb)
                    loss.backward()
                    optimizer.step()
                best = max(best, val_dice(model, x[val], y[val], n_classes))
            found.append(best)
    return time.perf_counter() - started, found


def stacked_step_ratio(k: int = 6, steps: int = 3) -> tuple[float, float]:
    """Seconds of one training step of ``k`` U-Nets: vmapped over stacked weights, and one
    after another (batch norm without running statistics in both, as vmap needs)."""
    import copy

    from torch.func import (
        functional_call,
        grad,
        replace_all_batch_norm_modules_,
        stack_module_state,
        vmap,
    )

    x = torch.randn(k, BATCH, 1, 64, 64)
    y = torch.randint(0, 3, (k, BATCH, 64, 64))
    models = [replace_all_batch_norm_modules_(UNet(1, CHANNELS, 3)) for _ in range(k)]
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]

    def loss(p: dict, b: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    stacked = vmap(grad(loss))

    def one_by_one() -> None:
        for i, model in enumerate(models):
            model.zero_grad()
            F.cross_entropy(model(x[i]), y[i]).backward()

    timed = []
    for step in (lambda: stacked(params, buffers, x, y), one_by_one):
        step()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        timed.append((time.perf_counter() - started) / steps)
    return timed[0], timed[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {threads} threads, load average {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    times: dict[str, list[float]] = {"reference": [], "gammatune": [], "gammatune_fp32": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_lesions(folder, args.images)
            times["reference"].append(reference_side(folder, args.epochs)[0])
            times["gammatune"].append(gammatune_side(folder, args.epochs, "auto"))
            times["gammatune_fp32"].append(gammatune_side(folder, args.epochs, "fp32"))
    n_trials = len(GAMMAS) * len(DICE)
    result = {name: statistics.median(values) for name, values in times.items()}
    stacked_s, one_by_one_s = stacked_step_ratio()
    rows = {
        "trials": n_trials,
        "epochs": args.epochs,
        "images": args.images,
        "seconds": {k: round(v, 2) for k, v in result.items()},
        "seconds_per_trial": {k: round(v / n_trials, 2) for k, v in result.items()},
        "reference_over_gammatune": round(result["reference"] / result["gammatune"], 2),
        "reference_over_gammatune_fp32": round(result["reference"] / result["gammatune_fp32"], 2),
        "six_unet_step_ms": {
            "stacked_vmap": round(stacked_s * 1e3),
            "one_by_one": round(one_by_one_s * 1e3),
        },
    }
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{n_trials} trials x {args.epochs} epochs on {args.images} images (60/20/20 split)")
    for name, seconds in result.items():
        print(f"  {name:<15} {seconds:7.1f} s  ({seconds / n_trials:5.2f} s a trial)")
    print(
        f"reference / gammatune: {rows['reference_over_gammatune']:.2f}x (precision auto), "
        f"{rows['reference_over_gammatune_fp32']:.2f}x (fp32)"
    )
    print(
        f"one step of 6 U-Nets: {stacked_s * 1e3:.0f} ms stacked (vmap), {one_by_one_s * 1e3:.0f} "
        f"ms one at a time ({one_by_one_s / stacked_s:.2f}x: above 1, stacking would pay)"
    )


if __name__ == "__main__":
    main()
