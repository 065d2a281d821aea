"""What is scored: a trainer's payload, keyed by unit id, checked and turned into scores.

Whoever trained (gammatune's engine, a user's function, a command), a trial ends with a payload
for the validation and test splits. This module checks it against the split it was trained on
and returns what metrics, records and the verdict read. Classification is the task here: per
unit, ``scores`` of shape ``(n,)`` (P(positive), binary) or ``(n, C)`` (class probabilities).
Another task (per-image pixel counts, per-image boxes) is another ``*_payload`` function beside
:func:`classification_payload`, leaving the trainers untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gammatune.record import SampleScores


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


def classification_payload(payload: Any, split: SplitIds) -> Checked:
    """Check a classification payload and return its scores in the split's unit order.

    ``payload`` is ``{"val": {"ids": ..., "scores": ...}, "test": {...}}``, optionally with
    ``"weights"`` (a path) and ``"extra"`` (a mapping of figures, shown only). ``ids`` must be
    the split's ids in any order; ``scores`` finite, in [0, 1], ``(n,)`` for a binary task or
    ``(n, C)`` for C classes.

    Raises:
        PayloadError: Naming the field and what is wrong with it.
    """
    if not isinstance(payload, Mapping):
        raise PayloadError(
            "the trainer returned "
            + ("None" if payload is None else f"a {type(payload).__name__}")
            + ', not a mapping {"val": {"ids": ..., "scores": ...}, "test": {...}}'
        )
    unknown = sorted(set(payload) - {"val", "test", "weights", "extra"})
    if unknown:
        raise PayloadError(f"{unknown[0]!r} is not a payload key (val, test, weights, extra)")
    val = _part(payload, "val", split.val_ids, split.n_classes)
    test = _part(payload, "test", split.test_ids, split.n_classes)
    extra = payload.get("extra")
    if extra is not None and not isinstance(extra, Mapping):
        raise PayloadError(f"extra must be a mapping; got {type(extra).__name__}")
    weights = payload.get("weights")
    scores = SampleScores(val, test, split.val_labels, split.test_labels)
    return Checked(scores, None if weights is None else str(weights), _shown(extra))


def _part(payload: Mapping[str, Any], name: str, ids: np.ndarray, n_classes: int) -> np.ndarray:
    part = payload.get(name)
    if not isinstance(part, Mapping) or "ids" not in part or "scores" not in part:
        raise PayloadError(f'{name} must be a mapping with "ids" and "scores"; got {part!r:.60}')
    given = _array(part["ids"], f"{name}.ids")
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
        raise PayloadError(f"{name}.ids must be exactly spec.{name}_ids; {detail}")
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
