"""examples/detection: the shapes set is written, the detector trains, its payload passes the
detection checks, and ``gammatune run`` on the example's experiment file gives a verdict."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pycocotools")
pytest.importorskip("skimage")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "detection"
sys.path.insert(0, str(EXAMPLE))

import make_shapes  # noqa: E402
import shapes_detector as example  # noqa: E402

from gammatune.detection import coco_metrics, detection_part  # noqa: E402


def test_render_draws_boxes_around_the_shapes() -> None:
    sizes = []
    for seed in range(20):
        pixels, boxes, objects = make_shapes.render(seed)
        assert pixels.shape == (32, 32) and pixels.dtype == np.uint8
        assert len(boxes) == len(objects) <= 4 and set(objects) <= set(make_shapes.CLASSES)
        assert (boxes[:, 2:] > boxes[:, :2]).all() and ((boxes >= 0) & (boxes <= 32)).all()
        sizes += (boxes[:, 2:] - boxes[:, :2]).ravel().tolist()
        for x1, y1, x2, y2 in boxes.astype(int):  # the shape stands out from the noise
            assert pixels[y1:y2, x1:x2].mean() > pixels.mean()
    assert min(sizes) >= 1 and max(sizes) <= 12  # min_size 4, max_size 9: triangles reach 11


def test_the_table_names_each_image_its_objects_and_rarest_class(tmp_path: Path) -> None:
    table = make_shapes.make(tmp_path, 40, seed=3)
    again = pd.read_csv(tmp_path / "shapes.csv")
    assert list(again.columns) == ["id", "image", "label", "boxes", "objects"]
    assert again["id"].tolist() == list(range(40))
    counts = {c: 0 for c in make_shapes.CLASSES}
    for objects in table["objects"]:
        for name in json.loads(objects):
            counts[name] += 1
    for _, row in again.iterrows():
        image, boxes, objects = make_shapes.read(tmp_path, row)
        assert image.shape == (1, 32, 32) and len(boxes) == len(objects)
        if objects:  # the label is the image's class with the fewest objects in the set
            fewest = [n for n in make_shapes.CLASSES if n in objects]
            fewest.sort(key=lambda n: counts[n])  # stable: ties keep the classes' order
            assert row["label"] == fewest[0]
        else:
            assert row["label"] == "none"
    assert abs(float(np.median(image)) - 0.0) < 0.5  # the background reads as about 0


def test_a_tiny_trial_returns_a_payload_the_engine_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = make_shapes.make(tmp_path, 60)
    monkeypatch.setattr(example, "HERE", tmp_path)
    spec = example.make_spec(2.0, 0.25, 0, table, epochs=1, workdir=tmp_path)
    payload = example.run_trial(spec)
    for name, ids in (("val", spec.val_ids), ("test", spec.test_ids)):
        dets = detection_part(payload[name], name, ids, len(example.CLASSES))
        metrics = coco_metrics(dets)
        assert 0 <= metrics.ap <= metrics.ap50 <= 1


def test_gammatune_runs_the_example_to_a_verdict_ap_columns_and_figures(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from gammatune.cli import app

    folder = tmp_path / "detection"
    folder.mkdir()
    for name in ("make_shapes.py", "shapes_detector.py", "detection.yaml"):
        shutil.copy(EXAMPLE / name, folder / name)
    make_shapes.make(folder, 120)
    raw = yaml.safe_load((folder / "detection.yaml").read_text())
    raw.update(
        train={"epochs": 2, "lr": 0.003, "device": "cpu"},
        search={"gamma": [2], "alpha": [0.25]},
        refine={"n_trials": 1},
        confirm={"top_k": 1, "repeats": 2},
        output_dir=str(folder / "runs"),
    )
    (folder / "detection.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["run", "-c", str(folder / "detection.yaml")])
    assert result.exit_code == 0, result.output
    run = folder / "runs" / "shapes-detection"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"]["kind"] in ("focal", "focal-with-weight", "class-weight",
                                          "cross-entropy", "not-measurable")  # fmt: skip
    trials = pd.read_csv(run / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) >= 6 and set(done["task"]) == {"detection"}
    for column in ("val_ap", "val_ap50", "val_ap75", "test_ap", "val_ap_per_class"):
        assert done[column].notna().all(), column
    assert ((done["val_ap"] >= 0) & (done["val_ap"] <= done["val_ap50"])).all()
    page = (run / "report.html").read_text(encoding="utf-8")
    for stem in ("forest", "ap_vs_gamma", "ap_per_class", "pr_curves", "detections"):
        assert f'<figure id="{stem}">' in page, stem
    assert 'id="objective_vs_gamma"' not in page and 'class="note"' not in page
