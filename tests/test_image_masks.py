"""Segmentation sets: an npz of images and masks, a table of image and mask files, and every bad
input named in one line (exit 3 from the CLI, nothing written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import Config
from gammatune.data import load_data
from gammatune.errors import DataError
from gammatune.image_masks import load_mask_set, pixel_counts
from gammatune.units import image_strata

runner = CliRunner()


def tiny_set(n: int = 30, size: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` noisy images with a bright square (class 1) in most and a dark one (2) in some."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.2, (n, 1, size, size)).astype(np.float32)
    y = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        if i % 5:
            r, c = rng.integers(0, size - 4, 2)
            y[i, r : r + 4, c : c + 4] = 1
            x[i, 0, r : r + 4, c : c + 4] += 1.5
        if i % 3 == 0:
            r, c = rng.integers(0, size - 3, 2)
            y[i, r : r + 3, c : c + 3] = 2
            x[i, 0, r : r + 3, c : c + 3] -= 1.5
    return {"X": x, "y": y, "patient": np.array([f"p{i // 2}" for i in range(n)])}


def write_npz(folder: Path, **arrays: Any) -> Path:
    path = folder / "set.npz"
    np.savez(path, **{**tiny_set(), **arrays})
    return path


def config(folder: Path, data: dict[str, Any], **changes: Any) -> Config:
    raw = {
        "name": "seg",
        "data": data,
        "model": {"kind": "unet", "channels": [4, 8]},
        "train": {"epochs": 2},
        "output_dir": str(folder / "runs"),
        **changes,
    }
    return Config.model_validate(raw)


def test_an_npz_of_masks_is_a_segmentation_set_split_on_the_rarest_class(tmp_path: Path) -> None:
    path = write_npz(tmp_path)
    splits = load_data(config(tmp_path, {"source": "npz", "path": str(path)}))
    units = splits.units
    assert units is not None and units.image_shape == (1, 16, 16)
    assert units.classes == ("background", "class_1", "class_2")  # pixels: what is scored
    assert splits.class_names == ("none", "class_1", "class_2")  # the labels are strata
    counts = pixel_counts(np.load(path)["y"], 3)
    assert units.table["pixels_class_2"].tolist() == counts[:, 2].tolist()
    # the rarest foreground class each image holds; 0 ("none") for an empty mask
    assert units.labels.tolist() == image_strata(counts > 0).tolist()
    assert set(units.table["stratum"]) == {"none", "class_1", "class_2"}
    ids = np.concatenate([units.train_ids, units.val_ids, units.test_ids])
    assert sorted(ids.tolist()) == list(range(30))
    for part in (units.train_ids, units.val_ids, units.test_ids):  # every stratum everywhere
        assert set(units.labels[part].tolist()) == {0, 1, 2}


def test_image_strata_pick_the_class_fewest_images_hold() -> None:
    holds = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0]], bool)
    assert image_strata(holds).tolist() == [1, 2, 0, 2, 1]


def test_groups_keep_a_patient_in_one_split_and_classes_name_the_pixels(tmp_path: Path) -> None:
    names = np.array(["background", "lesion", "cyst"])
    path = write_npz(tmp_path, classes=names)
    data = {"source": "npz", "path": str(path), "groups": "patient"}
    splits = load_data(config(tmp_path, data))
    units = splits.units
    assert units is not None and units.groups is not None
    assert units.classes == ("background", "lesion", "cyst")
    parts = [set(units.groups[ids].tolist()) for ids in (units.train_ids, units.val_ids)]
    assert not parts[0] & parts[1]


def write_table(folder: Path, n: int = 30, **sizes: tuple[int, int]) -> Path:
    from skimage.io import imsave

    arrays = tiny_set(n)
    rows = []
    (folder / "img").mkdir()
    for i in range(n):
        image = (np.clip(arrays["X"][i, 0] + 1, 0, 2) * 100).astype(np.uint8)
        mask = arrays["y"][i]
        if f"image_{i}" in sizes:
            image = np.zeros(sizes[f"image_{i}"], np.uint8)
        if f"both_{i}" in sizes:
            image = np.zeros(sizes[f"both_{i}"], np.uint8)
            mask = np.ones(sizes[f"both_{i}"], np.uint8)
        imsave(folder / "img" / f"{i}.png", image, check_contrast=False)
        imsave(folder / "img" / f"{i}_mask.png", mask, check_contrast=False)
        rows.append(f"img/{i}.png,img/{i}_mask.png,{arrays['patient'][i]}")
    path = folder / "images.csv"
    path.write_text("image,mask,patient\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_table_of_image_and_mask_files_reads_as_the_npz_would(tmp_path: Path) -> None:
    path = write_table(tmp_path)
    data = {"source": "csv", "path": str(path), "target": "mask", "groups": "patient"}
    found = load_mask_set(config(tmp_path, data).data)  # type: ignore[arg-type]
    assert found.images.shape == (30, 1, 16, 16) and found.masks.dtype == np.uint8
    assert found.masks.tolist() == tiny_set()["y"].tolist()
    assert found.table is not None and found.groups is not None
    splits = load_data(config(tmp_path, data))
    assert splits.units is not None and "image" in splits.units.table.columns
    named = {**data, "classes": ["background", "lesion", "cyst"]}
    units = load_data(config(tmp_path, named)).units
    assert units is not None and units.classes == ("background", "lesion", "cyst")


def refused(tmp_path: Path, data: dict[str, Any], **changes: Any) -> str:
    """The one line `gammatune check` prints for ``data``; it exits 3 and writes nothing."""
    raw = {
        "name": "seg",
        "data": data,
        "model": {"kind": "unet", "channels": [4]},
        "output_dir": str(tmp_path / "runs"),
        **changes,
    }
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["check", "--config", str(path)])
    assert result.exit_code == 3, result.output
    assert not (tmp_path / "runs").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_masks_of_another_shape_than_the_images(tmp_path: Path) -> None:
    path = write_npz(tmp_path, y=np.zeros((30, 8, 8), np.uint8))
    line = refused(tmp_path, {"source": "npz", "path": str(path)})
    assert "data.y_key ('y'): masks must have the images' shape (N, H, W) = (30, 16, 16)" in line
    assert "got (30, 8, 8)" in line


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(0.5, "mask 0 holds 0.5"), (-1, "mask 0 holds -1"), (np.nan, "mask 0 holds nan")],
)
def test_mask_values_that_are_not_class_indices(
    tmp_path: Path, value: float, fragment: str
) -> None:
    y = tiny_set()["y"].astype(np.float32)
    y[0, 0, 0] = value
    line = refused(tmp_path, {"source": "npz", "path": str(write_npz(tmp_path, y=y))})
    assert line.startswith("gammatune: error: data.y_key ('y'): mask")
    assert fragment in line


def test_a_class_in_no_training_mask(tmp_path: Path) -> None:
    y = tiny_set()["y"]
    y[y == 2] = 0
    y[5, 0, 0] = 2  # one image only: it cannot be in train, val and test
    line = refused(tmp_path, {"source": "npz", "path": str(write_npz(tmp_path, y=y))})
    assert "class 'class_2' (mask value 2) is in no training mask (it is in 1 image(s)" in line


def test_a_named_class_in_no_mask(tmp_path: Path) -> None:
    names = np.array(["background", "lesion", "cyst", "tumour"])
    line = refused(tmp_path, {"source": "npz", "path": str(write_npz(tmp_path, classes=names))})
    assert "class 'tumour' (mask value 3) is in no mask" in line


def test_every_mask_all_background(tmp_path: Path) -> None:
    path = write_npz(tmp_path, y=np.zeros((30, 16, 16), np.uint8))
    line = refused(tmp_path, {"source": "npz", "path": str(path)})
    assert "every mask is all background (0)" in line


def test_a_classifying_model_on_images_names_the_models_that_fit(tmp_path: Path) -> None:
    path = write_npz(tmp_path)
    line = refused(tmp_path, {"source": "npz", "path": str(path)}, model={"kind": "mlp"})
    assert "model.kind: 'mlp' classifies whole samples" in line
    assert "use model.kind: unet (the built-in U-Net), or your own trainer" in line


def test_images_of_different_sizes_in_a_table(tmp_path: Path) -> None:
    path = write_table(tmp_path, n=30, both_7=(20, 16))
    data = {"source": "csv", "path": str(path), "target": "mask"}
    line = refused(tmp_path, data)
    assert "data.path: images of different sizes: img/7.png (row 7) is (1, 20, 16)" in line
    assert "img/0.png is (1, 16, 16)" in line


def test_a_mask_of_another_size_than_its_image_in_a_table(tmp_path: Path) -> None:
    path = write_table(tmp_path, n=30, image_7=(20, 16))
    data = {"source": "csv", "path": str(path), "target": "mask"}
    line = refused(tmp_path, data)
    assert "mask img/7_mask.png (row 7) is (16, 16), its image img/7.png is (20, 16)" in line


def test_a_missing_or_unreadable_image_file_is_named(tmp_path: Path) -> None:
    path = write_table(tmp_path)
    (tmp_path / "img" / "4.png").unlink()
    data = {"source": "csv", "path": str(path), "target": "mask"}
    assert "image file img/4.png (row 4) not found" in refused(tmp_path, data)
    (tmp_path / "img" / "4.png").write_bytes(b"not a png")
    assert "cannot read image file img/4.png (row 4)" in refused(tmp_path, data)


def test_a_table_without_its_image_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("picture,mask\na.png,b.png\n", encoding="utf-8")
    line = refused(tmp_path, {"source": "csv", "path": str(path), "target": "mask"})
    assert "data.path: no column 'image' in t.csv" in line


def test_check_describes_the_segmentation_set(tmp_path: Path) -> None:
    path = write_npz(tmp_path)
    raw = {
        "name": "seg",
        "data": {"source": "npz", "path": str(path), "groups": "patient"},
        "model": {"kind": "unet"},
        "output_dir": str(tmp_path / "runs"),
    }
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["check", "--config", str(tmp_path / "seg.yaml")])
    assert result.exit_code == 0, result.output
    assert "# segmentation set: 30 images of 1 x 16 x 16" in result.stdout
    assert "function: gammatune.segment:run_trial" in result.stdout
    share = (tiny_set()["y"] == 2).mean()
    held = (tiny_set()["y"] == 2).any(axis=(1, 2)).mean()
    line = next(row for row in result.stdout.splitlines() if row.startswith("# class_2 "))
    assert line.split()[2:] == [f"{share:.2%}", f"{held:.1%}", "(10)"]
    assert "groups: 15, each in one split" in result.stdout


def test_load_mask_set_raises_data_error_for_a_missing_npz(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.path: no such file"):
        load_mask_set(config(tmp_path, {"source": "npz", "path": "nope.npz"}).data)  # type: ignore[arg-type]


def test_strata_no_image_has_are_left_out_of_the_labels(tmp_path: Path) -> None:
    y = tiny_set()["y"]
    y[:, 0, 0] = np.where(y.reshape(30, -1).max(axis=1) == 0, 1, y[:, 0, 0])  # none empty
    splits = load_data(config(tmp_path, {"source": "npz", "path": str(write_npz(tmp_path, y=y))}))
    assert splits.class_names == ("class_1", "class_2")
    assert splits.units is not None and splits.units.classes == (
        "background",
        "class_1",
        "class_2",
    )
    assert set(splits.units.labels.tolist()) == {0, 1}
    assert np.isfinite(splits.imbalance_ratio())


def test_data_options_without_effect_on_images_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path)
    line = refused(tmp_path, {"source": "npz", "path": str(path), "positive_label": 1})
    assert "data.positive_label: 1 has no effect on a segmentation set" in line
