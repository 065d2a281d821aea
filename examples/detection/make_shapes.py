"""Write the shapes detection set: small PNG images and a table of their objects.

Each image is 32 x 32 pixels: 0-4 shapes (scikit-image's ``draw.random_shapes``: rectangles,
triangles and round ones of about 4-11 pixels) on a noisy dark background. ``shapes.csv`` has one
row per image:

- ``id``: the image number; ``image``: its PNG, relative to the table's folder;
- ``label``: the image's rarest object class (over the whole set), or ``none`` for an image
  without objects: only the key that stratifies the splits (the object classes are
  ``data.classes`` in the experiment file);
- ``boxes``: the objects' boxes as JSON, ``[[x1, y1, x2, y2], ...]`` in pixel edges;
  ``objects``: their classes, as JSON, aligned with ``boxes``.

Run ``python examples/detection/make_shapes.py`` (600 images, as committed); ``--images`` and
``--out`` choose another size and folder. Needs scikit-image (``gammatune[detection]``).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from skimage.draw import random_shapes

SIZE = 32
CLASSES = ("rectangle", "triangle", "round")
KIND = {"rectangle": "rectangle", "triangle": "triangle", "circle": "round", "ellipse": "round"}
BACKGROUND, SCALE = 64.0, 64.0  # a pixel is BACKGROUND + SCALE * (darkness + noise)


def render(seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image ``(32, 32)`` uint8, boxes ``(k, 4)`` xyxy pixel edges and the objects' classes."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(0, 5))
    image = np.full((SIZE, SIZE), 255, np.uint8)
    drawn: list[Any] = []
    if k:
        image, drawn = random_shapes(
            (SIZE, SIZE), k, min_shapes=k, min_size=4, max_size=9, num_channels=1,
            channel_axis=None, intensity_range=(60, 180), rng=rng,
        )  # fmt: skip
    darkness = (255.0 - image) / 128.0 + rng.normal(0, 0.35, image.shape)
    pixels = np.clip(np.round(BACKGROUND + SCALE * darkness), 0, 255).astype(np.uint8)
    boxes = np.array([[c0, r0, c1, r1] for _, ((r0, r1), (c0, c1)) in drawn], float)
    boxes = np.clip(boxes, 0, SIZE)  # a round shape's box may pass the border
    return pixels, boxes.reshape(-1, 4), [KIND[name] for name, _ in drawn]


def make(folder: str | Path, n_images: int = 600, seed: int = 0) -> pd.DataFrame:
    """Write ``folder/images/<id>.png`` and ``folder/shapes.csv``; return the table."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    seeds = np.random.default_rng(seed).integers(0, 2**31, n_images)
    rows = []
    for number, image_seed in enumerate(seeds):
        pixels, boxes, objects = render(int(image_seed))
        name = f"images/{number:05d}.png"
        Image.fromarray(pixels, mode="L").save(folder / name, optimize=True)
        rows.append(
            {
                "id": number,
                "image": name,
                "boxes": json.dumps(boxes.round(2).tolist()),
                "objects": json.dumps(objects),
            }
        )
    table = pd.DataFrame(rows)
    counts = Counter(o for objects in table["objects"] for o in json.loads(objects))
    table.insert(2, "label", [rarest(json.loads(o), counts) for o in table["objects"]])
    table.to_csv(folder / "shapes.csv", index=False)
    return table


def rarest(objects: list[str], counts: Counter[str]) -> str:
    """The image's class with the fewest objects in the whole set (ties: ``CLASSES`` order)."""
    if not objects:
        return "none"
    return min(set(objects), key=lambda name: (counts[name], CLASSES.index(name)))


def read(folder: Path, row: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One row of the table: image ``(1, 32, 32)`` float32 (background about 0), boxes, classes."""
    pixels = np.asarray(Image.open(folder / row["image"]), dtype=np.float32)
    image = (pixels - BACKGROUND) / SCALE
    boxes = np.asarray(json.loads(row["boxes"]), dtype=np.float64).reshape(-1, 4)
    return image[None], boxes, list(json.loads(row["objects"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the shapes detection set.")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args()
    table = make(args.out, args.images)
    print(f"{len(table)} images, {table['label'].value_counts().to_dict()} -> {args.out}")
