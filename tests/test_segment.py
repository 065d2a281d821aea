"""model.kind: unet's trial function: its loss, its payload, determinism and pruning."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from gammatune.config import UNET_TRAINER, Config
from gammatune.data import load_data
from gammatune.errors import Pruned
from gammatune.loss import dice_loss
from gammatune.models import UNet
from gammatune.record import Setting
from gammatune.segment import run_trial, segmentation_loss, train_unet, unet_options
from gammatune.tasks import CheckedCounts, SplitIds, segmentation_payload
from gammatune.tuning import trial_spec
from tests.test_image_masks import config, write_npz


def unet_spec(tmp_path: Path, setting: Setting, *, binary: bool = False, **changes: Any):
    y = np.load(write_npz(tmp_path))["y"]
    if binary:
        write_npz(tmp_path, y=np.minimum(y, 1))
    cfg = config(
        tmp_path,
        {"source": "npz", "path": str(tmp_path / "set.npz")},
        train={"epochs": 3, "lr": 0.01, "patience": 2, "min_epochs": 1},
        **changes,
    )
    splits = load_data(cfg)
    spec = trial_spec(cfg, splits, setting, trial=("search", 0), device=torch.device("cpu"))
    return cfg, splits, spec


def test_the_trial_returns_counts_the_study_accepts(tmp_path: Path) -> None:
    cfg, splits, spec = unet_spec(tmp_path, Setting(1.0, 0.75, dice=1.0))
    assert spec.classes == ("background", "class_1", "class_2")
    payload = train_unet(spec, unet_options(cfg))
    ids = SplitIds(spec.val_ids, spec.test_ids, splits.y_val.numpy(), splits.y_test.numpy(), 3)
    checked = segmentation_payload(payload, ids)
    assert isinstance(checked, CheckedCounts)
    assert checked.scores.val.shape == (len(spec.val_ids), 3, 4)
    assert checked.scores.test.shape == (len(spec.test_ids), 3, 4)
    assert (checked.scores.val.sum(axis=2) == 16 * 16).all()  # every class counts every pixel
    truth = np.load(tmp_path / "set.npz")["y"][spec.val_ids]
    held = np.stack([(truth == c).sum(axis=(1, 2)) for c in range(3)], axis=1)
    assert (checked.scores.val[..., 0] + checked.scores.val[..., 2] == held).all()  # tp + fn
    saved = np.load(spec.workdir / "masks.npz")
    assert saved["ids"].tolist() == spec.val_ids.tolist()
    assert saved["pred"].dtype == np.uint8 and saved["pred"].shape == truth.shape
    tp = np.array([((saved["pred"] == c) & (truth == c)).sum(axis=(1, 2)) for c in range(3)]).T
    assert (tp == checked.scores.val[..., 0]).all()  # the saved masks are the scored ones
    assert (spec.workdir / payload["weights"]).is_file()
    assert 1 <= payload["extra"]["best_epoch"] <= payload["extra"]["epochs_run"] <= 3


def test_the_same_seed_gives_the_same_counts_and_another_seed_other_ones(tmp_path: Path) -> None:
    cfg, _, spec = unet_spec(tmp_path, Setting(2.0, None))
    options = unet_options(cfg)
    first, again = train_unet(spec, options), train_unet(spec, options)
    for part in ("val", "test"):
        for key in ("tp", "fp", "fn", "tn"):
            assert np.array_equal(first[part][key], again[part][key])
    other = train_unet(dataclasses.replace(spec, seed=spec.seed + 1), options)
    assert not all(np.array_equal(first["val"][k], other["val"][k]) for k in ("tp", "fp"))


def test_a_binary_set_trains_one_logit_and_returns_two_classes(tmp_path: Path) -> None:
    cfg, _, spec = unet_spec(tmp_path, Setting(0.5, 0.25, dice=0.5), binary=True)
    assert spec.classes == ("background", "class_1")
    payload = train_unet(spec, unet_options(cfg))
    assert payload["val"]["tp"].shape == (len(spec.val_ids), 2)


def test_the_pruner_stops_the_trial(tmp_path: Path) -> None:
    cfg, _, spec = unet_spec(tmp_path, Setting(1.0, None))
    asked: list[tuple[int, float]] = []

    def report(step: int, value: float) -> bool:
        asked.append((step, value))
        return True

    with pytest.raises(Pruned):
        train_unet(dataclasses.replace(spec, _report=report), unet_options(cfg))
    assert len(asked) == 1 and asked[0][0] == 1 and 0 <= asked[0][1] <= 1


def test_run_trial_reads_its_options_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, _, spec = unet_spec(tmp_path, Setting(1.0, None))
    with pytest.raises(RuntimeError, match="GAMMATUNE_UNET is not set"):
        run_trial(spec)
    for key, value in unet_options(cfg).to_env().items():
        monkeypatch.setenv(key, value)
    assert run_trial(spec)["val"]["tp"].shape == (len(spec.val_ids), 3)


def test_the_study_runs_it_as_a_trainer_in_a_process_of_its_own(tmp_path: Path) -> None:
    from gammatune.tuning._trainer import _train

    cfg, _, spec = unet_spec(tmp_path, Setting(1.0, 0.5, dice=0.5))
    assert cfg.trainer is not None and cfg.trainer.function == UNET_TRAINER
    ended = _train(cfg, spec, None)
    assert ended.reason is None, ended.reason
    assert len(ended.curve) >= 1 and isinstance(ended.payload, dict)
    assert ended.payload["val"]["tp"].shape == (len(spec.val_ids), 3)


def test_the_loss_is_cross_entropy_over_pixels_at_gamma_0_plus_the_weighted_dice() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5, 6)
    masks = torch.randint(0, 4, (3, 5, 6))
    ce = F.cross_entropy(logits, masks)
    plain = segmentation_loss(logits, masks, gamma=0.0, alpha=None, dice=None)
    assert torch.allclose(plain, ce, atol=1e-6)
    assert torch.equal(segmentation_loss(logits, masks, gamma=0.0, alpha=None, dice=0.0), plain)
    with_dice = segmentation_loss(logits, masks, gamma=0.0, alpha=None, dice=0.5)
    assert torch.allclose(with_dice, ce + 0.5 * dice_loss(logits, masks), atol=1e-6)
    focal = segmentation_loss(logits, masks, gamma=2.0, alpha=None, dice=None)
    assert focal < plain  # focal loss down-weights what is already right


def test_the_binary_loss_is_bce_over_pixels_at_gamma_0() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 4, 4)
    masks = torch.randint(0, 2, (2, 4, 4))
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], masks.float())
    plain = segmentation_loss(logits, masks, gamma=0.0, alpha=None, dice=None)
    assert torch.allclose(plain, bce, atol=1e-6)
    weighted = segmentation_loss(logits, masks, gamma=0.0, alpha=None, dice=1.0)
    assert torch.allclose(weighted, bce + dice_loss(logits, masks, mode="binary"), atol=1e-6)


def test_the_unet_keeps_any_image_size() -> None:
    model = UNet(2, [4, 8, 16], 3)
    assert model(torch.zeros(2, 2, 13, 22)).shape == (2, 3, 13, 22)


def test_the_dice_weight_is_searched_with_a_unet_only(tmp_path: Path) -> None:
    from gammatune.tuning._stages import _baseline_points, grid_points

    cfg = config(
        tmp_path,
        {"source": "npz", "path": "x.npz"},
        search={"gamma": [0, 1], "alpha": [None], "dice": [0, 0.5]},
    )
    assert [p.name for p in grid_points(cfg)] == [
        "gamma=0 alpha=off dice=0", "gamma=0 alpha=off dice=0.5",
        "gamma=1 alpha=off dice=0", "gamma=1 alpha=off dice=0.5",
    ]  # fmt: skip
    assert "gamma=0 alpha=off dice=0.5" in [p.name for p in _baseline_points(cfg)]
    raw: dict[str, Any] = {"name": "x", "data": {"source": "synthetic"}, "search": {"dice": [1]}}
    with pytest.raises(ValidationError, match="search.dice: a Dice term is for segmentation"):
        Config.model_validate(raw)


def test_a_unet_with_the_users_trainer_is_refused(tmp_path: Path) -> None:
    raw = {
        "name": "x",
        "data": {"source": "npz", "path": "x.npz"},
        "model": {"kind": "unet"},
        "trainer": {"function": "mine:run"},
    }
    with pytest.raises(ValidationError, match="model.kind: unet is gammatune's own trainer"):
        Config.model_validate(raw)


def test_early_stopping_watches_the_soft_dice_of_the_images_holding_each_class() -> None:
    from gammatune.segment import _soft_dice

    # two images, classes background/1/2; image 1 lacks class 2 (left out of its mean)
    overlap = np.array([[9.0, 3.0, 1.0], [9.0, 2.0, 0.0]])
    predicted = np.array([[10.0, 4.0, 2.0], [10.0, 2.0, 1.0]])  # sum p per class
    truth = np.array([[10.0, 4.0, 2.0], [10.0, 2.0, 0.0]])  # sum t per class
    class_1 = (2 * 3 / 8 + 2 * 2 / 4) / 2
    class_2 = 2 * 1 / 4
    assert _soft_dice(overlap, predicted, truth) == pytest.approx((class_1 + class_2) / 2)
    assert _soft_dice(overlap[:, :2], predicted[:, :2], np.zeros((2, 2))) == 0.0


@pytest.mark.slow
def test_gammatune_run_segments_end_to_end(tmp_path: Path) -> None:
    import csv

    import yaml
    from typer.testing import CliRunner

    from gammatune.cli import app

    write_npz(tmp_path)
    raw = {
        "name": "seg",
        "data": {"source": "npz", "path": "set.npz", "groups": "patient"},
        "model": {"kind": "unet", "channels": [4]},
        "train": {"epochs": 2, "lr": 0.01, "patience": 1, "min_epochs": 1, "precision": "fp32"},
        "objective": "dice",
        "search": {"gamma": [0.0, 1.0], "alpha": [None], "dice": [0, 1]},
        "refine": {"n_trials": 1},
        "confirm": {"top_k": 1, "repeats": 2},
        "output_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "seg"
    with (run / "trials.csv").open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert {"val_dice", "test_dice", "dice"} <= set(rows[0])
    assert {r["dice"] for r in rows if r["stage"] == "search"} >= {"0.0", "1.0"}
    assert all(0 <= float(r["val_dice"]) <= 1 for r in rows if r["val_dice"])
    assert (run / "report.html").is_file()
    assert any(run.glob("workdirs/confirm-*/masks.npz"))
