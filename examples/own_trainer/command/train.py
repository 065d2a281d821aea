"""A training script gammatune runs as a command (any language works the same way).

gammatune writes the trial to --split (JSON: seed, gamma, alpha, params, train/val/test row
ids, classes, positive) and reads --out/scores.npz back (val_ids, val_scores, test_ids,
test_scores); lines {"step", "value"} appended to --out/progress.jsonl feed the pruner (SIGTERM
stops the script). Here: logistic regression on the table's numeric columns, trained with a
focal loss written out in NumPy, as a script of your own would have it.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

parser = argparse.ArgumentParser()
for name in ("--gamma", "--alpha", "--seed", "--split", "--out"):
    parser.add_argument(name, required=True)
args = parser.parse_args()
split = json.loads(Path(args.split).read_text())
gamma, seed, out = float(args.gamma), int(args.seed), Path(args.out)
alpha = None if args.alpha == "none" else float(args.alpha)

table = pd.read_csv(Path(__file__).parent / "../../fraud.csv")  # as command.yaml's data
features = table.drop(columns=["label"]).to_numpy(float)
labels = (table["label"].astype(str) == split["positive"]).to_numpy(float)
train = np.array(split["train_ids"])
mean, std = features[train].mean(0), features[train].std(0) + 1e-9
x = (features - mean) / std

rng = np.random.default_rng(seed)  # the trial's seed: initial weights and batch order
w, b = rng.normal(0, 0.01, x.shape[1]), 0.0
for epoch in range(30):
    for batch in np.array_split(rng.permutation(train), 8):
        p = 1 / (1 + np.exp(-(x[batch] @ w + b)))
        y = labels[batch]
        p_t = np.clip(np.where(y == 1, p, 1 - p), 1e-7, 1 - 1e-7)
        a_t = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
        # d(focal)/d(logit), focal = -a_t (1 - p_t)^gamma log(p_t)
        grad_pt = a_t * (gamma * (1 - p_t) ** (gamma - 1) * np.log(p_t) - (1 - p_t) ** gamma / p_t)
        grad = grad_pt * p_t * (1 - p_t) * np.where(y == 1, 1, -1)
        w -= 0.1 * x[batch].T @ grad / len(batch)
        b -= 0.1 * grad.mean()
    val = np.array(split["val_ids"])
    score = 1 / (1 + np.exp(-(x[val] @ w + b)))
    hit = np.mean(score[labels[val] == 1]) - np.mean(score[labels[val] == 0])
    with (out / "progress.jsonl").open("a") as log:
        log.write(json.dumps({"step": epoch, "value": float(hit)}) + "\n")

arrays = {}
for part in ("val", "test"):
    ids = np.array(split[f"{part}_ids"])
    arrays[f"{part}_ids"], arrays[f"{part}_scores"] = ids, 1 / (1 + np.exp(-(x[ids] @ w + b)))
np.savez(out / "scores.npz", **arrays)
