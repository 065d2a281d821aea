"""A LightningModule trained by `lightning.Trainer`, tuned by gammatune: `pip install
'gammatune[lightning]'`, then `gammatune run --config examples/own_trainer/lightning.yaml`.

The rows and images are plain_pytorch.py's (shapes.csv: a faint bar on noise, 8 % defects). The
lines marked `# gammatune` are the ones that change from a Lightning script of your own.
"""

import logging
import warnings

import lightning as L
import torch
from plain_pytorch import images  # the example's images: swap in your own Dataset
from sklearn.metrics import average_precision_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore", ".*does not have many workers.*")  # an in-memory dataset
warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)  # Lightning 2.6 on torch 2.13
for name in ("lightning.pytorch", "lightning.fabric"):  # no "GPU available", seed, tips lines
    logging.getLogger(name).setLevel(logging.WARNING)


class DefectNet(L.LightningModule):
    def __init__(self, lr: float, loss_fn: nn.Module) -> None:
        super().__init__()
        self.lr, self.loss_fn = lr, loss_fn
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # a logit per image
        return self.head(self.features(x).amax(dim=(-2, -1))).squeeze(1)

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        flip = torch.rand(len(x), device=x.device) < 0.5  # augmentation: seeded by seed_everything
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return self.loss_fn(self(x), y)  # gammatune: the trial's focal loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:  # one batch: the split
        x, y = batch
        score = torch.sigmoid(self(x))
        self.log("val_pr_auc", average_precision_score(y.cpu(), score.cpu()), batch_size=len(y))

    def predict_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        return torch.sigmoid(self(batch[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


class ReportToGammatune(L.Callback):  # gammatune: the validation metric, per epoch
    def __init__(self, spec) -> None:
        self.spec = spec

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # raises gammatune.Pruned: Lightning lets it through
            self.spec.report(trainer.current_epoch, trainer.callback_metrics["val_pr_auc"].item())


def run_trial(spec) -> dict:  # gammatune: called once a trial, in a process of its own
    L.seed_everything(spec.seed, workers=True)  # gammatune: the trial's seed
    positive = torch.tensor(spec.table.label.to_numpy() == spec.positive, dtype=torch.float32)

    def rows(ids, **kwargs) -> DataLoader:  # gammatune: the split's rows
        return DataLoader(TensorDataset(images(spec, ids), positive[ids]), **kwargs)

    order = torch.Generator().manual_seed(spec.seed)  # gammatune: batch order
    train = rows(spec.train_ids, batch_size=64, shuffle=True, generator=order)
    val, test = (rows(ids, batch_size=len(ids)) for ids in (spec.val_ids, spec.test_ids))
    model = DefectNet(spec.params["lr"], spec.loss())  # gammatune: lr; spec.loss() for BCE
    trainer = L.Trainer(
        max_epochs=spec.epochs, accelerator=spec.device, devices=1,  # gammatune
        deterministic=True, callbacks=[ReportToGammatune(spec)],  # gammatune: report
        default_root_dir=spec.workdir, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, train, val)
    trainer.save_checkpoint(spec.workdir / "model.ckpt", weights_only=True)

    def scores(loader: DataLoader):
        return torch.cat(trainer.predict(model, loader)).cpu().numpy()

    return {  # gammatune: P(positive) per row id; the checkpoint kept for export
        "val": {"ids": spec.val_ids, "scores": scores(val)},
        "test": {"ids": spec.test_ids, "scores": scores(test)},
        "weights": "model.ckpt",
    }
