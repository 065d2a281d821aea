"""The report's detection and segmentation figures: the drawn images are the ones where the two
models differ, they draw from the data's files and arrays, and a classification page keeps its
figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from gammatune.detection import Detections
from gammatune.report._detection_view import detections_figure, hits, pick_images, score
from gammatune.report._images import ImageMissing, ImageSource
from gammatune.report._mask_view import Masks, image_dice, load_masks, overlay_figure
from gammatune.report._mask_view import pick_images as pick_masks
from gammatune.report._page import _FIGURES
from gammatune.report._summary import SummaryRow
from gammatune.report._tasks import figure_entries
from tests.conftest import write_config


def _row(label: str, gamma: float) -> SummaryRow:
    return SummaryRow(
        label, "confirm", 1, gamma, None, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, (0.4, 0.6), 0.5
    )


def _boxes(*boxes: tuple[float, ...]) -> np.ndarray:
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def test_hits_take_each_true_box_once_by_score_and_class() -> None:
    truth, truth_labels = _boxes((0, 0, 10, 10), (20, 20, 30, 30)), np.array([0, 1])
    boxes = _boxes((0, 0, 10, 10), (1, 1, 10, 10), (20, 20, 30, 30), (40, 40, 45, 45))
    found = hits(boxes, np.array([0.6, 0.9, 0.8, 0.7]), np.array([0, 0, 0, 1]), truth,
                 truth_labels)  # fmt: skip
    # The higher-scored near box takes the first object; the third box has the wrong class.
    assert found.tolist() == [False, True, False, False]
    assert hits(boxes[:0], np.zeros(0), np.zeros(0, int), truth, truth_labels).tolist() == []


def _detections(n: int, missed: dict[int, int], false: dict[int, int]) -> Detections:
    """``n`` images, each with 2 objects; every object found at score 0.9, but ``missed[i]``
    of image i, and ``false[i]`` false boxes at score 0.95 in image i."""
    truth = _boxes((2, 2, 8, 8), (12, 12, 20, 20))
    boxes, scores, labels = [], [], []
    for i in range(n):
        kept = truth[missed.get(i, 0) :]
        extra = _boxes(*[(24 + k, 24, 28 + k, 28) for k in range(false.get(i, 0))])
        boxes.append(np.vstack([kept, extra]))
        scores.append(np.r_[np.full(len(kept), 0.9), np.full(len(extra), 0.95)])
        labels.append(np.zeros(len(kept) + len(extra), np.int64))
    gt = tuple(truth for _ in range(n))
    return Detections(np.arange(n) * 10, tuple(boxes), tuple(scores), tuple(labels), gt,
                      tuple(np.zeros(2, np.int64) for _ in range(n)), 1)  # fmt: skip


def test_detection_images_are_the_ones_whose_errors_differ_most() -> None:
    ce = score(_detections(8, missed={3: 2, 5: 1}, false={6: 1}))
    focal = score(_detections(8, missed={5: 1}, false={}))
    assert ce.threshold == 0.9 and focal.threshold == 0.9  # F1-best: keep the 0.9 boxes
    assert [ce.errors(i) for i in range(8)] == [0, 0, 0, 2, 0, 1, 1, 0]
    assert pick_images(ce, focal, 2) == [3, 6]  # 2 more errors, then 1; image 5: the same
    assert pick_images(ce, focal, 3) == [3, 6, 5]  # then the most errors


def _png(path: Path, pixels: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return f"{path.parent.name}/{path.name}"


def test_detections_figure_draws_the_table_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = [
        _png(tmp_path / "img" / f"{i}.png", rng.integers(0, 255, (32, 32))) for i in range(80)
    ]
    source = ImageSource(folder=tmp_path, table=pd.DataFrame({"image": names}))
    pair = [(_row("plain CE", 0.0), _detections(8, {3: 2}, {})),
            (_row("recommended", 2.0), _detections(8, {}, {1: 1}))]  # fmt: skip
    figure = detections_figure(pair, source, ["shape"], n_images=3)
    assert len(figure.axes) == 6  # 2 models x 3 images
    assert figure.axes[0].get_title() == "image 30: 0 boxes, 2 errors"
    assert figure.axes[1].get_title() == "image 10: 2 boxes, 0 errors"  # CE's row, then ...
    assert figure.axes[4].get_title() == "image 10: 3 boxes, 1 error"  # the recommendation's
    missing = ImageSource(folder=tmp_path / "elsewhere", table=pd.DataFrame({"image": names}))
    with pytest.raises(ImageMissing, match="elsewhere/img/30.png cannot be read"):
        detections_figure(pair, missing, ["shape"], n_images=3)


def test_image_dice_and_the_mask_images_picked(tmp_path: Path) -> None:
    truth = np.zeros((6, 8, 8), np.int64)
    truth[:, 2:6, 2:6] = 1
    truth[4] = 0  # an image without foreground
    assert image_dice(truth[0], truth[0]) == 1.0 and image_dice(truth[4], truth[4]) == 1.0
    assert image_dice(np.zeros((8, 8), int), truth[0]) == 0.0
    first, second = truth.copy(), truth.copy()
    second[2] = 0  # misses image 2 entirely
    second[5, 2:4, 2:6] = 2  # half of image 5 the wrong class
    first[1, 0, 0] = 1  # one stray pixel: differs, but barely
    ids = np.arange(6) + 100
    a, b = Masks(ids, first), Masks(ids, second)
    assert pick_masks(a, b, dict(zip(ids.tolist(), truth, strict=True)), 3) == [102, 105, 101]
    np.savez(tmp_path / "masks.npz", ids=ids, pred=second.astype(np.uint8))
    assert load_masks(tmp_path / "masks.npz").pred.shape == (6, 8, 8)
    with pytest.raises(ImageMissing, match="no .*masks.npz"):
        load_masks(tmp_path / "workdirs" / "confirm-00003" / "masks.npz")

    images = np.random.default_rng(1).normal(size=(106, 1, 8, 8))
    masks = np.zeros((106, 8, 8), np.int64)
    masks[100:] = truth
    source = ImageSource(images=images, masks=masks)
    pair = [(_row("plain CE", 0.0), b), (_row("recommended", 1.0), a)]
    figure = overlay_figure(pair, source, ["background", "lesion", "cyst"], n_images=2)
    assert len(figure.axes) == 2 * 4  # image, truth, 2 predictions per row
    assert figure.axes[0].get_ylabel() == "image 102"


def test_a_classification_page_keeps_its_figures() -> None:
    assert figure_entries("classification", _FIGURES) == _FIGURES
    stems = [stem for stem, _, _ in figure_entries("detection", _FIGURES)]
    assert stems[:5] == ["forest", "ap_vs_gamma", "ap_per_class", "pr_curves", "detections"]
    assert {"objective_vs_gamma", "per_class", "confusion"}.isdisjoint(stems)
    stems = [stem for stem, _, _ in figure_entries("segmentation", _FIGURES)]
    assert stems[:4] == ["forest", "dice_vs_gamma", "dice_per_class", "overlay"]


def test_a_classification_run_draws_the_same_page_with_the_task_figures(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gammatune.cli import app
    from gammatune.config import load_config
    from gammatune.report._page import figures, render_html, study_summary
    from gammatune.report._plots import to_png
    from gammatune.report._tasks import with_task_figures

    path = write_config(tmp_path, search={"gamma": [2.0], "alpha": [0.75]},
                        refine={"n_trials": 1}, confirm={"top_k": 1, "repeats": 2})  # fmt: skip
    assert CliRunner().invoke(app, ["run", "-c", str(path)]).exit_code == 0
    config = load_config(path)
    frame, summary, facts = study_summary(config)
    names = [str(n) for n in facts["class_names"]]
    before = figures(frame, summary, names)
    after = with_task_figures(config, frame, summary, names, figures(frame, summary, names))
    assert list(after) == list(before) and "forest" in after
    pngs = {k: to_png(f) for k, f in after.items() if not isinstance(f, str)}
    assert render_html(frame, summary, facts, pngs, name="tiny") == render_html(
        frame, summary, facts, {k: to_png(f) for k, f in before.items()}, name="tiny"
    )


_SEGMENTATION_TRAINER = '''
"""A trainer of the counts payload: one 3 x 3 convolution per pixel, trained with the trial's
focal loss on the table's PNG images and masks; it keeps its validation masks in masks.npz."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent


def _read(spec, ids, column):
    return np.stack([np.asarray(Image.open(HERE / spec.table[column].iloc[i])) for i in ids])


def run_trial(spec):
    torch.manual_seed(spec.seed)
    x = torch.tensor(_read(spec, spec.train_ids, "image"), dtype=torch.float32)[:, None] / 255
    y = torch.tensor(_read(spec, spec.train_ids, "mask"), dtype=torch.float32)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.params["lr"])
    loss_fn = spec.loss()
    for epoch in range(spec.epochs):
        loss = loss_fn(model(x)[:, 0].reshape(-1), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        spec.report(epoch, -loss.item())
    payload = {}
    for name, ids in (("val", spec.val_ids), ("test", spec.test_ids)):
        images = torch.tensor(_read(spec, ids, "image"), dtype=torch.float32)[:, None] / 255
        with torch.no_grad():
            pred = (model(images)[:, 0] > 0).numpy().astype(np.uint8)
        truth = _read(spec, ids, "mask")
        counts = {key: np.zeros((len(ids), 2), np.int64) for key in ("tp", "fp", "fn", "tn")}
        for c in (0, 1):
            p, t = pred == c, truth == c
            for key, hit in (("tp", p & t), ("fp", p & ~t), ("fn", ~p & t), ("tn", ~p & ~t)):
                counts[key][:, c] = hit.reshape(len(ids), -1).sum(axis=1)
        payload[name] = {"ids": ids, **counts}
        if name == "val":
            np.savez(spec.workdir / "masks.npz", ids=ids, pred=pred)
    return payload
'''


def _lesions(folder: Path, n_images: int) -> None:
    """``n_images`` 16 x 16 PNGs, a bright square lesion in about half, their masks, a table."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_images):
        mask = np.zeros((16, 16), np.uint8)
        if i % 2:
            r, c, size = *rng.integers(0, 11, 2), int(rng.integers(3, 6))
            mask[r : r + size, c : c + size] = 1
        pixels = np.clip(60 + 120 * mask + rng.normal(0, 25, mask.shape), 0, 255)
        image, truth = (
            _png(folder / "img" / f"{i}.png", pixels),
            _png(folder / "gt" / f"{i}.png", mask),
        )
        rows.append(
            {"id": i, "image": image, "mask": truth, "label": "lesion" if i % 2 else "none"}
        )
    pd.DataFrame(rows).to_csv(folder / "lesions.csv", index=False)


def test_a_segmentation_run_draws_dice_and_the_masks(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gammatune.cli import app

    _lesions(tmp_path, 60)
    (tmp_path / "seg_trainer.py").write_text(_SEGMENTATION_TRAINER)
    experiment = {
        "name": "lesions", "seed": 0, "output_dir": str(tmp_path / "runs"), "objective": "dice",
        "data": {"source": "csv", "path": "lesions.csv", "target": "label",
                 "classes": ["background", "lesion"]},
        "trainer": {"function": "seg_trainer:run_trial"},
        "train": {"epochs": 15, "lr": 0.05, "device": "cpu"},
        "search": {"gamma": [2.0], "alpha": [0.25]}, "refine": {"n_trials": 1},
        "confirm": {"top_k": 1, "repeats": 2},
    }  # fmt: skip
    path = tmp_path / "lesions.yaml"
    path.write_text(yaml.safe_dump(experiment), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "lesions"
    trials = pd.read_csv(run / "trials.csv")
    assert set(trials["task"]) == {"segmentation"} and trials["val_dice"].notna().all()
    page = (run / "report.html").read_text(encoding="utf-8")
    for stem in ("forest", "dice_vs_gamma", "dice_per_class", "overlay"):
        assert f'<figure id="{stem}">' in page, stem
    assert 'id="objective_vs_gamma"' not in page and 'class="note"' not in page

    for masks in run.glob("workdirs/*/masks.npz"):
        masks.unlink()  # a trainer that keeps no masks: the overlay is a note, the rest stays
    assert CliRunner().invoke(app, ["report", "-c", str(path)]).exit_code == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert '<p class="note" id="overlay">No masks drawn: no workdirs/' in page
    assert '<figure id="dice_vs_gamma">' in page


def test_the_gamma_zero_references_name_the_class_weight_and_the_dice_term() -> None:
    from gammatune.report._task_plots import references

    def trial(stage: str, gamma: float, alpha: float | None, dice: float | None, value: float):
        return {"stage": stage, "state": "COMPLETE", "model": "configured", "gamma": gamma,
                "alpha": alpha, "dice": dice, "val_dice": value}  # fmt: skip

    frame = pd.DataFrame([
        trial("baseline", 0.0, None, None, 0.50), trial("baseline", 0.0, None, None, 0.60),
        trial("baseline", 0.0, 0.25, None, 0.55), trial("search", 0.0, None, 0.5, 0.70),
        trial("search", 0.0, 0.25, 1.0, 0.65), trial("search", 2.0, None, 0.5, 0.90),
        trial("confirm", 0.0, None, 0.5, 0.99),  # confirm's re-splits: not a reference
    ])  # fmt: skip
    found = dict(references(frame, "dice"))
    assert list(found) == ["CE", "CE, Dice 0.5", "CE, alpha 0.25", "CE, alpha 0.25, Dice 1"]
    assert found["CE"] == pytest.approx(0.55) and found["CE, Dice 0.5"] == pytest.approx(0.70)
    assert references(frame, "ap") == []
