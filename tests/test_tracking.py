"""Live tracking, for real: TensorBoard event files, an MLflow file store and W&B offline runs,
each read back with the service's own reader."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.record import Setting
from gammatune.storage import load_record
from gammatune.training import EpochEvent
from gammatune.tuning._monitor import TensorBoardTracker, Tracking
from gammatune.tuning._runner import TrialEvent
from tests.conftest import write_config


def _events(n: int) -> list[EpochEvent]:
    return [EpochEvent(e, 10, 1.0 / e, 2.0 / e, 0.1 * e, 0.1 * e) for e in range(1, n + 1)]


def _records(folder: Path, stage: str) -> dict[int, Any]:
    study = optuna.load_study(
        study_name=f"tiny.{stage}", storage=f"sqlite:///{folder / 'runs' / 'tiny' / 'study.db'}"
    )
    return {t.number: load_record(t) for t in study.trials}


def test_tensorboard_curves_are_readable_while_the_trial_trains(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = TensorBoardTracker(tmp_path, experiment="fraud")
    for event in _events(3):
        tracker.epoch("search", 7, event)
    running = EventAccumulator(str(tmp_path / "fraud" / "search-0007"))
    running.Reload()  # before the trial ends
    assert [s.step for s in running.Scalars("loss/train")] == [1, 2, 3]
    assert [s.value for s in running.Scalars("loss/val")] == pytest.approx([2.0, 1.0, 2 / 3])
    tracker.end(TrialEvent("search", 7, "COMPLETE", 0.5, Setting(2.0, 0.25)))
    ended = EventAccumulator(str(tmp_path / "fraud" / "search-0007"))
    ended.Reload()
    assert "objective" in ended.Tags()["scalars"]
    assert "_hparams_/session_start_info" in ended.PluginTagToContent("hparams")


def test_a_failing_tracker_is_dropped_and_the_others_keep_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[int] = []

    class Broken:
        name = "train.mlflow"

        def epoch(self, stage: str, number: int, event: EpochEvent) -> None:
            raise ConnectionError("server went away")

        def end(self, event: TrialEvent) -> None:
            raise AssertionError("dropped trackers hear nothing more")

        def close(self) -> None:
            raise AssertionError("dropped trackers hear nothing more")

    class Listening:
        name = "train.tensorboard"

        def epoch(self, stage: str, number: int, event: EpochEvent) -> None:
            heard.append(event.epoch)

        def end(self, event: TrialEvent) -> None: ...

        def close(self) -> None: ...

    tracking = Tracking([Broken(), Listening()])
    report = tracking.live()("search", 0)
    assert [report(e) for e in _events(2)] == [False, False]  # tracking never stops a model
    tracking.end(TrialEvent("search", 0, "COMPLETE", 0.5, Setting(1.0)))
    tracking.close()
    assert heard == [1, 2]
    assert "train.mlflow: stopped logging: server went away" in caplog.text


def test_mlflow_runs_hold_each_trials_curves_params_and_figures(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    config = write_config(tmp_path, train={**_train(), "mlflow": True})
    result = CliRunner().invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "tiny" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["search-0000", "search-0001"]
    records = _records(tmp_path, "search")
    for number, record in records.items():
        run = runs[f"search-{number:04d}"]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["gamma"]) == record.setting.gamma
        assert run.data.params["stage"] == "search"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            record.curves["train_loss"], rel=1e-5
        )
        assert run.data.metrics["val_f1"] == pytest.approx(record.val.f1, abs=1e-6)
        assert run.data.metrics["objective"] == pytest.approx(record.value)


def test_an_unusable_mlflow_uri_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = write_config(tmp_path, train={**_train(), "mlflow": f"file://{blocker}/mlruns"})
    result = CliRunner().invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 4, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gammatune: error: train.mlflow: cannot use")


def test_wandb_offline_runs_hold_each_trials_curves_config_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    from wandb.proto import wandb_internal_pb2

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = write_config(tmp_path, train={**_train(), "wandb": True})
    result = CliRunner().invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "runs" / "tiny" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    runs = {}
    for path in files:
        run: dict[str, Any] = {"history": [], "summary": {}, "config": {}}
        for data in _wandb_records(path):
            record = wandb_internal_pb2.Record.FromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run["name"], run["project"] = record.run.display_name, record.run.project
                run["config"].update({_key(i): json.loads(i.value_json) for i in
                                      record.run.config.update})  # fmt: skip
            elif kind == "history":
                run["history"].append({_key(i): json.loads(i.value_json) for i in
                                       record.history.item})  # fmt: skip
            elif kind == "summary":
                run["summary"].update({_key(i): json.loads(i.value_json) for i in
                                       record.summary.update})  # fmt: skip
            elif kind == "config":
                run["config"].update({_key(i): json.loads(i.value_json) for i in
                                      record.config.update})  # fmt: skip
        runs[run["name"]] = run
    assert sorted(runs) == ["tiny/search-0000", "tiny/search-0001"]
    for number, record in _records(tmp_path, "search").items():
        run = runs[f"tiny/search-{number:04d}"]
        assert run["project"] == "tiny"
        assert run["config"]["gamma"] == record.setting.gamma
        losses = [h["train_loss"] for h in run["history"] if "train_loss" in h]
        assert losses == pytest.approx(record.curves["train_loss"], rel=1e-5)
        assert run["summary"]["val_f1"] == pytest.approx(record.val.f1, abs=1e-6)


def _train() -> dict[str, Any]:
    from tests.conftest import TINY

    return dict(TINY["train"])


def _key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def _wandb_records(path: Path) -> list[bytes]:
    """The records of a W&B transaction log (LevelDB's log format after a 7-byte header)."""
    data, records, pending, position = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            break
        pending += chunk
        if kind in (1, 4):  # FULL, LAST
            records.append(pending)
            pending = b""
    return records


def test_report_epochs_all_fills_the_fixed_points_learning_curves(tmp_path: Path) -> None:
    def search(name: str, **train: Any) -> list[optuna.trial.FrozenTrial]:
        config = write_config(tmp_path, name=name, train={**_train(), **train})
        result = CliRunner().invoke(app, ["search", "-c", str(config)])
        assert result.exit_code == 0, result.output
        storage = f"sqlite:///{tmp_path / 'runs' / name / 'study.db'}"
        return optuna.load_study(study_name=f"{name}.search", storage=storage).trials

    assert [t.intermediate_values for t in search("quiet")] == [{}, {}]  # only refine reports
    for trial in search("loud", report_epochs="all"):
        record = load_record(trial)
        assert record is not None and record.epochs_run >= 2
        assert sorted(trial.intermediate_values) == list(range(1, record.epochs_run + 1))
