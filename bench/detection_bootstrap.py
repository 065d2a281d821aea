"""The detection bootstrap's cost: 1000 paired resamples of a few hundred images, against
pycocotools evaluating the split once (what a naive bootstrap would pay per resample).

Run: python bench/detection_bootstrap.py [--images 300] [--classes 5] [--resamples 1000]

Synthetic split: per image 0-12 objects of --classes classes, a detection for ~80 % of them
(jittered) plus 0-6 false positives, for two models (the second's boxes shifted). Prints the
seconds of: matching both models once, the paired bootstrap, one pycocotools evaluation, and the
ratio (1000 pycocotools evaluations, estimated) / (match + bootstrap). Never asserts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gammatune.detection import Detections, coco_metrics
from gammatune.detection_bootstrap import match, paired_bootstrap


def synthetic(n: int, k: int, shift: float, seed: int) -> Detections:
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(0)  # the same ground truth for both models
    boxes, scores, labels, gt_boxes, gt_labels = [], [], [], [], []
    for _ in range(n):
        g = int(truth.integers(0, 13))
        xy = truth.uniform(0, 500, (g, 2))
        gt = np.hstack([xy, xy + truth.uniform(8, 80, (g, 2))])
        gl = truth.integers(0, k, g)
        keep = rng.random(g) < 0.8
        pred = gt[keep] + rng.normal(0, 3, (int(keep.sum()), 4)) + [shift, 0, shift, 0]
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2])
        f = int(rng.integers(0, 7))
        fxy = rng.uniform(0, 500, (f, 2))
        boxes.append(np.vstack([pred, np.hstack([fxy, fxy + rng.uniform(8, 80, (f, 2))])]))
        labels.append(np.concatenate([gl[keep], rng.integers(0, k, f)]))
        scores.append(
            np.concatenate([rng.uniform(0.3, 1, int(keep.sum())), rng.uniform(0, 0.7, f)])
        )
        gt_boxes.append(gt)
        gt_labels.append(gl)
    return Detections(
        np.arange(n), tuple(boxes), tuple(scores), tuple(labels), tuple(gt_boxes),
        tuple(gt_labels), k,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    a = synthetic(args.images, args.classes, 0.0, 1)
    b = synthetic(args.images, args.classes, 4.0, 2)
    n_dets = sum(len(s) for s in a.scores)
    started = time.perf_counter()
    ma, mb = match(a), match(b)
    matched = time.perf_counter() - started
    started = time.perf_counter()
    diff = paired_bootstrap(ma, mb, n_resamples=args.resamples, seed=0)
    boot = time.perf_counter() - started
    started = time.perf_counter()
    point = coco_metrics(a).ap - coco_metrics(b).ap
    coco = (time.perf_counter() - started) / 2
    low, high = np.percentile(diff, [2.5, 97.5])
    print(f"{args.images} images, {args.classes} classes, {n_dets} detections per model")
    print(f"match both models once:        {matched:7.2f} s")
    print(f"paired bootstrap, {args.resamples} resamples: {boot:7.2f} s")
    print(f"pycocotools, one evaluation:   {coco:7.2f} s")
    naive = coco * 2 * args.resamples
    print(f"naive (pycocotools per resample, both models) / ours: {naive / (matched + boot):.0f}x")
    print(f"AP difference {point:+.4f}, 95 % interval [{low:+.4f}, {high:+.4f}]")


if __name__ == "__main__":
    main()
