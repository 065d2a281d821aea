"""examples/detection: the shapes set is written, the detector trains, its payload passes the
detection checks, and ``gammatune run`` on the example's experiment file gives a verdict."""

from __future__ import annotations

import json
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
