"""``model.kind: unet``: gammatune's own segmentation trial, a function of the trainer contract.

``run_trial(spec)`` trains a small U-Net (:class:`gammatune.models.UNet`) on the spec's training
images with per-pixel focal loss (the shared kernel, binary or multiclass) plus a soft Dice term
weighted by ``spec.params["dice"]`` (off when None or 0), stops early on the validation images'
mean foreground soft Dice (reported each epoch, so the pruner can stop it), and returns per-image,
per-class pixel counts ``tp, fp, fn, tn`` of the validation and test images: the segmentation
payload. Because it is a trainer-contract function, seeds, splits, twins, workers, Ray, pruning,
payload checks and the verdict are the study's, exactly as for a user's trainer.

What the trial needs beyond the spec (the data source, the U-Net's channels, batch size, weight
decay, patience) comes from the experiment, in the ``GAMMATUNE_UNET`` environment variable that
gammatune sets for the trial's process (:func:`unet_options`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gammatune.config import Config, NpzData, TableData
from gammatune.device import autocast_dtype
from gammatune.image_masks import load_mask_set, pixel_counts
from gammatune.loss import DiceMode, GammaSchedule, class_balanced_weights, dice_loss, focal_loss
from gammatune.models import UNet
from gammatune.spec import TrialSpec

ENV = "GAMMATUNE_UNET"
MASKS_FILE, WEIGHTS_FILE = "masks.npz", "unet.pt"
MAX_SAVED_MASKS = 64  # masks.npz keeps the first validation images' predictions (the overlay's)


@dataclass(frozen=True, slots=True)
class UnetOptions:
    """The experiment's choices a U-Net trial reads: ``source`` (``data``, as JSON data, its
    path absolute), the U-Net's ``channels``, ``batch_size`` (None: the training images / 16,
    between 4 and 32), AdamW's ``weight_decay``, early stopping's ``patience`` and
    ``min_epochs``, the CPU ``threads`` and ``train.precision`` (bf16 autocast where the
    device has it natively: 1.5-1.7x a U-Net step on a CPU with AMX)."""

    source: dict[str, Any]
    channels: tuple[int, ...]
    batch_size: int | None
    weight_decay: float
    patience: int
    min_epochs: int
    threads: int = 1
    precision: str = "auto"

    def to_env(self) -> dict[str, str]:
        """``{GAMMATUNE_UNET: json}``: what the trial's process reads back."""
        return {ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> UnetOptions:
        """The options gammatune set for this process.

        Raises:
            RuntimeError: Not set: ``run_trial`` runs under a study with ``model.kind: unet``.
        """
        text = os.environ.get(ENV)
        if not text:
            raise RuntimeError(f"{ENV} is not set: run_trial runs in a study (model.kind: unet)")
        raw = json.loads(text)
        return cls(**{**raw, "channels": tuple(raw["channels"])})


def unet_options(config: Config, *, threads: int = 1) -> UnetOptions:
    """The :class:`UnetOptions` of ``config`` (``model.kind: unet``)."""
    source = config.data
    assert isinstance(source, NpzData | TableData)
    dumped = {**source.model_dump(mode="json"), "path": str(source.path.resolve())}
    batch = config.train.batch_size
    return UnetOptions(
        source=dumped,
        channels=tuple(config.model.channels),
        batch_size=None if batch == "auto" else int(batch),
        weight_decay=config.train.weight_decay,
        patience=config.train.patience,
        min_epochs=config.train.min_epochs,
        threads=threads,
        precision=config.train.precision,
    )


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Train and evaluate one U-Net trial (the trainer contract's ``run_trial(spec)``)."""
    return train_unet(spec, UnetOptions.from_env())


def train_unet(spec: TrialSpec, options: UnetOptions) -> dict[str, Any]:
    """Train a U-Net for ``spec`` and return its counts payload.

    Deterministic given ``spec.seed`` on a CPU: the initial weights and the batch order come
    from it alone.

    Returns:
        ``{"val": {"ids", "tp", "fp", "fn", "tn"}, "test": {...}, "weights": "unet.pt",
        "extra": {...}}``, counts ``(images, classes)`` with the background first; the
        workdir gets ``unet.pt`` (the best epoch's weights) and ``masks.npz`` (``ids``, and
        ``pred``, uint8 (n, H, W), of the first 64 validation images).

    Raises:
        gammatune.Pruned: The pruner stopped the trial (from ``spec.report``).
    """
    torch.set_num_threads(max(1, options.threads))
    data = load_mask_set(_source(options.source), list(spec.classes))
    device, n_classes = torch.device(spec.device), len(spec.classes)
    images = _standardized(torch.from_numpy(data.images), spec.train_ids)
    masks = torch.from_numpy(data.masks.astype(np.int64))
    pixels = pixel_counts(data.masks[spec.train_ids], n_classes).sum(axis=0)
    torch.manual_seed(spec.seed)
    model = UNet(images.shape[1], list(options.channels), 1 if n_classes == 2 else n_classes)
    model = model.to(device)
    criterion = _criterion(spec, n_classes, pixels.tolist())
    best_epoch, epochs_run = _fit(model, criterion, images, masks, spec, options)
    val, predicted, _ = _evaluate(model, images, masks, spec.val_ids, n_classes, device)
    test, _, _ = _evaluate(model, images, masks, spec.test_ids, n_classes, device)
    kept = slice(0, MAX_SAVED_MASKS)
    np.savez_compressed(
        spec.workdir / MASKS_FILE, ids=spec.val_ids[kept], pred=predicted[kept].astype(np.uint8)
    )
    torch.save(model.state_dict(), spec.workdir / WEIGHTS_FILE)
    return {
        "val": _payload(spec.val_ids, val),
        "test": _payload(spec.test_ids, test),
        "weights": WEIGHTS_FILE,
        "extra": {"best_epoch": best_epoch, "epochs_run": epochs_run},
    }


def _standardized(images: torch.Tensor, train_ids: np.ndarray) -> torch.Tensor:
    """Images scaled per channel by the training images' mean and standard deviation."""
    train = images[torch.as_tensor(train_ids)]
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    return (images - mean) / train.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-6)


def _fit(
    model: torch.nn.Module,
    criterion: Any,
    images: torch.Tensor,
    masks: torch.Tensor,
    spec: TrialSpec,
    options: UnetOptions,
) -> tuple[int, int]:
    """Train ``model`` with AdamW, each epoch's batches drawn from ``spec.seed``, until the
    validation soft Dice has not improved for ``patience`` epochs (after ``min_epochs``);
    leave it at its best epoch. Returns (best epoch, epochs run)."""
    device, n_classes = torch.device(spec.device), len(spec.classes)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(spec.params.get("lr", 1e-3)),
        weight_decay=options.weight_decay,
    )  # fmt: skip
    autocast = autocast_dtype(device, options.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)
    order = torch.Generator().manual_seed(spec.seed)
    train = torch.as_tensor(spec.train_ids)
    batch = options.batch_size or max(4, min(32, -(-len(train) // 16)))
    best, best_state, best_epoch, epoch = -math.inf, copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(1, spec.epochs + 1):
        model.train()
        for rows in train[torch.randperm(len(train), generator=order)].split(batch):
            if len(rows) < 2:  # batch norm needs two images
                continue
            x, y = images[rows].to(device), masks[rows].to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                logits = model(x)
            scaler.scale(criterion(logits.float(), y)).backward()  # the loss in float32
            scaler.step(optimizer)
            scaler.update()
        value = _evaluate(model, images, masks, spec.val_ids, n_classes, device)[2]
        if value > best:
            best, best_state, best_epoch = value, copy.deepcopy(model.state_dict()), epoch
        spec.report(epoch, value)  # may raise Pruned: the study stops this trial
        if epoch >= max(options.min_epochs, best_epoch + options.patience):
            break
    model.load_state_dict(best_state)
    return best_epoch, epoch


def segmentation_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    *,
    gamma: float | tuple[float, ...] | GammaSchedule,
    alpha: float | tuple[float, ...] | None,
    dice: float | None,
) -> torch.Tensor:
    """Per-pixel focal loss (mean over pixels) plus ``dice`` times the soft Dice loss.

    Binary (``logits`` ``(N, 1, H, W)``): sigmoid focal loss, ``alpha`` the foreground's weight
    (or the pair background, foreground). Multiclass (``(N, C, H, W)``): softmax focal loss on
    every pixel, ``alpha`` per class. ``masks``: ``(N, H, W)`` class indices. ``dice`` None or 0:
    focal loss alone; ``gamma`` 0 with ``alpha`` None is cross-entropy.
    """
    if logits.shape[1] == 1:
        focal = focal_loss(logits[:, 0], masks.to(logits.dtype), gamma=gamma, alpha=alpha)
        mode: DiceMode = "binary"
    else:
        flat = logits.movedim(1, -1).reshape(-1, logits.shape[1])  # (N * H * W, C)
        focal = focal_loss(flat, masks.reshape(-1), gamma=gamma, alpha=alpha, mode="multiclass")
        mode = "multiclass"
    if not dice:
        return focal
    return focal + dice * dice_loss(logits, masks, mode=mode)


def _criterion(spec: TrialSpec, n_classes: int, pixels: list[int]) -> Any:
    """The trial's loss: its gamma (``gamma_rare`` on the foreground classes, a schedule as
    given), its alpha (multiclass: ``alpha`` on every foreground class, ``1 - alpha`` on the
    background, as MONAI's focal loss; a per-class scheme from the training pixels) and Dice
    weight."""
    params = spec.params
    gamma: float | tuple[float, ...] | GammaSchedule = spec.gamma
    schedule = spec.loss_terms[0]
    if isinstance(schedule, GammaSchedule):
        gamma = schedule
    elif params.get("gamma_rare") is not None:
        gamma = (spec.gamma, *[float(params["gamma_rare"])] * (n_classes - 1))
    alpha: float | tuple[float, ...] | None = spec.alpha
    if params.get("weights") is not None:
        beta = params.get("beta")
        alpha = tuple(class_balanced_weights(pixels, params["weights"], beta or 0.999))
    elif spec.alpha is not None and n_classes > 2:
        alpha = (1 - spec.alpha, *[spec.alpha] * (n_classes - 1))
    dice = params.get("dice")

    def criterion(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(logits, masks, gamma=gamma, alpha=alpha, dice=dice)

    return criterion


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    ids: np.ndarray,
    n_classes: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-image counts ``(n, C, 4)`` (``tp, fp, fn, tn``) of ``ids``, the predicted masks
    ``(n, H, W)`` (the class of highest probability; binary: sigmoid >= 0.5) and the soft
    Dice (:func:`_soft_dice`)."""
    model.eval()
    counts, predicted, overlaps, sums, truths = [], [], [], [], []
    for rows in torch.as_tensor(ids).split(64):
        logits = model(images[rows].to(device)).float()
        if logits.shape[1] == 1:
            fore = torch.sigmoid(logits[:, 0])
            probs = torch.stack([1 - fore, fore], dim=1)
        else:
            probs = torch.softmax(logits, dim=1)
        pred, truth = probs.argmax(dim=1).cpu(), masks[rows]
        p = torch.nn.functional.one_hot(pred, n_classes).bool()  # (n, H, W, C)
        t = torch.nn.functional.one_hot(truth, n_classes).bool()
        tp, fp, fn = ((p & t).sum((1, 2)), (p & ~t).sum((1, 2)), (~p & t).sum((1, 2)))
        tn = truth[0].numel() - tp - fp - fn
        counts.append(torch.stack([tp, fp, fn, tn], dim=-1))
        predicted.append(pred)
        soft = probs.cpu().movedim(1, -1)  # (n, H, W, C)
        overlaps.append((soft * t).sum((1, 2)))
        sums.append(soft.sum((1, 2)))
        truths.append(t.sum((1, 2)))
    soft_dice = _soft_dice(*(torch.cat(x).double().numpy() for x in (overlaps, sums, truths)))
    return torch.cat(counts).numpy(), torch.cat(predicted).numpy(), soft_dice


def _soft_dice(overlap: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> float:
    """Early stopping's (and the pruner's) value: the thresholded Dice's smooth twin, per image
    and class ``2 sum(p t) / (sum p + sum t)`` on probabilities ``p`` and masks ``t``, averaged
    as the objective ``dice`` is (over the images whose mask holds the class, then over the
    foreground classes). The thresholded Dice sits at 0 while a model learns to predict any
    foreground at all, and stopping on a flat 0 ends a trial before it learns (PITFALLS 1).
    Arrays ``(n, C)``: ``sum(p t)``, ``sum p``, ``sum t``."""
    holds = truth[:, 1:] > 0
    dice = 2 * overlap[:, 1:] / np.maximum(predicted[:, 1:] + truth[:, 1:], 1e-12)
    seen = holds.sum(axis=0)
    means = np.where(holds, dice, 0.0).sum(axis=0)[seen > 0] / seen[seen > 0]
    return float(means.mean()) if means.size else 0.0


def _payload(ids: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    return {"ids": ids, **{k: counts[..., i] for i, k in enumerate(("tp", "fp", "fn", "tn"))}}


def _source(dumped: dict[str, Any]) -> NpzData | TableData:
    kind = NpzData if dumped["source"] == "npz" else TableData
    return kind.model_validate({**dumped, "path": Path(dumped["path"])})
