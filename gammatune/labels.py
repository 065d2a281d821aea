"""Labels: a label column encoded as ``0..C-1`` (binary: the positive class is 1), and the
minority class subsampled to a share of the data."""

from __future__ import annotations

import numpy as np

from gammatune.errors import DataError


def encode_labels(
    raw: np.ndarray, positive_label: str | int | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Return labels as ``0..C-1`` and the class names; binary puts the positive class at 1."""
    values, counts = np.unique(raw, return_counts=True)
    if positive_label is not None:
        matches = [v for v in values if str(v) == str(positive_label)]
        if not matches:
            shown = ", ".join(map(str, values[:10]))
            raise DataError(
                f"data.positive_label: {positive_label!r} is not a label (labels: {shown})."
            )
        positive = raw == matches[0]
        others = [v for v in values if str(v) != str(matches[0])]
        # Two labels keep both names (``ok`` stays ``ok``); more become one "not <label>".
        negative = str(others[0]) if len(others) == 1 else f"not {matches[0]}"
        return positive.astype(np.int64), (negative, str(matches[0]))
    if len(values) < 2:
        raise DataError(
            f"data: the labels hold one class only ({str(values[0])!r}); a classifier needs two."
        )
    if len(values) == 2:
        # The positive class (label 1) is the minority; a tie keeps the sorted order.
        negative, positive = (values[1], values[0]) if counts[0] < counts[1] else values
        return (raw == positive).astype(np.int64), (str(negative), str(positive))
    return np.searchsorted(values, raw).astype(np.int64), tuple(map(str, values))


def subsample_minority(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Return sorted indices that keep part of the rarest class, making it ``fraction`` of all."""
    counts = np.bincount(labels)
    minority = int(np.argmin(counts)) if len(counts) > 2 else 1
    others = int(counts.sum() - counts[minority])
    wanted = int(round(fraction * others / (1 - fraction)))
    if wanted > counts[minority]:
        raise DataError(
            f"data.minority_fraction: {fraction} needs {wanted} samples of the minority class, "
            f"but the data has {counts[minority]}; use at most "
            f"{counts[minority] / counts.sum():.3f}."
        )
    members = np.flatnonzero(labels == minority)
    dropped = rng.choice(members, size=len(members) - wanted, replace=False)
    return np.setdiff1d(np.arange(len(labels)), dropped)
