"""Segmentation sets: images and their integer masks, from an npz or a table of files, checked.

An ``npz`` whose ``y`` has the spatial shape of ``X`` (``X`` (N, C, H, W) images, ``y``
(N, H, W) masks) is a segmentation set; so is a CSV/Parquet table with an ``image`` column and
a mask column (``data.target``) of file paths relative to the table's folder, read with
scikit-image (PNG, TIFF, ...). Mask values are class indices, 0 the background. Every check
names the field and the value; nothing here trains.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gammatune.config import NpzData, TableData
from gammatune.errors import DataError
from gammatune.tables import read_frame

if TYPE_CHECKING:
    import pandas as pd

IMAGE_COLUMN = "image"
INSTALL = "pip install 'gammatune[segmentation]'"


@dataclass(frozen=True, slots=True)
class MaskSet:
    """Images ``(N, C, H, W)`` float32, masks ``(N, H, W)`` uint8 class indices (0 the
    background), the class names (background first), each image's group (or None) and, for a
    table of files, the table itself."""

    images: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...]
    groups: np.ndarray | None = None
    table: pd.DataFrame | None = None


def is_mask_array(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether ``y`` looks like masks of images ``x``: ``(N, H, W)`` beside ``(N, C, H, W)``."""
    return x.ndim == 4 and y.ndim == 3 and len(y) == len(x)


def load_mask_set(source: NpzData | TableData, classes: list[str] | None = None) -> MaskSet:
    """Read and check a segmentation set.

    Args:
        source: ``data``: an npz (``x_key``, ``y_key``, optional ``groups`` and ``classes``
            arrays) or a table (``image`` column, ``target`` the mask column).
        classes: The class names (background first), or None: the npz's ``classes`` array,
            else ``background``, ``class_1``, ... up to the largest mask value.

    Raises:
        DataError: A missing or unreadable file (named), masks of another shape than their
            images, images of different sizes, non-integer or negative mask values, more mask
            values than class names, a class in no mask, or every mask all background.
    """
    if isinstance(source, NpzData):
        images, masks, named, groups, table = *_read_npz(source), None
        field = f"data.y_key ({source.y_key!r})"
    else:
        table = read_frame(source).reset_index(drop=True)
        images, masks = _read_files(source, table)
        named, field = None, f"data.target ({source.target!r})"
        groups = None if source.groups is None else _groups_column(table, source.groups)
    labels = _class_indices(masks, field)
    names = _class_names(classes or named, int(labels.max()), field)
    present = np.bincount(labels.ravel(), minlength=len(names))
    if present[1:].sum() == 0:
        raise DataError(
            f"{field}: every mask is all background (0); a segmentation set needs foreground "
            "pixels (mask values 1, 2, ...)."
        )
    if (absent := np.flatnonzero(present == 0)).size:
        raise DataError(
            f"data: class {names[absent[0]]!r} (mask value {absent[0]}) is in no mask; remove "
            "it from the class names, or check the masks."
        )
    return MaskSet(images, labels, names, groups, table)


def pixel_counts(masks: np.ndarray, n_classes: int) -> np.ndarray:
    """``(N, C)`` pixels of each class in each mask."""
    flat = masks.reshape(len(masks), -1).astype(np.int64)
    offsets = flat + n_classes * np.arange(len(masks))[:, None]
    counts = np.bincount(offsets.ravel(), minlength=n_classes * len(masks))
    return counts.reshape(len(masks), n_classes)


def describe_masks(
    counts: np.ndarray, names: tuple[str, ...], shape: tuple[int, ...]
) -> list[str]:
    """``check``'s lines: the set's size and, per class, its share of pixels and of images.

    Args:
        counts: ``(N, C)`` pixels of each class per image (:func:`pixel_counts`).
        names: The class names, background first.
        shape: One image's ``(C, H, W)``.
    """
    total = counts.sum()
    lines = [
        f"segmentation set: {len(counts)} images of {' x '.join(map(str, shape))} (channels x "
        f"height x width), {len(names)} pixel classes (0 the background)",
        f"{'pixel class':<16}  {'pixels':>7}  {'images holding it':>17}",
    ]
    for c, name in enumerate(names):
        holding = int((counts[:, c] > 0).sum())
        lines.append(
            f"{name:<16}  {counts[:, c].sum() / total:7.2%}  "
            f"{holding / len(counts):8.1%} ({holding})"
        )
    return lines


def _read_npz(
    source: NpzData,
) -> tuple[np.ndarray, np.ndarray, list[str] | None, np.ndarray | None]:
    path = source.path
    if not path.is_file():
        raise DataError(f"data.path: no such file: {path}.")
    keys = {"x_key": source.x_key, "y_key": source.y_key, "groups": source.groups}
    try:
        with np.load(path, allow_pickle=False) as arrays:
            for field, key in keys.items():
                if key is not None and key not in arrays:
                    raise DataError(
                        f"data.{field}: no array {key!r} in {path.name} "
                        f"(arrays: {', '.join(arrays.files)})."
                    )
            x, y = arrays[source.x_key], arrays[source.y_key]
            named = arrays["classes"].astype(str).tolist() if "classes" in arrays else None
            groups = None if source.groups is None else arrays[source.groups].astype(str)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"data.path: cannot read {path.name} as .npz: {exc}") from None
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.number):
        raise DataError(
            f"data.x_key ({source.x_key!r}): images must be numbers (N, C, H, W); got "
            f"{x.dtype} {x.shape}."
        )
    if y.shape != (len(x), *x.shape[2:]):
        raise DataError(
            f"data.y_key ({source.y_key!r}): masks must have the images' shape (N, H, W) = "
            f"{(len(x), *x.shape[2:])}; got {y.shape}."
        )
    if groups is not None and groups.shape != (len(x),):
        raise DataError(
            f"data.groups ({source.groups!r}): must be one group per image ({len(x)},); got "
            f"{groups.shape}."
        )
    return _finite(x.astype(np.float32), f"data.x_key ({source.x_key!r})"), y, named, groups


def _finite(images: np.ndarray, field: str) -> np.ndarray:
    if not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).reshape(len(images), -1).any(axis=1).argmax())
        raise DataError(f"{field}: image {bad} has NaN or infinite values.")
    return images


def _read_files(source: TableData, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every row's image ``(C, H, W)`` and mask ``(H, W)``, one size for all."""
    for field, column in (("path", IMAGE_COLUMN), ("target", source.target)):
        if column not in table.columns:
            raise DataError(
                f"data.{field}: no column {column!r} in {source.path.name}: a table of images "
                f"needs an {IMAGE_COLUMN!r} and a mask column (data.target) of file paths."
            )
    folder = source.path.parent
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for row, (image_file, mask_file) in enumerate(
        zip(table[IMAGE_COLUMN], table[source.target], strict=True)
    ):
        image = _read_image(folder, image_file, row, "image")
        image = image[None] if image.ndim == 2 else np.moveaxis(image[..., :3], -1, 0)
        mask = _read_image(folder, mask_file, row, "mask")
        if mask.ndim == 3 and (mask == mask[..., :1]).all():  # a grey mask saved as RGB
            mask = mask[..., 0]
        if mask.shape != image.shape[1:]:
            raise DataError(
                f"data.target: mask {mask_file} (row {row}) is {mask.shape}, its image "
                f"{image_file} is {image.shape[1:]}: a mask must have its image's height x width."
            )
        if images and image.shape != images[0].shape:
            raise DataError(
                f"data.path: images of different sizes: {image_file} (row {row}) is "
                f"{image.shape}, {table[IMAGE_COLUMN].iloc[0]} is {images[0].shape} (channels, "
                "height, width); resize them to one size first."
            )
        images.append(image)
        masks.append(mask)
    return _finite(np.stack(images).astype(np.float32), "data.path"), np.stack(masks)


def _read_image(folder: Path, name: object, row: int, what: str) -> np.ndarray:
    try:
        from skimage.io import imread
    except ImportError:
        raise DataError(f"data.path: reading image files needs scikit-image: {INSTALL}.") from None
    path = folder / str(name)
    if not path.is_file():
        raise DataError(f"data.path: {what} file {name} (row {row}) not found in {folder}.")
    try:
        return np.asarray(imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder's error names a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"data.path: cannot read {what} file {name} (row {row}) as an image: {first}"
        ) from None


def _groups_column(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        raise DataError(f"data.groups: no column {column!r} in the table.")
    if gaps := int(table[column].isna().sum()):
        raise DataError(f"data.groups: column {column!r} has {gaps} missing values.")
    return table[column].astype(str).to_numpy()


def _class_indices(masks: np.ndarray, field: str) -> np.ndarray:
    """The masks as uint8 class indices: whole numbers from 0 to 255."""
    if masks.dtype == bool:
        return masks.astype(np.uint8)
    if not np.issubdtype(masks.dtype, np.number):
        raise DataError(f"{field}: masks must be integer class indices; got dtype {masks.dtype}.")
    whole = np.isfinite(masks) & (masks == np.round(masks))
    if not whole.all():
        image = int((~whole).reshape(len(masks), -1).any(axis=1).argmax())
        raise DataError(
            f"{field}: masks must be integer class indices; mask {image} holds "
            f"{float(masks[image][~whole[image]].flat[0]):g}."
        )
    if masks.min() < 0 or masks.max() > 255:
        image = int(((masks < 0) | (masks > 255)).reshape(len(masks), -1).any(axis=1).argmax())
        bad = masks.min() if masks.min() < 0 else masks.max()
        raise DataError(
            f"{field}: mask values must be class indices from 0 (background) to 255; mask "
            f"{image} holds {float(bad):g}."
        )
    return masks.astype(np.uint8)


def _class_names(named: list[str] | None, largest: int, field: str) -> tuple[str, ...]:
    if named is None:
        return ("background", *(f"class_{c}" for c in range(1, max(largest, 1) + 1)))
    if len(named) <= largest:
        raise DataError(
            f"{field}: a mask holds value {largest}, but the classes name {len(named)} "
            f"({', '.join(named)}; the background first)."
        )
    if len(set(named)) < len(named):
        raise DataError(f"data.classes: the class names repeat a name; got {named}.")
    return tuple(named)
