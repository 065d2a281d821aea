"""The detection payload's checks, COCO annotation files, and COCO metrics of known cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gammatune.detection import coco_metrics, detection_part, load_coco
from gammatune.errors import DataError
from gammatune.tasks import PayloadError

pytest.importorskip("pycocotools")
IDS = np.array([5, 7, 9])
FIVE = [[0, 0, 4, 4], [5, 5, 9, 9]]  # image 5's boxes


def part(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ids": [9, 5, 7],
        "boxes": [[[0, 0, 10, 10]], [[0, 0, 4, 4], [5, 5, 9, 9]], []],
        "scores": [[0.9], [0.8, 0.3], []],
        "labels": [[1], [0, 0], []],
        "gt_boxes": [[[0, 0, 10, 10]], [[0, 0, 4, 4]], []],
        "gt_labels": [[1], [0], []],
    }
    return base | changes


def test_a_good_part_is_returned_in_id_order_and_scored() -> None:
    dets = detection_part(part(), "val", IDS, 2)
    assert dets.ids.tolist() == [5, 7, 9]
    assert len(dets.boxes[0]) == 2 and len(dets.gt_boxes[1]) == 0  # image 7: no objects
    metrics = coco_metrics(dets)
    assert metrics.ap50 == pytest.approx(1.0) and metrics.ap == pytest.approx(1.0)
    assert metrics.per_class_ap == pytest.approx((1.0, 1.0))


def test_a_detection_in_an_image_with_no_objects_is_a_false_positive() -> None:
    clean = coco_metrics(detection_part(part(), "val", IDS, 2))
    stray = part(boxes=[[[0, 0, 10, 10]], [[0, 0, 4, 4]], [[1, 1, 3, 3]]])
    stray |= {"scores": [[0.9], [0.8], [0.95]], "labels": [[1], [0], [0]]}
    noisy = coco_metrics(detection_part(stray, "val", IDS, 2))
    assert noisy.per_class_ap[1] == clean.per_class_ap[1] and noisy.per_class_ap[0] < 0.6


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"ids": [9, 5, 8]}, "1 of the split's ids missing (e.g. [7])"),
        ({"ids": [9, 5, 7, 11]}, "1 ids not in the split"),
        (
            {"boxes": [[[10, 0, 0, 10]], FIVE, []]},
            "val.boxes of image 9: box 0 [10.0, 0.0, 0.0, 10.0]",
        ),
        ({"boxes": [[[0, np.nan, 1, 1]], FIVE, []]}, "val.boxes of image 9: 1 NaN or infinite"),
        (
            {"labels": [[2], [0, 0], []]},
            "val.labels of image 9: label 2 is outside the classes 0..1",
        ),
        ({"gt_labels": [[-1], [0], []]}, "val.gt_labels of image 9: label -1 is outside"),
        ({"scores": [[0.9], [0.8], []]}, "val.scores of image 5: 1 scores for 2 boxes"),
        ({"labels": [[1], [0], [1]]}, "val.labels of image 5: 1 labels for 2 boxes"),
        ({"boxes": [[[0, 0, 1]], FIVE, []]}, "must have shape (k, 4) xyxy"),
        ({"gt_boxes": [[]]}, "val.gt_boxes has 1 entries for 3 image ids"),
        ({"masks": []}, "val.masks is not a detection key"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(PayloadError) as caught:
        detection_part(part(**changes), "val", IDS, 2)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def coco_file(tmp_path: Path, **changes: Any) -> Path:
    raw: dict[str, Any] = {
        "images": [{"id": 5}, {"id": 7}, {"id": 9}],
        "categories": [{"id": 3, "name": "disk"}, {"id": 1, "name": "square"}],
        "annotations": [
            {"id": 1, "image_id": 9, "category_id": 3, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [0, 0, 4, 4]},
        ],
    } | changes
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(raw))
    return path


def test_ground_truth_from_a_coco_file(tmp_path: Path) -> None:
    gt = load_coco(coco_file(tmp_path))
    assert gt.class_names == ("square", "disk")  # by category id
    assert gt.images[9][0].tolist() == [[0, 0, 10, 10]] and gt.images[9][1].tolist() == [1]
    assert len(gt.images[7][0]) == 0
    given = {k: v for k, v in part().items() if not k.startswith("gt_")}
    dets = detection_part(given, "test", IDS, 2, gt)
    assert coco_metrics(dets).ap == pytest.approx(1.0)
    missing = load_coco(coco_file(tmp_path, images=[{"id": 5}, {"id": 9}], annotations=[]))
    with pytest.raises(
        PayloadError, match=r"1 images have no entry in the annotation file \(e.g. \[7\]\)"
    ):
        detection_part(given, "test", IDS, 2, missing)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not a COCO annotation file: Expecting property name"),
        ('{"images": []}', "missing or bad 'categories'"),
    ],
)
def test_a_coco_file_that_does_not_parse(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=words) as caught:
        load_coco(path)
    assert caught.value.exit_code == 3


def test_crowd_and_stray_annotations_are_refused(tmp_path: Path) -> None:
    crowd = [{"id": 1, "image_id": 9, "category_id": 3, "bbox": [0, 0, 1, 1], "iscrowd": 1}]
    with pytest.raises(DataError, match=r"annotations\[0\]: iscrowd 1 is not supported"):
        load_coco(coco_file(tmp_path, annotations=crowd))
    stray = [{"id": 1, "image_id": 4, "category_id": 3, "bbox": [0, 0, 1, 1]}]
    with pytest.raises(DataError, match="image_id 4 is not under 'images'"):
        load_coco(coco_file(tmp_path, annotations=stray))
    with pytest.raises(DataError, match="annotation file not found"):
        load_coco(tmp_path / "none.json")


def test_a_split_with_no_objects_at_all_has_no_ap() -> None:
    empty = part(gt_boxes=[[], [], []], gt_labels=[[], [], []])
    metrics = coco_metrics(detection_part(empty, "val", IDS, 2))
    assert (
        np.isnan(metrics.ap) and np.isnan(metrics.ar100) and np.isnan(metrics.per_class_ap).all()
    )
