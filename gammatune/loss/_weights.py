"""The class weight's one convention, shared by the eager kernel, the compiled pass and the
stacked engine."""

from __future__ import annotations

from collections.abc import Sequence


def binary_alpha_weights(alpha: float | Sequence[float] | None) -> tuple[float, float]:
    """Return ``(weight of negatives, weight of positives)`` for a binary ``alpha``.

    As in Lin et al. 2017, ``alpha`` weighs the positive (minority) class and ``1 - alpha``
    the negative one; no alpha weighs both 1 (exact: ``x * 1 == x``); a pair is the two
    weights themselves.

    Example:
        >>> binary_alpha_weights(0.75), binary_alpha_weights(None)
        ((0.25, 0.75), (1.0, 1.0))
    """
    if alpha is None:
        return (1.0, 1.0)
    if isinstance(alpha, Sequence):
        return float(alpha[0]), float(alpha[1])
    return (1.0 - alpha, float(alpha))


def class_balanced_weights(
    counts: Sequence[int], scheme: str = "inverse", beta: float = 0.999
) -> list[float]:
    """Per-class weights from the class counts, scaled to average 1.

    ``"inverse"`` weighs each class by ``1 / n_c``; ``"effective"`` by the inverse effective
    number of samples, ``(1 - beta) / (1 - beta ** n_c)`` (Cui et al. 2019, arXiv:1901.05555),
    which tends to ``"inverse"`` as ``beta -> 1`` and to equal weights as ``beta -> 0``.

    Raises:
        ValueError: An unknown scheme, ``beta`` outside [0, 1), or a class without samples.

    Example:
        >>> class_balanced_weights([900, 100])
        [0.2, 1.8]
    """
    if scheme not in ("inverse", "effective"):
        raise ValueError(f"class weights: scheme must be 'inverse' or 'effective'; got {scheme!r}")
    if not 0 <= beta < 1:
        raise ValueError(f"class weights: beta must be in [0, 1); got {beta!r}")
    if not counts or min(counts) <= 0:
        raise ValueError(f"class weights: every class needs samples; got counts {list(counts)}")
    if scheme == "inverse":
        raw = [1.0 / n for n in counts]
    else:
        raw = [(1.0 - beta) / (1.0 - beta**n) for n in counts]
    scale = len(raw) / sum(raw)
    return [round(w * scale, 12) for w in raw]
