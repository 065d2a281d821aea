"""Write lesions.npz, a small synthetic segmentation set for examples/segmentation.yaml.

300 grey images of 64 x 64 (60 patients, 5 images each) with integer masks: 0 the background,
1 ``lesion`` (bright round blobs, in about 70 % of the images) and 2 ``cyst`` (smaller, darker
rings, in about 25 %), a few percent of the pixels in all. The tissue is smooth noise with bright
spots that are not lesions, so a model has to learn shape and size, not a threshold.

Arrays: ``X`` (300, 1, 64, 64) float32, ``y`` (300, 64, 64) uint8, ``patient`` (300,) and
``classes`` (the names, background first).

Run: python examples/make_lesions.py [out.npz]   (default: lesions.npz beside this file)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

SIZE, PATIENTS, PER_PATIENT = 64, 60, 5
CLASSES = np.array(["background", "lesion", "cyst"])


def disc(radius: float, centre: tuple[float, float]) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def image(rng: np.random.Generator, brightness: float) -> tuple[np.ndarray, np.ndarray]:
    tissue = gaussian_filter(rng.normal(0, 1, (SIZE, SIZE)), 3) * 4 + brightness
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(rng.poisson(1.0)):  # bright spots that are not lesions: small and faint
        tissue += 0.8 * gaussian_filter(disc(1.5, tuple(rng.uniform(4, 60, 2))) * 1.0, 1)
    for _ in range(rng.binomial(2, 0.55)):  # lesions: round, bright, radius 3 to 6
        spot = disc(rng.uniform(3, 6), tuple(rng.uniform(8, 56, 2)))
        tissue += 1.2 * gaussian_filter(spot * 1.0, 1)
        mask[spot] = 1
    if rng.random() < 0.25:  # a cyst: a small dark ring
        centre, radius = tuple(rng.uniform(8, 56, 2)), rng.uniform(3, 5)
        ring = disc(radius, centre) & ~disc(radius - 2, centre)
        tissue -= 1.0 * gaussian_filter(ring * 1.0, 0.7)
        mask[disc(radius, centre)] = 2
    noisy = tissue + rng.normal(0, 0.3, (SIZE, SIZE))
    return noisy.astype(np.float32), mask


def lesions(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, masks, patients = [], [], []
    for patient in range(PATIENTS):
        brightness = rng.normal(0, 0.5)  # each patient's scanner and tissue
        for _ in range(PER_PATIENT):
            x, y = image(rng, brightness)
            images.append(x[None])
            masks.append(y)
            patients.append(f"p{patient:03d}")
    return {
        "X": np.stack(images),
        "y": np.stack(masks),
        "patient": np.array(patients),
        "classes": CLASSES,
    }


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("lesions.npz")
    arrays = lesions()
    np.savez_compressed(out, **arrays)
    shares = np.bincount(arrays["y"].ravel(), minlength=3) / arrays["y"].size
    held = [(arrays["y"] == c).any(axis=(1, 2)).mean() for c in range(3)]
    print(
        f"{out}: {len(arrays['X'])} images; pixels "
        + ", ".join(
            f"{n} {s:.1%} (in {h:.0%} of images)"
            for n, s, h in zip(CLASSES, shares, held, strict=True)
        )
    )


if __name__ == "__main__":
    main()
