"""What is scored: a trainer's payload, keyed by unit id, checked and turned into scores.

Whoever trained (gammatune's engine, a user's function, a command), a trial ends with a payload
for the validation split and (unless a user's classification trainer leaves it out) the test
split. This module checks it against the split it was trained on and returns what metrics,
records and the verdict read. Classification is the task here: per unit, ``scores`` of shape
``(n,)`` (P(positive), binary) or ``(n, C)`` (class probabilities). Segmentation: per image,
pixel counts ``tp, fp, fn, tn`` of shape ``(n, C)`` (:func:`segmentation_payload`).
Detection: per image, predicted and true boxes (:func:`detection_payload`). The payload says
which task it is (:func:`payload_task`): ``tp`` or ``boxes`` in place of ``scores``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gammatune.record import SampleScores
from gammatune.segmentation import SegmentationScores

COUNTS = ("tp", "fp", "fn", "tn")


class PayloadError(Exception):
    """A payload that does not fit its split: the trial fails with this one line."""


@dataclass(frozen=True, slots=True)
class SplitIds:
    """The units of each split a payload must cover, in order, with their labels."""

    val_ids: np.ndarray
    test_ids: np.ndarray
    val_labels: np.ndarray
    test_labels: np.ndarray
    n_classes: int


@dataclass(frozen=True, slots=True)
class Checked:
    """A checked payload: the per-unit scores, and what the trial keeps or shows."""

    scores: SampleScores
    weights: str | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CheckedCounts:
    """A checked segmentation payload: per-image, per-class pixel counts of both splits."""

    scores: SegmentationScores
    weights: str | None = None
    extra: dict[str, Any] | None = None


def classification_payload(payload: Any, split: SplitIds) -> Checked:
    """Check a classification payload and return its scores in the split's unit order.

    ``payload`` is ``{"val": {"ids": ..., "scores": ...}, "test": {...}}``, optionally with
    ``"weights"`` (a path) and ``"extra"`` (a mapping of figures, shown only). ``ids`` must be
    the split's ids in any order; ``scores`` finite, in [0, 1], ``(n,)`` for a binary task or
    ``(n, C)`` for C classes. ``"test"`` is optional (absent or None): the scores' ``test`` is
    then None, and the trial has no test evaluation.

    Raises:
        PayloadError: Naming the field and what is wrong with it.
    """
    check_mapping(payload)
    val = _part(payload, "val", split.val_ids, split.n_classes)
    test = (
        None
        if payload.get("test") is None
        else _part(payload, "test", split.test_ids, split.n_classes)
    )
    weights, extra = kept(payload)
    return Checked(SampleScores(val, test, split.val_labels, split.test_labels), weights, extra)


def payload_task(payload: Any) -> str:
    """``"segmentation"`` where the payload's ``val`` holds pixel counts (``tp``),
    ``"detection"`` where it holds ``boxes``, else ``"classification"`` (whose check then
    names what is missing)."""
    val = payload.get("val") if isinstance(payload, Mapping) else None
    if isinstance(val, Mapping) and "tp" in val:
        return "segmentation"
    return "detection" if isinstance(val, Mapping) and "boxes" in val else "classification"


def segmentation_payload(payload: Any, split: SplitIds) -> CheckedCounts:
    """Check a segmentation payload; return its counts ``(n, C, 4)`` in the split's order.

    ``payload`` is ``{"val": {"ids", "tp", "fp", "fn", "tn"}, "test": {...}}`` (plus optional
    ``weights`` and ``extra``): per image (a unit) and class, pixel counts, each ``(n, C)`` with
    C = ``len(spec.classes)`` and column 0 the background (smp's ``get_stats``, stacked), or,
    with two classes, ``(n,)`` or ``(n, 1)``: the foreground's only. Counts are non-negative
    whole numbers and every class of an image counts the same pixels.

    Raises:
        PayloadError: Naming the field and what is wrong with it.
    """
    check_mapping(payload)
    val = _counts(payload, "val", split.val_ids, split.n_classes)
    has_test = payload.get("test") is not None
    test = _counts(payload, "test", split.test_ids, split.n_classes) if has_test else None
    weights, extra = kept(payload)
    return CheckedCounts(SegmentationScores(val, test), weights, extra)


def check_mapping(payload: Any) -> None:
    if not isinstance(payload, Mapping):
        raise PayloadError(
            "the trainer returned "
            + ("None" if payload is None else f"a {type(payload).__name__}")
            + ', not a mapping {"val": {"ids": ..., "scores": ...}, "test": {...}}'
        )
    unknown = sorted(set(payload) - {"val", "test", "weights", "extra"})
    if unknown:
        raise PayloadError(f"{unknown[0]!r} is not a payload key (val, test, weights, extra)")


def kept(payload: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The payload's ``weights`` path and the shown figures of its ``extra``."""
    extra = payload.get("extra")
    if extra is not None and not isinstance(extra, Mapping):
        raise PayloadError(f"extra must be a mapping; got {type(extra).__name__}")
    weights = payload.get("weights")
    return None if weights is None else str(weights), _shown(extra)


def _counts(payload: Mapping[str, Any], name: str, ids: np.ndarray, n_classes: int) -> np.ndarray:
    part = payload.get(name)
    if not isinstance(part, Mapping) or not {"ids", *COUNTS} <= set(part):
        raise PayloadError(
            f'{name} must be a mapping with "ids", "tp", "fp", "fn", "tn"; got {part!r:.60}'
        )
    order = _order(part, name, ids)
    arrays = []
    for field in COUNTS:
        x = _array(part[field], f"{name}.{field}")
        if n_classes == 2 and x.shape in ((len(ids),), (len(ids), 1)):
            x = x.reshape(len(ids), 1)
        elif x.shape != (len(ids), n_classes):
            also = f" (or ({len(ids)},): the foreground)" if n_classes == 2 else ""
            raise PayloadError(
                f"{name}.{field} must have shape ({len(ids)}, {n_classes}): images, classes "
                f"with the background first{also}; got {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise PayloadError(f"{name}.{field} must be pixel counts; got non-finite or {x.dtype}")
        if x.min(initial=0) < 0 or not np.array_equal(x, np.round(x)):
            bad = x[(x < 0) | (x != np.round(x))][0]
            raise PayloadError(f"{name}.{field} must be whole counts >= 0; got {bad:g}")
        arrays.append(x.astype(np.int64))
    if len({x.shape for x in arrays}) > 1:
        shapes = ", ".join(f"{f} {x.shape}" for f, x in zip(COUNTS, arrays, strict=True))
        raise PayloadError(f"{name}: tp, fp, fn and tn must have one shape; got {shapes}")
    counts = np.stack(arrays, axis=-1)[order]  # (n, C or 1, 4)
    if counts.shape[1] == 1:  # binary, the foreground's: the background is its mirror
        counts = np.concatenate([counts[:, :, [3, 2, 1, 0]], counts], axis=1)
    totals = counts.sum(axis=2)
    uneven = np.flatnonzero((totals != totals[:, :1]).any(axis=1))
    if len(uneven):
        i = int(uneven[0])
        raise PayloadError(
            f"{name}: image {int(ids[i])}'s classes count different pixel totals "
            f"(tp + fp + fn + tn = {totals[i].tolist()}); each class counts every pixel"
        )
    return counts


def _order(part: Mapping[str, Any], name: str, ids: np.ndarray) -> np.ndarray:
    """The permutation that puts ``part["ids"]`` in the split's order (checked to match)."""
    return ids_order(_array(part["ids"], f"{name}.ids"), name, ids, f"spec.{name}_ids")


def ids_order(given: np.ndarray, name: str, ids: np.ndarray, expected: str) -> np.ndarray:
    """The permutation that sorts ``given`` (``name``'s ids), checked to be exactly the sorted
    ``ids`` (called ``expected`` in the message).

    Raises:
        PayloadError: Not integers (n,), or ids missing, not in the split or repeated.
    """
    if given.ndim != 1 or not np.issubdtype(given.dtype, np.integer):
        raise PayloadError(f"{name}.ids must be integers (n,); got {given.dtype} {given.shape}")
    order = np.argsort(given, kind="stable")
    if len(given) != len(ids) or not np.array_equal(given[order], ids):
        missing = np.setdiff1d(ids, given)
        stray = np.setdiff1d(given, ids)
        detail = (
            f"{len(missing)} of the split's ids missing (e.g. {missing[:3].tolist()})"
            if len(missing)
            else f"{len(stray)} ids not in the split (e.g. {stray[:3].tolist()})"
            if len(stray)
            else f"{len(given) - len(np.unique(given))} ids repeated"
        )
        raise PayloadError(f"{name}.ids must be exactly {expected}; {detail}")
    return order


def _part(payload: Mapping[str, Any], name: str, ids: np.ndarray, n_classes: int) -> np.ndarray:
    part = payload.get(name)
    if not isinstance(part, Mapping):
        raise PayloadError(f'{name} must be a mapping with "ids" and "scores"; got {part!r:.60}')
    missing = [key for key in ("ids", "scores") if key not in part]
    if missing:
        raise PayloadError(f'{name} must be a mapping with "ids" and "scores"; no {missing[0]!r}')
    order = _order(part, name, ids)
    scores = _array(part["scores"], f"{name}.scores")
    wanted = (len(ids),) if n_classes == 2 else (len(ids), n_classes)
    if scores.shape != wanted:
        kind = "binary: P(positive)" if n_classes == 2 else f"{n_classes} classes"
        raise PayloadError(f"{name}.scores must have shape {wanted} ({kind}); got {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or not np.isfinite(scores).all():
        bad = "not numbers" if not np.issubdtype(scores.dtype, np.number) else "NaN or infinite"
        count = "" if bad == "not numbers" else f"{int((~np.isfinite(scores)).sum())} "
        raise PayloadError(f"{name}.scores must be finite probabilities; {count}{bad}")
    if scores.min() < 0 or scores.max() > 1:
        raise PayloadError(
            f"{name}.scores must be probabilities in [0, 1]; got values in "
            f"[{scores.min():.4g}, {scores.max():.4g}] (apply sigmoid or softmax to logits)"
        )
    return scores[order].astype(np.float64)


def _array(value: Any, field: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything a user may return
        raise PayloadError(f"{field} is not an array: {exc}") from None


def _shown(extra: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The numbers and short strings of ``extra``, JSON-safe."""
    if extra is None:
        return None
    shown: dict[str, Any] = {}
    for key, value in extra.items():
        if isinstance(value, bool | int | float | str) or np.isscalar(value):
            shown[str(key)] = value.item() if hasattr(value, "item") else value
    return shown
