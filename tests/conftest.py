"""Shared fixtures: a tiny synthetic experiment that trains in well under a second per trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "data": {"source": "synthetic", "n_samples": 1200, "n_features": 8, "minority_fraction": 0.1},
    "model": {"kind": "mlp", "hidden": [16], "dropout": 0.0},
    "train": {"epochs": 4, "batch_size": 128, "lr": 0.01, "patience": 2, "min_epochs": 2},
    "search": {"gamma": [0.5, 2.0], "alpha": [0.75]},
    "refine": {"n_trials": 2},
}


def write_config(folder: Path, **changes: Any) -> Path:
    """Write TINY (with top-level ``changes``) to ``folder/tiny.yaml``, runs under ``folder``."""
    config = {**TINY, "output_dir": str(folder / "runs"), **changes}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return write_config(tmp_path)
