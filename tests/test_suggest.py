"""`suggest`: starting grids from the imbalance and a task hint, written as a valid experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import load_config
from gammatune.data import load_data
from gammatune.errors import ConfigError, DataError
from gammatune.suggest import choose_range, format_suggestion, suggest, write_suggestion


def _csv(folder: Path, counts: dict[str, int]) -> Path:
    """A two-feature CSV with ``counts[label]`` rows of each label."""
    labels = [label for label, n in counts.items() for _ in range(n)]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=len(labels)), "b": rng.normal(size=len(labels))})
    frame["label"] = labels
    path = folder / "data.csv"
    frame.to_csv(path, index=False)
    return path


def _experiment(folder: Path, data: dict[str, Any], **extra: Any) -> Path:
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "exp", "data": data, **extra}), encoding="utf-8")
    return path


def _csv_experiment(folder: Path, counts: dict[str, int], **extra: Any) -> Path:
    _csv(folder, counts)
    return _experiment(folder, {"source": "csv", "path": "data.csv", "target": "label"}, **extra)


@pytest.mark.parametrize(
    ("counts", "ratio", "gamma", "alpha"),
    [
        ({"ok": 300, "bad": 100}, 3.0, (0.5, 1.0, 1.5), (0.25, 0.5, 0.75)),  # 1:3, inclusive
        ({"ok": 250, "bad": 50}, 5.0, (1.0, 1.5, 2.0), (0.25, 0.5, 0.75)),
        ({"ok": 400, "bad": 20}, 20.0, (2.0, 2.5, 3.0), (0.25, 0.5, 0.75, 0.9)),
    ],
)
def test_the_imbalance_ratio_picks_the_gamma_band(
    tmp_path: Path,
    counts: dict[str, int],
    ratio: float,
    gamma: tuple[float, ...],
    alpha: tuple[float, ...],
) -> None:
    found = suggest(_csv_experiment(tmp_path, counts))
    assert found.class_names == ("ok", "bad")  # the minority is the positive class
    assert found.counts == (counts["ok"], counts["bad"])
    assert found.ratio == pytest.approx(ratio)
    assert (found.gamma, found.alpha) == (gamma, alpha)
    assert found.gamma_range == (gamma[0], gamma[-1])
    assert f"1:{ratio:.1f}" in found.reason and "no task hint" in found.reason


def test_a_synthetic_set_at_one_to_twenty_gets_the_strong_band(tmp_path: Path) -> None:
    data = {"source": "synthetic", "n_samples": 2100, "minority_fraction": 0.05, "flip_y": 0.0}
    found = suggest(_experiment(tmp_path, data))
    assert found.ratio == pytest.approx(19, rel=0.05)
    assert found.gamma == (2.0, 2.5, 3.0) and found.alpha[-1] == 0.9
    assert found.warnings == ()


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(1.0, (0.5, 1.5)), (3.0, (0.5, 1.5)), (3.01, (1.0, 2.0)), (9.99, (1.0, 2.0)), (10, (2, 3))],
)
def test_the_band_boundaries(ratio: float, expected: tuple[float, float]) -> None:
    assert choose_range(ratio)[0] == expected


@pytest.mark.parametrize(
    ("ratio", "task", "expected", "words"),
    [
        (20, "detection", (2.0, 3.0), "intersected"),  # intersect
        (5, "detection", (1.5, 2.0), "intersected"),
        (5, "text", (1.0, 1.5), "intersected"),
        (5, "medical", (1.0, 2.0), "intersected"),
        (20, "text", (0.5, 1.5), "is taken"),  # no overlap: the domain's range
        (20, "medical", (0.5, 2.0), "is taken"),  # they touch at 2.0 only: a one-point grid
        (2, "detection", (1.5, 3.0), "is taken"),
    ],
)
def test_a_task_hint_narrows_or_replaces_the_band(
    ratio: float, task: Any, expected: tuple[float, float], words: str
) -> None:
    chosen, reason = choose_range(ratio, task)
    assert chosen == expected
    assert words in reason and task in reason and f"1:{ratio:.1f}" in reason


def test_the_command_line_task_overrides_the_files(tmp_path: Path) -> None:
    path = _csv_experiment(tmp_path, {"ok": 400, "bad": 20}, task="medical")
    medical = suggest(path)
    assert medical.gamma == (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
    assert medical.dice == ()  # a table of rows: no Dice term to weigh
    found = suggest(path, task="detection")
    assert found.gamma == (0.0, 0.5, 2.0, 2.5, 3.0) and "detection" in found.reason
    assert "Gamma 0, 0.5 added" in found.reason
    assert load_config(write_suggestion(found)).task == "detection"


def test_the_written_file_keeps_the_users_keys_and_passes_check(tmp_path: Path) -> None:
    path = _csv_experiment(tmp_path, {"ok": 250, "bad": 50}, seed=7, split={"val": 0.25})
    found = suggest(path)
    written = write_suggestion(found)
    assert written == tmp_path / "exp.suggested.yaml"
    text = written.read_text(encoding="utf-8")
    assert text.startswith("# ") and "starting points" in text and "confirm" in text
    config = load_config(written)
    assert (config.name, config.seed, config.split.val) == ("exp", 7, 0.25)
    assert config.search.gamma == [1.0, 1.5, 2.0] and config.search.alpha == [0.25, 0.5, 0.75]
    assert config.task is None and "task" not in yaml.safe_load(text)
    assert config.train == load_config(path).train  # everything else stays default
    counts = load_data(config).class_counts()
    assert tuple(map(sum, zip(*counts.values(), strict=True))) == found.counts
    result = CliRunner().invoke(app, ["check", "-c", str(written)])
    assert result.exit_code == 0, result.output


def test_a_search_section_keeps_its_other_keys(tmp_path: Path) -> None:
    path = _csv_experiment(tmp_path, {"ok": 250, "bad": 50}, search={"gamma": [9.0], "beta": 0.99})
    config = load_config(write_suggestion(suggest(path)))
    assert config.search.gamma == [1.0, 1.5, 2.0] and config.search.beta == 0.99


def test_a_file_written_to_another_folder_still_finds_the_data(tmp_path: Path) -> None:
    found = suggest(_csv_experiment(tmp_path, {"ok": 250, "bad": 50}))
    written = write_suggestion(found, tmp_path / "elsewhere" / "next.yaml")
    assert load_data(load_config(written)).class_names == ("ok", "bad")


def test_an_existing_output_is_not_overwritten_without_force(tmp_path: Path) -> None:
    found = suggest(_csv_experiment(tmp_path, {"ok": 250, "bad": 50}))
    target = tmp_path / "mine.yaml"
    target.write_text("# my own notes\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="already exists") as error:
        write_suggestion(found, target)
    assert str(target) in str(error.value) and "\n" not in str(error.value)
    assert target.read_text(encoding="utf-8") == "# my own notes\n"
    write_suggestion(found, target, force=True)
    assert load_config(target).search.gamma == [1.0, 1.5, 2.0]


def test_a_single_class_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="one class only") as error:
        suggest(_csv_experiment(tmp_path, {"ok": 50}))
    assert "\n" not in str(error.value)


def test_a_multiclass_set_reports_every_count(tmp_path: Path) -> None:
    found = suggest(_experiment(tmp_path, {"source": "sklearn", "name": "wine"}))
    assert found.class_names == ("0", "1", "2") and found.counts == (59, 71, 48)
    assert found.ratio == pytest.approx(71 / 48) and found.gamma == (0.5, 1.0, 1.5)
    lines = format_suggestion(found)
    assert lines[0].split() == ["class", "count", "share"]
    assert [line.split()[:2] for line in lines[1:4]] == [["0", "59"], ["1", "71"], ["2", "48"]]
    assert any("1:1.5" in line for line in lines)
    assert lines[-2:] == ["search.gamma: [0.5, 1.0, 1.5]", "search.alpha: [0.25, 0.5, 0.75]"]


@pytest.mark.parametrize(
    ("n_minority", "extra", "warns"),
    [
        (12, {}, True),  # 2 validation samples
        (18, {"split": {"val": 0.3}}, True),  # 5 in validation, but under 20 in all
        (40, {"confirm": {"min_positives": 10}}, True),  # 8 in validation, confirm needs 10
        (40, {}, False),
    ],
)
def test_few_minority_samples_warn_that_the_verdict_is_not_measurable(
    tmp_path: Path, n_minority: int, extra: dict[str, Any], warns: bool
) -> None:
    found = suggest(_csv_experiment(tmp_path, {"ok": 300, "bad": n_minority}, **extra))
    assert len(found.warnings) == warns
    if warns:
        assert f"'bad' has {n_minority} samples" in found.warnings[0]
        assert "not-measurable" in found.warnings[0]


@pytest.mark.parametrize("target", ["experiment", "data"])
def test_force_never_writes_over_the_experiment_or_its_data(tmp_path: Path, target: str) -> None:
    experiment = _csv_experiment(tmp_path, {"ok": 250, "bad": 50})
    out = experiment if target == "experiment" else load_config(experiment).data.path  # type: ignore[union-attr]
    before = out.read_bytes()
    result = CliRunner().invoke(app, ["suggest", "-c", str(experiment), "--out", str(out),
                                      "--force"])  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"gammatune: error: --out {out}: is the ")
    assert out.read_bytes() == before


def test_medical_segmentation_counts_pixels_and_crosses_dice_weights(tmp_path: Path) -> None:
    from tests.test_image_masks import tiny_set, write_npz

    write_npz(tmp_path)
    experiment = {
        "name": "seg",
        "data": {"source": "npz", "path": "set.npz"},
        "model": {"kind": "unet"},
        "task": "medical",
    }
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(experiment), encoding="utf-8")
    found = suggest(path)
    pixels = np.bincount(tiny_set()["y"].ravel(), minlength=3)
    assert found.counts == tuple(pixels.tolist())
    assert found.ratio == pytest.approx(pixels.max() / pixels.min())
    assert found.dice == (0.0, 1.0, 4.0) and "1:4" in found.reason
    assert 0.0 in found.gamma and min(g for g in found.gamma if g > 0) < 1
    written = load_config(write_suggestion(found))
    assert written.search.dice == [0.0, 1.0, 4.0]
    assert "search.dice: [0.0, 1.0, 4.0]" in format_suggestion(found)
