"""A few validation images with the true mask and two models' predicted masks: cross-entropy's
and the recommendation's, on the images where their Dice differs most.

A segmentation trial keeps its validation predictions in
``runs/<name>/workdirs/<stage>-<number>/masks.npz`` (``ids``: image ids, ``pred``: ``(n, H, W)``
class per pixel; the built-in U-Net writes it for up to 64 images). An image's Dice here is
the pooled foreground Dice of that one image (1 where both the truth and the prediction are all
background); an empty mask's caption counts the false foreground pixels instead, as the study's
Dice leaves empty masks out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gammatune.report._images import ImageMissing, ImageSource
from gammatune.report._plots import _BEST, _figure
from gammatune.report._summary import SummaryRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_CLASS_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#e377c2")


@dataclass(frozen=True, slots=True)
class Masks:
    """One trial's predicted validation masks: ``ids`` ``(n,)`` and ``pred`` ``(n, H, W)``."""

    ids: np.ndarray
    pred: np.ndarray

    def of(self, image_id: int) -> np.ndarray:
        return self.pred[int(np.flatnonzero(self.ids == image_id)[0])]


def masks_file(run_dir: Path, stage: str, number: int) -> Path:
    """Where trial ``number`` of ``stage`` keeps its predicted masks."""
    return run_dir / "workdirs" / f"{stage}-{int(number):05d}" / "masks.npz"


def load_masks(path: Path) -> Masks:
    """Read a trial's ``masks.npz``.

    Raises:
        ImageMissing: No such file, or no ``ids``/``pred`` arrays of matching length in it.
    """
    where = f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
    if not path.is_file():
        raise ImageMissing(f"no {where} (the trial kept no predicted masks)")
    try:
        with np.load(path, allow_pickle=False) as data:
            ids, pred = np.asarray(data["ids"]).astype(np.int64), np.asarray(data["pred"])
    except (OSError, ValueError, KeyError) as exc:
        raise ImageMissing(f"{where} cannot be read ({type(exc).__name__})") from None
    if pred.ndim != 3 or len(pred) != len(ids):
        raise ImageMissing(f"{where}: pred must be (n, H, W) for its {len(ids)} ids")
    return Masks(ids, pred.astype(np.int64))


def image_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Pooled foreground Dice of one image: pixels of the right foreground class, twice, over
    the foreground pixels of both; 1 where both are all background."""
    right = int(((pred == truth) & (truth > 0)).sum())
    total = int((pred > 0).sum() + (truth > 0).sum())
    return 1.0 if total == 0 else 2.0 * right / total


def pick_images(
    first: Masks, second: Masks, truth: dict[int, np.ndarray], n_images: int = 4
) -> list[int]:
    """The image ids (held by both and by ``truth``) whose Dice differs most between the two
    predictions; ties: the most pixels predicted differently, then the lowest id."""
    keys = []
    for image_id in sorted(set(first.ids.tolist()) & set(second.ids.tolist()) & set(truth)):
        a, b = first.of(image_id), second.of(image_id)
        if a.shape != truth[image_id].shape or b.shape != a.shape:
            continue
        gap = abs(image_dice(a, truth[image_id]) - image_dice(b, truth[image_id]))
        keys.append((-gap, -int((a != b).sum()), image_id))
    return [image_id for *_, image_id in sorted(keys)[:n_images]]


def overlay_figure(
    pair: Sequence[tuple[SummaryRow, Masks]],
    images: ImageSource,
    class_names: Sequence[str],
    *,
    n_images: int = 4,
) -> Figure:
    """One row per picked image: the image, its true mask, then each model's prediction
    (cross-entropy, the recommendation), foreground classes coloured over the image.

    Raises:
        ImageMissing: No validation image is held by both trials and the data, or one cannot
            be read.
    """
    shared = set(pair[0][1].ids.tolist()) & set(pair[-1][1].ids.tolist())
    truth = {i: images.mask(i) for i in sorted(shared)}
    picked = pick_images(pair[0][1], pair[-1][1], truth, n_images)
    if not picked:
        raise ImageMissing("the two trials' masks share no validation image of the data's size")
    figure, axes = _figure(2.5 * (2 + len(pair)) + 0.8, 2.6 * len(picked),
                           ncols=2 + len(pair), nrows=len(picked))  # fmt: skip
    titles = ["image", "true mask"] + [f"{row.label} (gamma {row.gamma:g})" for row, _ in pair]
    for r, image_id in enumerate(picked):
        picture = images.image(image_id)
        shown = [None, truth[image_id], *(masks.of(image_id) for _, masks in pair)]
        for c, mask in enumerate(shown):
            ax = axes[r][c]
            ax.imshow(picture, cmap="gray", interpolation="nearest")
            if mask is not None:
                ax.imshow(_colored(mask), interpolation="nearest")
                if c >= 2:
                    ax.set_xlabel(_caption(mask, truth[image_id]), fontsize=8)
            ax.set(xticks=[], yticks=[])
            if r == 0:
                color = _BEST if c == len(shown) - 1 else "black"
                ax.set_title(titles[c], fontsize=8, color=color)
        axes[r][0].set_ylabel(f"image {image_id}", fontsize=8)
    _legend(figure, class_names, max(int(m.pred.max(initial=0)) for _, m in pair))
    return figure


def _caption(pred: np.ndarray, truth: np.ndarray) -> str:
    """The prediction's Dice; on an empty mask (whose Dice the study leaves out: the
    empty-mask rule), the false foreground pixels instead."""
    if (truth > 0).any():
        return f"Dice {image_dice(pred, truth):.2f}"
    return f"empty mask: {int((pred > 0).sum())} px predicted"


def _colored(mask: np.ndarray) -> np.ndarray:
    """An RGBA picture of ``mask``: each foreground class its colour at 55 %, background clear."""
    from matplotlib.colors import to_rgba

    rgba = np.zeros((*mask.shape, 4))
    for value in np.unique(mask[mask > 0]):
        r, g, b, _ = to_rgba(_CLASS_COLORS[(int(value) - 1) % len(_CLASS_COLORS)])
        rgba[mask == value] = (r, g, b, 0.55)
    return rgba


def _legend(figure: Figure, class_names: Sequence[str], highest: int) -> None:
    from matplotlib.patches import Patch

    n = max(len(class_names) - 1, highest)
    names = [class_names[v] if v < len(class_names) else str(v) for v in range(1, n + 1)]
    handles = [
        Patch(color=_CLASS_COLORS[(v - 1) % len(_CLASS_COLORS)], label=name)
        for v, name in enumerate(names, start=1)
    ]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
                      fontsize=8)  # fmt: skip
