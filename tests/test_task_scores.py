"""Segmentation and detection trials scored by a study: evaluations, files, the image bootstrap,
and the whole workflow on a user's trainer that returns pixel counts or boxes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score, jaccard_score
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import load_config
from gammatune.detection import Detections, DetectionScores, coco_metrics
from gammatune.metrics import objective_value
from gammatune.report import trials_frame
from gammatune.scores_files import load_any_scores, load_detections_file, save_scores
from gammatune.segmentation import (
    METRICS,
    SegmentationScores,
    evaluate_segmentation,
    weighted_metric,
)
from gammatune.task_scores import counts_evaluation, detections_evaluation, paired_differences

runner = CliRunner()


def masks(seed: int = 0, n: int = 12, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted masks (n, size, size) of 3 classes, some images empty."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, size, size), int)
    for i in range(n):
        if i % 4:
            x, y = rng.integers(0, size - 5, 2)
            truth[i, x : x + 5, y : y + 5] = 1 + i % 2
    noise = rng.random(truth.shape) < 0.05
    predicted = np.where(noise, rng.integers(0, 3, truth.shape), truth)
    return truth, predicted


def counts_of(truth: np.ndarray, predicted: np.ndarray, classes: int = 3) -> np.ndarray:
    out = []
    for t, p in zip(truth, predicted, strict=True):
        row = []
        for c in range(classes):
            tc, pc = t == c, p == c
            row.append([(tc & pc).sum(), (~tc & pc).sum(), (tc & ~pc).sum(), (~tc & ~pc).sum()])
        out.append(row)
    return np.array(out)


def test_segmentation_evaluation_matches_scikit_learn_over_pixels() -> None:
    truth, predicted = masks()
    evaluation = counts_evaluation(counts_of(truth, predicted))
    flat_t, flat_p = truth.ravel(), predicted.ravel()
    per_class_f1 = f1_score(flat_t, flat_p, labels=[0, 1, 2], average=None)
    np.testing.assert_allclose(evaluation.task_metrics["dice_micro_per_class"], per_class_f1)
    iou = jaccard_score(flat_t, flat_p, labels=[1, 2], average="macro")
    assert evaluation.task_metrics["iou_micro"] == pytest.approx(iou)
    fore_t, fore_p = flat_t > 0, flat_p > 0
    tp = (fore_t & fore_p & (flat_t == flat_p)).sum()
    assert evaluation.precision == pytest.approx(tp / fore_p.sum())
    assert evaluation.recall == pytest.approx(tp / fore_t.sum())
    assert evaluation.task_metrics["positives"] == 9  # images holding a foreground pixel
    assert objective_value(evaluation, "dice") == evaluation.task_metrics["dice"]


def test_weighted_metrics_at_unit_weights_are_the_evaluation() -> None:
    counts = counts_of(*masks(1))
    seg = evaluate_segmentation(counts)
    ones = np.ones((1, len(counts)))
    for metric in METRICS:
        expected = getattr(seg, metric)
        assert weighted_metric(counts, ones, metric)[0] == pytest.approx(expected), metric
    twice = np.vstack([ones, 2 * ones])  # each image drawn twice: every figure the same
    for metric in METRICS:
        values = weighted_metric(counts, twice, metric)
        assert values[0] == pytest.approx(values[1]), metric


def detections(seed: int, jitter: float, n: int = 20) -> Detections:
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("b", "s", "l", "gb", "gl")}
    for i in range(n):
        k = i % 3  # image 0, 3, ...: no object
        gt = np.array([[10.0 * j, 5, 10.0 * j + 8, 13] for j in range(k)]).reshape(-1, 4)
        labels = np.arange(k) % 2
        found = gt + rng.normal(0, jitter, gt.shape)
        false = np.array([[40.0, 40, 48, 48]])
        parts["b"].append(np.vstack([found, false]))
        parts["s"].append(np.r_[rng.uniform(0.5, 1, k), [0.3]])
        parts["l"].append(np.r_[labels, [0]])
        parts["gb"].append(gt)
        parts["gl"].append(labels)
    return Detections(
        np.arange(n), *(tuple(parts[k]) for k in ("b", "s", "l", "gb", "gl")), n_classes=2
    )


def test_detection_evaluation_is_cocos_and_counts_at_iou_half() -> None:
    dets = detections(0, jitter=0.3)
    evaluation = detections_evaluation(dets, threshold=0.5)
    coco = coco_metrics(dets)
    assert evaluation.task_metrics["ap"] == pytest.approx(coco.ap, abs=1e-12)
    assert evaluation.task_metrics["ap_per_class"] == pytest.approx(list(coco.per_class_ap))
    # 19 true boxes, all found (jitter 0.3 px keeps IoU > 0.5); the 0.3-score false ones are cut
    assert (evaluation.recall, evaluation.precision) == (1.0, 1.0)
    assert detections_evaluation(dets, threshold=0.2).precision == pytest.approx(19 / 39)
    recall, precision, _ = np.array(evaluation.pr_curve).T
    assert recall[-1] == 1.0 and precision[-1] == pytest.approx(19 / 39, abs=1e-5)


def test_detections_and_counts_come_back_from_the_scores_file(tmp_path: Path) -> None:
    config = load_config(_table_experiment(tmp_path, "seg"))
    dets = DetectionScores(detections(0, 0.5), None)
    name = save_scores(config, "confirm-00001", dets)
    again = load_detections_file(config, name)
    assert again is not None and again.test is None
    np.testing.assert_array_equal(again.val.ids, dets.val.ids)
    for key in ("boxes", "scores", "labels", "gt_boxes", "gt_labels"):
        for x, y in zip(getattr(again.val, key), getattr(dets.val, key), strict=True):
            np.testing.assert_array_equal(x, y)
    counts = SegmentationScores(counts_of(*masks()), counts_of(*masks(2)))
    back = load_any_scores(config, save_scores(config, "confirm-00002", counts))
    assert isinstance(back, SegmentationScores)
    np.testing.assert_array_equal(back.test, counts.test)


def test_the_image_bootstrap_pairs_images_and_sees_a_real_gap() -> None:
    good, bad = detections(0, 0.3), detections(0, 3.0)
    same = paired_differences(
        [DetectionScores(good, None)] * 2, [DetectionScores(good, None)] * 2, "ap"
    )
    assert same is not None and not same.any()
    gap = paired_differences([DetectionScores(good, None)], [DetectionScores(bad, None)], "ap")
    assert gap is not None and np.percentile(gap, 2.5) > 0
    assert (
        paired_differences([DetectionScores(good, None)], [DetectionScores(bad, None)], "f1")
        is None
    )


SEGMENTER = '''
import numpy as np

def run_trial(spec):
    """Pixel counts of 100-pixel images: foreground found better with gamma (a stand-in)."""
    out = {}
    for split, ids in (("val", spec.val_ids), ("test", spec.test_ids)):
        rows = []
        for i in ids:
            rng = np.random.default_rng([spec.seed, int(i)])
            fg = 0 if i % 4 == 0 else 5 + int(i) % 7
            hit = min(fg, int(round(fg * (0.55 + 0.15 * spec.gamma + rng.normal(0, 0.1)))))
            hit = max(hit, 0)
            fp = int(rng.integers(0, 3))
            rows.append([hit, fp, fg - hit, 100 - hit - fp - (fg - hit)])
        c = np.array(rows)
        out[split] = {"ids": ids, "tp": c[:, 0], "fp": c[:, 1], "fn": c[:, 2], "tn": c[:, 3]}
    spec.report(0, 0.3)
    spec.report(1, 0.5)
    return out
'''

DETECTOR = '''
import numpy as np

def run_trial(spec):
    """Boxes found tighter with gamma (a stand-in for a detector)."""
    out = {}
    for split, ids in (("val", spec.val_ids), ("test", spec.test_ids)):
        part = {k: [] for k in ("boxes", "scores", "labels", "gt_boxes", "gt_labels")}
        for i in ids:
            rng = np.random.default_rng([spec.seed, int(i)])
            k = int(i) % 3
            gt = np.array([[12.0 * j, 4, 12.0 * j + 9, 13] for j in range(k)]).reshape(-1, 4)
            labels = (np.arange(k) + int(i)) % 2
            found = gt + np.tile(rng.normal(0, 3 - spec.gamma, (k, 2)), 2)  # shifted
            part["boxes"].append(np.vstack([found, [[50, 50, 58, 58]]]))
            part["scores"].append(np.r_[rng.uniform(0.4, 1, k), [0.45]])
            part["labels"].append(np.r_[labels, [0]])
            part["gt_boxes"].append(gt)
            part["gt_labels"].append(labels)
        out[split] = {"ids": ids, **part}
    return out
'''


def _table_experiment(folder: Path, task: str, **changes: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = 160
    ids = np.arange(n)
    if task == "seg":
        label = np.where(ids % 4 == 0, "empty", "lesion")
        classes, objective, code = ["background", "lesion"], "dice", SEGMENTER
    else:
        label = np.where(ids % 3 == 0, "none", np.where(ids % 3 == 1, "one", "two"))
        classes, objective, code = ["circle", "square"], "ap", DETECTOR
    pd.DataFrame({"id": ids, "stratum": label}).to_csv(folder / "images.csv", index=False)
    (folder / "mytask.py").write_text(code, encoding="utf-8")
    config: dict[str, Any] = {
        "name": task,
        "data": {
            "source": "csv", "path": "images.csv", "target": "stratum", "id": "id",
            "classes": classes,
        },
        "trainer": {"function": "mytask:run_trial"},
        "objective": objective,
        "train": {"epochs": 1, "device": "cpu"},
        "search": {"gamma": [0, 1, 2], "alpha": [0.5]},
        "refine": {"n_trials": 1},
        "confirm": {"top_k": 1, "repeats": 3},
        "output_dir": "runs",
        **changes,
    }  # fmt: skip
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.parametrize(("task", "metric"), [("seg", "dice"), ("det", "ap")])
def test_the_workflow_judges_pixel_counts_and_boxes_per_image(
    tmp_path: Path, task: str, metric: str
) -> None:
    config = _table_experiment(tmp_path, task)
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / task
    table = pd.read_csv(run / "trials.csv")
    done = table[table["state"] == "COMPLETE"]
    assert (
        len(done) and done[f"val_{metric}"].notna().all() and done[f"test_{metric}"].notna().all()
    )
    assert (done["objective"] == done[f"val_{metric}"]).all()
    assert set(done["task"]) == {"segmentation" if task == "seg" else "detection"}
    summary = json.loads((run / "summary.json").read_text())
    verdict = summary["verdict"]
    assert verdict["kind"] == "focal", verdict  # gamma really helps these stand-ins
    assert verdict["resampled"] == "samples"
    checks = summary["test"]
    assert checks[0]["reference"] == "plain cross-entropy", checks
    assert checks[0]["difference"]["metric"] == metric and checks[0]["difference"]["low"] > 0


def test_an_objective_the_task_has_not_fails_each_trial_in_one_line(tmp_path: Path) -> None:
    config = _table_experiment(tmp_path, "det", objective="pr_auc")
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert "Traceback" not in result.output

    frame = trials_frame(load_config(config))
    reasons = set(frame["fail_reason"].dropna())
    assert reasons == {
        "objective 'pr_auc' is not scored on detection trials; use one of ap, ap50, ap75, "
        "f1, precision, recall, f1_macro"
    }, reasons


DETECTOR_NO_TRUTH = '''
import numpy as np

def run_trial(spec):
    """Boxes only: the ground truth is data.annotations'."""
    out = {}
    for split, ids in (("val", spec.val_ids), ("test", spec.test_ids)):
        boxes = [
            np.array([[12.0 * j, 4, 12.0 * j + 9, 13] for j in range(int(i) % 3)]).reshape(-1, 4)
            for i in ids
        ]
        out[split] = {
            "ids": ids, "boxes": boxes, "scores": [np.full(len(b), 0.9) for b in boxes],
            "labels": [(np.arange(len(b)) + int(i)) % 2 for b, i in zip(boxes, ids)],
        }
    return out
'''


def _coco(n: int) -> dict[str, Any]:
    annotations = []
    for i in range(n):
        for j in range(i % 3):
            box = [12.0 * j, 4, 9, 9]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i, "category_id": 7 + (j + i) % 2,
                 "bbox": box, "area": 81, "iscrowd": 0}
            )  # fmt: skip
    return {
        "images": [{"id": i, "width": 64, "height": 64} for i in range(n)],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "circle"}, {"id": 8, "name": "square"}],
    }


def test_ground_truth_from_a_coco_file_and_a_broken_one_is_one_line(tmp_path: Path) -> None:
    config = _table_experiment(tmp_path, "det", search={"gamma": [0], "alpha": [0.5]})
    (tmp_path / "mytask.py").write_text(DETECTOR_NO_TRUTH, encoding="utf-8")
    (tmp_path / "coco.json").write_text(json.dumps(_coco(160)), encoding="utf-8")
    raw = yaml.safe_load(config.read_text())
    raw["data"]["annotations"] = "coco.json"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    frame = trials_frame(load_config(config))
    assert frame["val_ap"].tolist() == [pytest.approx(1.0)]  # the boxes are the truth's
    (tmp_path / "coco.json").write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", str(config)])
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert "coco.json: not a COCO annotation file" in result.output
    raw["data"]["classes"] = ["square", "circle"]
    (tmp_path / "coco.json").write_text(json.dumps(_coco(160)), encoding="utf-8")
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["check", "-c", str(config)])
    assert result.exit_code == 3 and "are not data.classes ['square', 'circle']" in " ".join(
        result.output.split()
    )


def test_a_unet_with_an_objective_of_scores_is_refused_when_read(tmp_path: Path) -> None:
    from gammatune.errors import ConfigError

    path = tmp_path / "seg.yaml"
    raw = {
        "name": "seg", "data": {"source": "npz", "path": "lesions.npz"},
        "model": {"kind": "unet"}, "objective": "pr_auc",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match="objective 'pr_auc': a U-Net is judged on pixel counts"):
        load_config(path)
