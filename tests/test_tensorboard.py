"""TensorBoard runs per experiment, with gamma and alpha in the HParams plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from gammatune.record import Setting
from gammatune.tuning import TrialEvent
from gammatune.tuning._monitor import tensorboard_logger

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData  # noqa: E402

CURVES = {"train_loss": [0.5, 0.4], "val_loss": [0.6, 0.5], "val_monitor": [0.3, 0.35]}


def _event(number: int, gamma: float, alpha: float | None) -> TrialEvent:
    setting = Setting(gamma, alpha)
    return TrialEvent("search", number, "COMPLETE", 0.42, setting, curves=CURVES)


def _hparams(run: Path) -> dict[str, object]:
    events = EventAccumulator(str(run))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = HParamsPluginData.FromString(content).session_start_info.hparams
    return {
        k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in values.items()
    }


def test_two_experiments_in_one_folder_stay_apart(tmp_path: Path) -> None:
    tensorboard_logger(tmp_path, experiment="fraud")(_event(0, 2.0, 0.25))
    tensorboard_logger(tmp_path, experiment="churn")(_event(0, 0.5, None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["churn", "fraud"]
    assert [p.name for p in (tmp_path / "fraud").iterdir()] == ["search-0000"]
    events = EventAccumulator(str(tmp_path / "fraud" / "search-0000"))
    events.Reload()
    assert {"loss/train", "loss/val", "val/monitor", "objective"} <= set(events.Tags()["scalars"])
    assert [s.value for s in events.Scalars("loss/train")] == pytest.approx([0.5, 0.4])


def test_gamma_and_alpha_are_hparams(tmp_path: Path) -> None:
    tensorboard_logger(tmp_path, experiment="fraud")(_event(3, 2.0, 0.25))
    tensorboard_logger(tmp_path, experiment="fraud")(_event(4, 0.5, None))
    first = _hparams(tmp_path / "fraud" / "search-0003")
    assert first == {"gamma": 2.0, "alpha": 0.25, "repeat": 0, "fold": 0, "stage": "search"}
    assert _hparams(tmp_path / "fraud" / "search-0004")["alpha"] == -1.0  # off
    events = EventAccumulator(str(tmp_path / "fraud" / "search-0003"))
    events.Reload()
    experiment = HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/experiment"]
    ).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["objective"]
