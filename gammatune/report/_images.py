"""The validation images a report draws (detections, mask overlays), read from the data.

A trainer's table of image files has an ``image`` column (and ``mask`` for segmentation) with
paths relative to the table's folder, read with Pillow; an npz segmentation set has ``X``
``(N, C, H, W)`` images and ``y`` ``(N, H, W)`` masks. Image ids are row positions, as in the
trials' payloads. Nothing here raises on a missing or unreadable file: the figure that needed
it is left out with a note naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gammatune.config import Config
from gammatune.errors import GammatuneError


class ImageMissing(Exception):  # noqa: N818 - never leaves the report: the figure is skipped
    """An image or mask the report wanted to draw cannot be read; its message is the page's
    note."""


@dataclass(frozen=True)
class ImageSource:
    """Where a study's images are: a table of file paths (``folder`` + ``table``) or the
    arrays of an npz file (``images`` ``(N, C, H, W)``, ``masks`` ``(N, H, W)``)."""

    folder: Path | None = None
    table: pd.DataFrame | None = None
    images: np.ndarray | None = None
    masks: np.ndarray | None = None

    def image(self, image_id: int) -> np.ndarray:
        """Image ``image_id`` for display: ``(H, W)`` grey or ``(H, W, 3)`` RGB, in [0, 1].

        Raises:
            ImageMissing: The id is not in the data, or its file cannot be read.
        """
        if self.images is not None:
            if not 0 <= image_id < len(self.images):
                raise ImageMissing(f"image {image_id} is not in the npz's X")
            return display(
                np.asarray(self.images[image_id], dtype=np.float64), channels_first=True
            )
        return display(self._read("image", image_id), channels_first=False)

    def mask(self, image_id: int) -> np.ndarray:
        """The true mask of image ``image_id``, ``(H, W)`` class indices.

        Raises:
            ImageMissing: No masks in the data, or the mask's file cannot be read.
        """
        if self.masks is not None:
            if not 0 <= image_id < len(self.masks):
                raise ImageMissing(f"mask {image_id} is not in the npz's y")
            return np.asarray(self.masks[image_id]).astype(np.int64)
        found = self._read("mask", image_id)
        return (found if found.ndim == 2 else found[..., 0]).astype(np.int64)

    def _read(self, column: str, image_id: int) -> np.ndarray:
        if self.table is None or self.folder is None or column not in self.table:
            raise ImageMissing(f"the data has no {column!r} column of file paths")
        if not 0 <= image_id < len(self.table):
            raise ImageMissing(f"image {image_id} is not a row of the table")
        path = self.folder / str(self.table[column].iloc[image_id])
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as opened:
                return np.asarray(opened)
        except (OSError, UnidentifiedImageError) as exc:
            raise ImageMissing(f"{path} cannot be read ({type(exc).__name__})") from None


def display(pixels: np.ndarray, *, channels_first: bool) -> np.ndarray:
    """``pixels`` as a picture in [0, 1]: grey ``(H, W)`` or RGB ``(H, W, 3)`` (the first
    channel of any other number), each image stretched between its own lowest and highest."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 3:
        if channels_first:
            pixels = np.moveaxis(pixels, 0, -1)
        pixels = pixels[..., :3] if pixels.shape[-1] in (3, 4) else pixels[..., 0]
    finite = pixels[np.isfinite(pixels)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return np.clip((pixels - low) / (high - low if high > low else 1.0), 0.0, 1.0)


def image_source(config: Config) -> ImageSource:
    """The study's images: its npz arrays (``X``, ``y``), or its table and the table's folder.

    Raises:
        ImageMissing: The data is neither, or cannot be read.
    """
    source = config.data
    path = getattr(source, "path", None)
    if source.source == "npz" and path is not None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if "X" not in data.files:
                    raise ImageMissing(f"{path} has no X array of images")
                masks = data["y"] if "y" in data.files else None
                return ImageSource(images=data["X"], masks=masks)
        except (OSError, ValueError) as exc:
            raise ImageMissing(f"{path} cannot be read ({type(exc).__name__})") from None
    if source.source in ("csv", "parquet") and path is not None:
        from gammatune.tables import read_frame

        try:
            table = read_frame(source)
        except GammatuneError as exc:
            raise ImageMissing(str(exc).rstrip(".")) from None
        if "image" not in table:
            raise ImageMissing(f"{Path(path).name} has no 'image' column of file paths")
        return ImageSource(folder=Path(path).parent, table=table)
    raise ImageMissing(f"data.source {source.source} holds no images to draw")
