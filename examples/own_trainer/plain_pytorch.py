"""Your own PyTorch model and loop, tuned by gammatune: `gammatune run --config plain.yaml`.

gammatune owns what makes the comparison fair (the split, the seed, the loss, the twin); you own
the loop. The lines marked `# gammatune` are the ones that change from a loop of your own.
Run this file to write the table (`python plain_pytorch.py`): rows are images, drawn from their
`image_seed` (a defect: a faint bar on noise; 8 % of the rows).
"""

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score
from torch import nn


def render(seed: int, label: str, size: int = 16) -> np.ndarray:
    """A (1, size, size) image: noise, with a vertical bar where the label is defect."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 1, (1, size, size)).astype(np.float32)
    if label == "defect":
        row, col = rng.integers(1, size - 7, 2)
        image[0, row : row + 6, col] += 2.5
    return image


def images(spec, ids: np.ndarray) -> torch.Tensor:  # swap in your own loader (files, a Dataset)
    rows = spec.table.iloc[ids]
    drawn = [render(s, label) for s, label in zip(rows.image_seed, rows.label, strict=True)]
    return torch.from_numpy(np.stack(drawn))


def run_trial(spec) -> dict:  # gammatune: called once a trial, in a process of its own
    torch.manual_seed(spec.seed)  # gammatune: the trial's seed (weights)
    stream = torch.Generator().manual_seed(spec.seed)  # gammatune: batch order, augmentation
    splits = (spec.train_ids, spec.val_ids, spec.test_ids)
    x_train, x_val, x_test = (images(spec, ids) for ids in splits)
    positive = spec.table.label.to_numpy() == spec.positive
    y_train = torch.tensor(positive[spec.train_ids], dtype=torch.float32)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 1),
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.params["lr"])  # gammatune: lr
    loss_fn = spec.loss()  # gammatune: focal loss at (gamma, alpha); gamma 0: the CE twin
    for epoch in range(spec.epochs):  # gammatune: train.epochs
        model.train()
        for batch in torch.randperm(len(y_train), generator=stream).split(64):
            flip = torch.rand(len(batch), generator=stream) < 0.5  # seeded augmentation
            xb = torch.where(flip[:, None, None, None], x_train[batch].flip(-1), x_train[batch])
            loss = loss_fn(model(xb).squeeze(1), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val = predict(model, x_val)
        spec.report(epoch, average_precision_score(positive[spec.val_ids], val))  # gammatune
    return {  # gammatune: P(positive) per row id, for validation and test
        "val": {"ids": spec.val_ids, "scores": predict(model, x_val)},
        "test": {"ids": spec.test_ids, "scores": predict(model, x_test)},
    }


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.sigmoid(model(x).squeeze(1)).numpy()


if __name__ == "__main__":  # write the table this example trains on
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(800) < 0.08, "defect", "ok")
    pd.DataFrame({"image_seed": rng.integers(0, 2**31, 800), "label": labels}).to_csv(
        "shapes.csv", index_label="id"
    )
