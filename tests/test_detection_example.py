"""examples/detection: the shapes detector trains, and its payload passes the detection checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pycocotools")
pytest.importorskip("skimage")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "detection"))

import shapes_detector as example  # noqa: E402

from gammatune.detection import coco_metrics, detection_part  # noqa: E402


def test_render_draws_boxes_around_the_shapes() -> None:
    sizes = []
    for seed in range(20):
        image, boxes, labels = example.render(seed)
        assert image.shape == (1, 32, 32) and len(boxes) == len(labels) <= 4
        assert (boxes[:, 2:] > boxes[:, :2]).all() and ((boxes >= 0) & (boxes <= 32)).all()
        sizes += (boxes[:, 2:] - boxes[:, :2]).ravel().tolist()
        for x1, y1, x2, y2 in boxes.astype(int):  # the shape stands out from the noise
            assert image[0, y1:y2, x1:x2].mean() > image[0].mean()
    assert min(sizes) >= 1 and max(sizes) <= 12  # min_size 4, max_size 9: triangles reach 11


def test_a_tiny_trial_returns_a_payload_the_engine_scores(tmp_path: Path) -> None:
    import pandas as pd

    table = pd.DataFrame({"image_seed": np.arange(60) + 7})
    spec = example.make_spec(2.0, 0.25, 0, table, epochs=1, workdir=tmp_path)
    payload = example.run_trial(spec)
    for name, ids in (("val", spec.val_ids), ("test", spec.test_ids)):
        dets = detection_part(payload[name], name, ids, len(example.CLASSES))
        metrics = coco_metrics(dets)
        assert 0 <= metrics.ap <= metrics.ap50 <= 1
