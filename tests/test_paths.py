"""Relative paths in an experiment file are relative to that file, output_dir too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gammatune import load_config
from gammatune.cli import app
from tests.conftest import TINY


def _experiment(folder: Path, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}), encoding="utf-8")
    return path


def test_output_dir_is_relative_to_the_experiment_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _experiment(tmp_path / "project" / "configs", output_dir="../runs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.run_dir.resolve() == (tmp_path / "project" / "runs" / "tiny").resolve()
    result = CliRunner().invoke(app, ["baseline", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "project" / "runs" / "tiny" / "study.db").is_file()
    assert not (elsewhere / "runs").exists() and not (elsewhere / "../runs").resolve().exists()


def test_an_absolute_output_dir_and_the_default_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "abs"
    assert (
        load_config(_experiment(tmp_path / "a", output_dir=str(absolute))).output_dir == absolute
    )
    # Not set: `runs` in the current folder, where `make demo` and the README's quick start look.
    assert load_config(_experiment(tmp_path / "b")).output_dir == Path("runs")
