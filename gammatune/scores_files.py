"""A trial's per-sample scores on disk: one ``.npz`` per trial under ``runs/<name>/scores``.

The record keeps the file's path (relative to the run folder); the verdict, the test
comparison, the report's figures and ``export`` read it back. What the file holds is the
trial's task: classification scores with their labels, a segmentation trial's per-image pixel
counts, or a detection trial's per-image boxes. A reader of one task gets None for another's
file, and for a file that is not here (a shared study whose trial ran on another machine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gammatune.config import Config
from gammatune.detection import Detections, DetectionScores
from gammatune.errors import StudyError
from gammatune.record import SampleScores
from gammatune.segmentation import SegmentationScores

Scores = SampleScores | SegmentationScores | DetectionScores
_BOXES = ("boxes", "scores", "labels", "gt_boxes", "gt_labels")


def save_scores(config: Config, name: str, scores: Scores) -> str:
    """Write a trial's scores to ``runs/<name>/scores/<name>.npz``; return the path relative
    to the run folder (stored in the record); no ``test`` where the trial has none."""
    if isinstance(scores, SegmentationScores):
        test = {} if scores.test is None else {"test_counts": scores.test}
        return _write_npz(config, name, val_counts=scores.val, **test)
    if isinstance(scores, DetectionScores):
        arrays = _flat("val", scores.val)
        arrays |= {} if scores.test is None else _flat("test", scores.test)
        return _write_npz(config, name, **arrays)
    test = {} if scores.test is None else {"test": scores.test.astype(np.float32)}
    labels = {k: getattr(scores, k).astype(np.int32) for k in ("val_labels", "test_labels")}
    return _write_npz(config, name, val=scores.val.astype(np.float32), **test, **labels)


def load_scores_file(config: Config, scores_file: str) -> SampleScores | None:
    """A classification record's scores (its ``scores_file``); ``test`` None: no test scores."""
    data = _read_npz(config, scores_file, ("val", "test", "val_labels", "test_labels"))
    return None if data is None else SampleScores(test=data.pop("test", None), **data)


def load_counts_file(config: Config, scores_file: str) -> SegmentationScores | None:
    """A segmentation record's pixel counts ``(n, C, 4)``."""
    data = _read_npz(config, scores_file, ("val_counts", "test_counts"))
    if data is None:
        return None
    return SegmentationScores(data["val_counts"], data.get("test_counts"))


def load_detections_file(config: Config, scores_file: str) -> DetectionScores | None:
    """A detection record's boxes, per image, of both splits."""
    names = ("ids", *_BOXES, "n", "classes")
    keys = tuple(f"{split}_{k}" for split in ("val", "test") for k in names)
    data = _read_npz(config, scores_file, ("val_ids", *keys))
    if data is None:
        return None
    test = _unflat("test", data) if "test_ids" in data else None
    return DetectionScores(_unflat("val", data), test)


def load_any_scores(config: Config, scores_file: str) -> Scores | None:
    """A record's scores of whichever task, or None where the file is not here."""
    for load in (load_scores_file, load_counts_file, load_detections_file):
        found = load(config, scores_file)
        if found is not None:
            return found
    return None


def _flat(split: str, dets: Detections) -> dict[str, np.ndarray]:
    """One split's ragged per-image arrays, concatenated, with each image's lengths."""
    arrays = {f"{split}_ids": dets.ids, f"{split}_classes": np.array(dets.n_classes)}
    for key in _BOXES:
        parts = getattr(dets, key)
        arrays[f"{split}_{key}"] = np.concatenate(parts) if parts else np.zeros(0)
    lengths = [[len(b), len(g)] for b, g in zip(dets.boxes, dets.gt_boxes, strict=True)]
    arrays[f"{split}_n"] = np.array(lengths, np.int64).reshape(-1, 2)
    return arrays


def _unflat(split: str, data: dict[str, np.ndarray]) -> Detections:
    n = data[f"{split}_n"].reshape(-1, 2)
    cuts = [np.cumsum(n[:, j])[:-1] for j in (0, 1)]
    parts = {
        key: tuple(np.split(data[f"{split}_{key}"], cuts[key.startswith("gt_")])) for key in _BOXES
    }
    return Detections(ids=data[f"{split}_ids"], n_classes=int(data[f"{split}_classes"]), **parts)


def _write_npz(config: Config, name: str, **arrays: np.ndarray) -> str:
    path = config.run_dir / (relative := Path("scores") / f"{name}.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # stubs: allow_pickle
    except OSError as exc:  # a full disk: the write fails without naming the file
        why = (
            f"output_dir: cannot write {path}: {exc.strerror}; the completed trials are kept: "
            "free the disk and run the same command again."
        )
        raise StudyError(why) from None
    return relative.as_posix()


def _read_npz(config: Config, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    if not (path := config.run_dir / name).is_file():
        return None
    with np.load(path) as data:  # of keys, the ones it holds (a trial may have no test)
        return {k: data[k] for k in keys if k in data} if keys[0] in data else None
