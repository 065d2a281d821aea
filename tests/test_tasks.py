"""What is scored: the segmentation payload is checked like a classification one (ids exactly
the split's, shapes right, counts whole and non-negative) and comes back as (n, C, 4) counts;
a classification payload's test scores are optional, and checked where given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gammatune.config import load_config
from gammatune.scores_files import load_counts_file, load_scores_file, save_scores
from gammatune.task_scores import check_payload
from gammatune.tasks import (
    Checked,
    CheckedCounts,
    PayloadError,
    SplitIds,
    classification_payload,
    payload_task,
    segmentation_payload,
)

VAL, TEST = np.array([1, 4, 6]), np.array([0, 2])


def split(n_classes: int) -> SplitIds:
    return SplitIds(VAL, TEST, np.zeros(3, int), np.zeros(2, int), n_classes)


def part(ids: np.ndarray, n_classes: int, pixels: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(ids))
    tp = rng.integers(0, 4, (len(ids), n_classes))
    fp = rng.integers(0, 4, (len(ids), n_classes))
    fn = rng.integers(0, 4, (len(ids), n_classes))
    return {"ids": ids, "tp": tp, "fp": fp, "fn": fn, "tn": pixels - tp - fp - fn}


def test_counts_come_back_in_the_splits_order() -> None:
    val = part(VAL[::-1], 3)
    checked = segmentation_payload(
        {"val": val, "test": part(TEST, 3), "weights": "w.pt"}, split(3)
    )
    assert isinstance(checked, CheckedCounts) and checked.weights == "w.pt"
    assert checked.scores.val.shape == (3, 3, 4) and checked.scores.test.shape == (2, 3, 4)
    np.testing.assert_array_equal(checked.scores.val[0, :, 0], val["tp"][2])  # id 1 was last


def test_binary_foreground_counts_get_their_background() -> None:
    fore = {"ids": VAL, "tp": [3, 0, 1], "fp": [1, 2, 0], "fn": [0, 1, 1], "tn": [12, 13, 14]}
    test = {**fore, "ids": TEST, **{k: v[:2] for k, v in fore.items() if k != "ids"}}
    counts = segmentation_payload({"val": fore, "test": test}, split(2)).scores.val
    assert counts[0].tolist() == [[12, 0, 1, 3], [3, 1, 0, 12]]  # background mirrors it


def test_binary_counts_of_two_shapes_are_refused() -> None:
    val = {**part(VAL, 2), "tp": np.zeros(3, int)}
    with pytest.raises(PayloadError, match=r"val: tp, fp, fn and tn must have one shape; got tp"):
        segmentation_payload({"val": val, "test": part(TEST, 2)}, split(2))


def test_the_payload_says_its_task() -> None:
    seg = {"val": part(VAL, 2), "test": part(TEST, 2)}
    assert payload_task(seg) == "segmentation"
    assert isinstance(check_payload(seg, split(2)), CheckedCounts)
    scores = {
        "val": {"ids": VAL, "scores": [0.1, 0.5, 0.9]},
        "test": {"ids": TEST, "scores": [0, 1]},
    }
    assert payload_task(scores) == "classification"
    assert isinstance(check_payload(scores, split(2)), Checked)
    assert payload_task(None) == "classification"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda v: v.update(ids=np.array([1, 4, 5])),
            "val.ids must be exactly spec.val_ids; 1 of",
        ),
        (lambda v: v.pop("fn"), 'val must be a mapping with "ids", "tp", "fp", "fn", "tn"'),
        (
            lambda v: v.update(tp=v["tp"][:, :2]),
            r"val.tp must have shape \(3, 3\): images, classes",
        ),
        (lambda v: v.update(fp=v["fp"] - 9), "val.fp must be whole counts >= 0; got -"),
        (lambda v: v.update(tn=v["tn"] + 0.5), "val.tn must be whole counts >= 0; got"),
        (lambda v: v.update(tp=v["tp"] * np.nan), "val.tp must be pixel counts; got non-finite"),
        (lambda v: v["tn"].__setitem__((0, 1), 0), "val: image 1's classes count different pixel"),
    ],
)
def test_a_bad_segmentation_payload_names_its_field(change, message) -> None:  # type: ignore[no-untyped-def]
    val = part(VAL, 3)
    change(val)
    with pytest.raises(PayloadError, match=message):
        segmentation_payload({"val": val, "test": part(TEST, 3)}, split(3))


def test_counts_are_kept_in_the_trials_scores_file(tiny_config: Path) -> None:
    config = load_config(tiny_config)
    counts = segmentation_payload({"val": part(VAL, 3), "test": part(TEST, 3)}, split(3)).scores
    name = save_scores(config, "confirm-00001", counts)
    again = load_counts_file(config, name)
    assert again is not None and again.val.dtype.kind == "i"
    np.testing.assert_array_equal(again.val, counts.val)
    np.testing.assert_array_equal(again.test, counts.test)
    assert load_scores_file(config, name) is None  # classification readers skip it
    assert load_counts_file(config, "scores/absent.npz") is None


def test_test_scores_are_optional_and_absent_stays_absent(tiny_config: Path) -> None:
    val = {"ids": VAL[::-1], "scores": [0.9, 0.5, 0.1]}
    for payload in ({"val": val}, {"val": val, "test": None}):
        scores = classification_payload(payload, split(2)).scores
        assert scores.test is None and scores.val.tolist() == [0.1, 0.5, 0.9]
        np.testing.assert_array_equal(scores.test_labels, np.zeros(2, int))
    config = load_config(tiny_config)
    name = save_scores(config, "confirm-00002", scores)
    again = load_scores_file(config, name)
    assert again is not None and again.test is None
    np.testing.assert_allclose(again.val, scores.val, rtol=1e-6)  # stored as float32
    with_test = classification_payload(
        {"val": val, "test": {"ids": TEST, "scores": [0, 1]}}, split(2)
    )
    again = load_scores_file(config, save_scores(config, "confirm-00003", with_test.scores))
    assert again is not None and again.test is not None and again.test.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("test", "message"),
    [
        ({"ids": TEST}, 'test must be a mapping with "ids" and "scores"; no \'scores\''),
        ({"ids": TEST, "scores": [0.2]}, r"test.scores must have shape \(2,\)"),
        ({"ids": VAL, "scores": [0.1, 0.2, 0.3]}, "test.ids must be exactly spec.test_ids"),
        ([0.1, 0.2], 'test must be a mapping with "ids" and "scores"; got'),
    ],
)
def test_test_scores_given_are_checked(test: object, message: str) -> None:
    val = {"ids": VAL, "scores": [0.1, 0.5, 0.9]}
    with pytest.raises(PayloadError, match=message):
        classification_payload({"val": val, "test": test}, split(2))
