"""TensorBoard logs of every trial's curves."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.errors import ConfigError
from gammatune.tuning._monitor import tensorboard_logger


def test_every_trial_writes_its_curves(tiny_config: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "tb"
    result = CliRunner().invoke(
        app, ["search", "-c", str(tiny_config), "--tensorboard", str(logs)]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in logs.iterdir()] == ["tiny"]  # runs per experiment
    runs = sorted(p.name for p in (logs / "tiny").iterdir())
    assert runs == ["search-0000", "search-0001"]
    events = EventAccumulator(str(logs / "tiny" / runs[0]))
    events.Reload()
    assert {"loss/train", "loss/val", "val/monitor", "objective"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("loss/train")) >= 2  # one per epoch trained


def test_missing_tensorboard_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        tensorboard_logger(Path("logs"))
