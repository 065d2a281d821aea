"""A tiny one-stage detector whose classification branch is gammatune's focal loss.

Images: the PNGs ``make_shapes.py`` writes (32 x 32, 0-4 rectangles, triangles and round ones
of about 4-11 pixels on a noisy background) and its table ``shapes.csv`` (``image``, ``boxes``,
``objects``), read from this file's folder. Detector: a 3-layer CNN down to an 8 x 8 grid
(stride 4) and a CenterNet-style head: per cell, a logit per class (is an object's centre here?)
and a box (centre offset, log size). The class logits are dense and mostly negative, the regime
focal loss was made for (Lin et al. 2017): they are trained with ``gammatune.loss.focal_loss`` at
the trial's gamma and alpha, summed and divided by the number of objects (RetinaNet's normalizer,
the same at gamma 0: the twin).

``run_trial(spec)`` is a trainer-contract function: it reads ``spec.gamma``, ``spec.alpha``,
``spec.seed``, ``spec.epochs``, ``spec.params["lr"]``, the split's ids, ``spec.classes`` (the
object classes, ``data.classes``) and ``spec.table``'s ``image``, ``boxes`` and ``objects``
columns, and returns the detection payload (per image id: boxes, scores, labels and the ground
truth). ``gammatune run --config detection.yaml`` tunes it; ``python shapes_detector.py``
compares gamma 0 and 2 over a few seeds by itself, with ``gammatune.detection`` (COCO AP by
pycocotools) and the paired image bootstrap. Needs ``pip install gammatune[detection]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from make_shapes import CLASSES, make, read
from torch import nn
from torch.nn import functional as F  # noqa: N812

from gammatune.detection import coco_metrics, detection_part
from gammatune.detection_bootstrap import match, paired_bootstrap
from gammatune.loss import focal_loss
from gammatune.spec import TrialSpec

HERE = Path(__file__).resolve().parent  # the table's folder: image paths are relative to it
SIZE, STRIDE = 32, 4
GRID = SIZE // STRIDE


class Detector(nn.Module):
    """Three convolutions to an 8 x 8 grid; per cell C class logits and 4 box numbers."""

    def __init__(self, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.cls = nn.Conv2d(48, n_classes, 3, padding=1)
        self.box = nn.Conv2d(48, 4, 3, padding=1)
        nn.init.constant_(self.cls.bias, -float(np.log(99.0)))  # prior 0.01, as RetinaNet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.cls(features), self.box(features)


def targets(
    boxes: np.ndarray, labels: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Class map ``(C, 8, 8)`` (1 at each object's centre cell) and box map ``(4, 8, 8)``."""
    heat = np.zeros((n_classes, GRID, GRID), np.float32)
    box = np.zeros((4, GRID, GRID), np.float32)
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
        i, j = min(int(cy), GRID - 1), min(int(cx), GRID - 1)
        heat[label, i, j] = 1.0
        box[:, i, j] = cx - j, cy - i, np.log((x2 - x1) / STRIDE), np.log((y2 - y1) / STRIDE)
    return heat, box


def load(spec: TrialSpec, ids: np.ndarray) -> tuple[torch.Tensor, list[Any]]:
    """Images ``(n, 1, 32, 32)`` of table rows ``ids`` and their (boxes, class indices)."""
    index = {name: i for i, name in enumerate(spec.classes)}
    rows = [read(HERE, row) for _, row in spec.table.iloc[ids].iterrows()]  # row positions
    truth = [
        (boxes, np.array([index[o] for o in objects], np.int64)) for _, boxes, objects in rows
    ]
    return torch.from_numpy(np.stack([image for image, _, _ in rows])), truth


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Train at ``spec.gamma``/``spec.alpha``; return the detection payload for val and test."""
    torch.manual_seed(spec.seed)
    stream = torch.Generator().manual_seed(spec.seed)
    x_train, truth = load(spec, spec.train_ids)
    maps = [targets(b, lab, len(spec.classes)) for b, lab in truth]
    heat = torch.from_numpy(np.stack([m[0] for m in maps]))
    box = torch.from_numpy(np.stack([m[1] for m in maps]))
    model = Detector(len(spec.classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.params["lr"])
    for epoch in range(spec.epochs):
        model.train()
        for batch in torch.randperm(len(x_train), generator=stream).split(32):
            cls_logits, box_out = model(x_train[batch])
            positive = heat[batch].amax(dim=1, keepdim=True)  # (B, 1, 8, 8): a centre here
            n_pos = positive.sum().clamp(min=1.0)
            cls_loss = focal_loss(
                cls_logits, heat[batch], gamma=spec.gamma, alpha=spec.alpha,
                mode="binary", reduction="sum",
            ) / n_pos  # fmt: skip
            box_loss = (F.smooth_l1_loss(box_out, box[batch], reduction="none") * positive).sum()
            loss = cls_loss + box_loss / n_pos
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        spec.report(epoch, -loss.item())  # the pruner's signal; the verdict reads the payload
    return {"val": predict(model, spec, spec.val_ids), "test": predict(model, spec, spec.test_ids)}


@torch.no_grad()
def predict(model: Detector, spec: TrialSpec, ids: np.ndarray, top: int = 100) -> dict[str, Any]:
    """One split of the payload: per image, decoded peaks (3 x 3 local maxima) and the truth."""
    model.eval()
    x, truth = load(spec, ids)
    cls_logits, box_out = model(x)
    scores = torch.sigmoid(cls_logits)
    peaks = scores * (scores == F.max_pool2d(scores, 3, stride=1, padding=1))
    part: dict[str, list[Any]] = {key: [] for key in ("boxes", "scores", "labels")}
    cols, rows = np.meshgrid(np.arange(GRID), np.arange(GRID))
    for n in range(len(ids)):
        flat = peaks[n].flatten().numpy()
        keep = np.argsort(-flat, kind="stable")[:top]
        keep = keep[flat[keep] > 0.01]
        label, cell = np.divmod(keep, GRID * GRID)
        i, j = rows.flat[cell], cols.flat[cell]
        dx, dy, lw, lh = (box_out[n, k].numpy()[i, j] for k in range(4))
        cx, cy = (j + dx) * STRIDE, (i + dy) * STRIDE
        w, h = np.exp(np.clip(lw, -3, 3)) * STRIDE, np.exp(np.clip(lh, -3, 3)) * STRIDE
        part["boxes"].append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))
        part["scores"].append(flat[keep])
        part["labels"].append(label)
    return {
        "ids": ids,
        **part,
        "gt_boxes": [b for b, _ in truth],
        "gt_labels": [lab for _, lab in truth],
    }


def make_spec(
    gamma: float, alpha: float | None, seed: int, table: pd.DataFrame, **kw: Any
) -> TrialSpec:
    """The spec gammatune would give a trial: 60/20/20 split of the table's images."""
    ids = table.index.to_numpy()
    n_train, n_val = int(0.6 * len(ids)), int(0.2 * len(ids))
    return TrialSpec(
        gamma=gamma, alpha=alpha, params={"lr": kw.get("lr", 3e-3)}, seed=seed, repeat=0,
        fold=0, stage="compare", train_ids=ids[:n_train],
        val_ids=ids[n_train : n_train + n_val], test_ids=ids[n_train + n_val :], table=table,
        classes=CLASSES, positive=None, device="cpu", epochs=kw.get("epochs", 8),
        workdir=kw["workdir"], loss_terms=(gamma, alpha, 0),
    )  # fmt: skip


def compare(
    gammas: tuple[float, float] = (0.0, 2.0),
    seeds: tuple[int, ...] = (0, 1, 2),
    n_images: int = 600,
    epochs: int = 20,
    alpha: float | None = 0.25,
) -> list[dict[str, float]]:
    """Test AP of ``gammas[1]`` against ``gammas[0]`` per seed, with a paired 95 % interval."""
    if not (HERE / "shapes.csv").is_file():
        make(HERE, max(n_images, 600))
    table = pd.read_csv(HERE / "shapes.csv").head(n_images)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in seeds:
            found, matched = {}, {}
            for gamma in gammas:
                started = time.perf_counter()
                spec = make_spec(gamma, alpha, seed, table, epochs=epochs, workdir=Path(workdir))
                payload = run_trial(spec)
                dets = detection_part(payload["test"], "test", spec.test_ids, len(CLASSES))
                found[gamma] = coco_metrics(dets)
                matched[gamma] = match(dets)
                found[gamma, "s"] = time.perf_counter() - started  # type: ignore[index]
            diff = paired_bootstrap(matched[gammas[1]], matched[gammas[0]], seed=seed)
            low, high = np.percentile(diff, [2.5, 97.5])
            rows.append(
                {
                    "seed": seed,
                    **{f"ap_g{g:g}": found[g].ap for g in gammas},
                    **{f"ap50_g{g:g}": found[g].ap50 for g in gammas},
                    "diff_low": float(low),
                    "diff_high": float(high),
                    "seconds": float(found[gammas[1], "s"]),  # type: ignore[index]
                }
            )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="AP at gamma 0 vs 2 over a few seeds.")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for row in compare(seeds=tuple(range(args.seeds)), n_images=args.images, epochs=args.epochs):
        print(
            f"seed {row['seed']}: test AP gamma 0 {row['ap_g0']:.3f}, gamma 2 {row['ap_g2']:.3f} "
            f"(AP50 {row['ap50_g0']:.3f} / {row['ap50_g2']:.3f}); gamma 2 - gamma 0, 95 % "
            f"paired bootstrap over images: [{row['diff_low']:+.3f}, {row['diff_high']:+.3f}]; "
            f"{row['seconds']:.1f} s a trial"
        )
