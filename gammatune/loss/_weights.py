"""The class weight's one convention, shared by the eager kernel, the compiled pass and the
stacked engine."""

from __future__ import annotations


def binary_alpha_weights(alpha: float | None) -> tuple[float, float]:
    """Return ``(weight of negatives, weight of positives)`` for a binary ``alpha``.

    As in Lin et al. 2017, ``alpha`` weighs the positive (minority) class and ``1 - alpha``
    the negative one; no alpha weighs both 1 (exact: ``x * 1 == x``).

    Example:
        >>> binary_alpha_weights(0.75), binary_alpha_weights(None)
        ((0.25, 0.75), (1.0, 1.0))
    """
    return (1.0, 1.0) if alpha is None else (1.0 - alpha, float(alpha))
