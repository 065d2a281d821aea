"""The CLI end to end, on tiny synthetic data on the CPU, as a user runs it."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import gammatune.training._stacked
import gammatune.tuning._objective
from gammatune.cli import app
from gammatune.training._loop import FitResult, fit
from gammatune.training._stacked import _stacked_loss as stacked_loss
from gammatune.training._stacked import fit_stacked
from tests.conftest import TINY, write_config

runner = CliRunner()


def _invoke(*args: str) -> object:
    return runner.invoke(app, list(args))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "command",
    [[], ["check"], ["baseline"], ["search"], ["refine"], ["confirm"], ["report"], ["run"]],
)
def test_help_on_every_command(command: list[str]) -> None:
    result = _invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage: gammatune" in result.stdout


def test_version() -> None:
    result = _invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("gammatune 0.")


def test_help_imports_neither_torch_nor_optuna() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gammatune.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'optuna', 'sklearn', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_check_prints_the_resolved_config(tiny_config: Path) -> None:
    result = _invoke("check", "-c", str(tiny_config))
    assert result.exit_code == 0
    assert "name: tiny" in result.stdout and "monitor: pr_auc" in result.stdout
    assert "valid" in result.stderr


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, train={"epochs": -1})
    result = _invoke("search", "-c", str(path))
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"gammatune: error: {path}: train.epochs: Input should be greater than 0 (got -1)\n"
    )
    assert "Traceback" not in result.output


def test_traceback_flag_reraises(tmp_path: Path) -> None:
    path = write_config(tmp_path, train={"epochs": -1})
    result = _invoke("--traceback", "check", "-c", str(path))
    assert result.exit_code != 0 and type(result.exception).__name__ == "ConfigError"


def test_refine_before_search(tiny_config: Path) -> None:
    result = _invoke("refine", "-c", str(tiny_config))
    assert result.exit_code == 4
    assert "refine: no completed search trial in study 'tiny.search'" in result.stderr


def test_unreachable_storage_is_named_without_its_password(tiny_config: Path) -> None:
    url = "postgresql+psycopg2://me:secret@127.0.0.1:9/db"
    result = _invoke("baseline", "-c", str(tiny_config), "--storage", url)
    assert result.exit_code == 4
    assert "storage: cannot open postgresql+psycopg2://me:***@127.0.0.1:9/db" in result.stderr
    assert "secret" not in result.output


def test_data_error_exit_3(tmp_path: Path) -> None:
    path = write_config(tmp_path, data={"source": "csv", "path": "nope.csv", "target": "y"})
    result = _invoke("baseline", "-c", str(path))
    assert result.exit_code == 3 and "data.path: no such file" in result.stderr


def test_workflow_end_to_end(tiny_config: Path, tmp_path: Path) -> None:
    for command in ("baseline", "search", "refine"):
        result = _invoke(command, "-c", str(tiny_config))
        assert result.exit_code == 0, result.output
    early = _invoke("report", "-c", str(tiny_config))
    assert "not-measurable: the confirm stage has not run" in " ".join(early.stdout.split())
    assert _invoke("confirm", "-c", str(tiny_config)).exit_code == 0
    out = tmp_path / "trials.csv"
    result = _invoke("report", "-c", str(tiny_config), "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    kind = summary["verdict"]["kind"]
    kinds = ("focal", "class-weight", "focal-with-weight", "cross-entropy", "not-measurable")
    assert kind in kinds
    assert result.stdout.split("\n")[-2] != "" and kind in result.stdout
    all_rows = _rows(out)
    assert {r["verdict"] for r in all_rows} == {kind}
    confirm = [r for r in all_rows if r["stage"] == "confirm"]
    assert len({(r["repeat"], r["fold"]) for r in confirm}) == 5  # 5 fresh seeds, 1 fold
    assert {int(r["repeat"]) for r in confirm} == {1, 2, 3, 4, 5}  # after the baseline's 0
    if summary["verdict"]["recommended"] is not None:
        assert any(r["recommended"] == "True" for r in confirm)
    rows = [r for r in all_rows if r["stage"] != "confirm"]
    stages = [r["stage"] for r in rows]
    # plain CE, CE at alpha 0.75, logistic regression plain and balanced
    assert stages.count("baseline") == 4
    assert stages.count("search") == 2
    refine = [r for r in rows if r["stage"] == "refine" and not r["warm_start_from"]]
    assert len(refine) == 2
    for row in rows:
        assert row["state"] == "COMPLETE"
        if row["stage"] == "baseline":
            assert float(row["gamma"]) == 0.0
        tp, fp, fn = (int(float(row[f"val_{k}"])) for k in ("tp", "fp", "fn"))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        assert float(row["val_precision"]) == pytest.approx(precision)
        assert float(row["val_recall"]) == pytest.approx(recall)
        assert float(row["objective"]) == pytest.approx(float(row["val_f1"]))
    plain = next(r for r in rows if r["stage"] == "baseline" and not r["alpha"])
    assert float(plain["delta_vs_ce"]) == 0.0
    assert (tmp_path / "runs" / "tiny" / "config.resolved.yaml").is_file()


def test_rerun_does_not_retrain_completed_points(tiny_config: Path, monkeypatch) -> None:
    first = _count_fits(monkeypatch)
    assert _invoke("search", "-c", str(tiny_config)).exit_code == 0
    assert len(first) == 2  # the counter sees what really trains: both grid points, stacked
    calls = _count_fits(monkeypatch)
    result = _invoke("search", "-c", str(tiny_config))
    assert result.exit_code == 0 and calls == []


@pytest.mark.parametrize("interrupted_call", [1, 2])
def test_interrupted_run_resumes_with_the_remaining_points(
    tmp_path: Path, monkeypatch, interrupted_call: int
) -> None:
    tiny_config = write_config(tmp_path, train={**TINY["train"], "parallel": 1})
    calls: list[object] = []

    def interrupting(members, *args, **kwargs) -> list[FitResult]:
        calls.extend(members)
        if len(calls) == interrupted_call:
            raise KeyboardInterrupt
        return fit_stacked(members, *args, **kwargs)

    monkeypatch.setattr(gammatune.tuning._objective, "fit_stacked", interrupting)
    result = _invoke("search", "-c", str(tiny_config))
    assert result.exit_code == 130
    assert "interrupted; run the same command again to resume" in result.stderr
    resumed = _count_fits(monkeypatch)
    result = _invoke("search", "-c", str(tiny_config))
    # the points not completed before the interruption, each once
    assert result.exit_code == 0 and len(resumed) == 3 - interrupted_call
    assert _invoke("report", "-c", str(tiny_config)).exit_code == 0
    rows = _rows(tiny_config.parent / "runs" / "tiny" / "trials.csv")
    assert sorted(r["state"] for r in rows) == ["COMPLETE", "COMPLETE", "FAIL"]
    done = sorted(float(r["gamma"]) for r in rows if r["state"] == "COMPLETE")
    assert done == [0.5, 2.0]
    assert _invoke("search", "-c", str(tiny_config)).exit_code == 0
    assert len(resumed) == 3 - interrupted_call  # a third run trains nothing


def test_interrupted_stacked_group_is_retried_whole(tiny_config: Path, monkeypatch) -> None:
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gammatune.tuning._objective, "fit_stacked", interrupt)
    assert _invoke("search", "-c", str(tiny_config)).exit_code == 130
    monkeypatch.setattr(gammatune.tuning._objective, "fit_stacked", fit_stacked)
    result = _invoke("search", "-c", str(tiny_config))
    assert result.exit_code == 0
    assert result.stderr.count("search #") == 2
    assert _invoke("report", "-c", str(tiny_config)).exit_code == 0
    rows = _rows(tiny_config.parent / "runs" / "tiny" / "trials.csv")
    assert sorted(r["state"] for r in rows) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]


def test_stacked_and_one_at_a_time_give_the_same_trials(tmp_path: Path) -> None:
    results = {}
    for parallel in (1, 8):
        folder = tmp_path / str(parallel)
        folder.mkdir()
        path = write_config(folder, train={**TINY["train"], "parallel": parallel})
        assert _invoke("search", "-c", str(path)).exit_code == 0
        assert _invoke("report", "-c", str(path)).exit_code == 0
        results[parallel] = _rows(folder / "runs" / "tiny" / "trials.csv")
    for alone, together in zip(results[1], results[8], strict=True):
        assert (
            alone["gamma"] == together["gamma"] and alone["epochs_run"] == together["epochs_run"]
        )
        assert abs(float(alone["val_f1"]) - float(together["val_f1"])) <= 0.01
        assert abs(float(alone["val_pr_auc"]) - float(together["val_pr_auc"])) <= 0.01


def test_failed_trial_is_recorded_and_retried(tmp_path: Path, monkeypatch) -> None:
    tiny_config = write_config(tmp_path, train={**TINY["train"], "parallel": 1})

    def nan_loss_at_gamma_2(members, *args, **kwargs):
        loss = stacked_loss(members, *args, **kwargs)
        nan = torch.tensor([math.nan if m.gamma == 2 else 1.0 for m in members])
        return lambda logits, targets: loss(logits, targets) * nan

    monkeypatch.setattr(gammatune.training._stacked, "_stacked_loss", nan_loss_at_gamma_2)
    result = _invoke("search", "-c", str(tiny_config))
    assert result.exit_code == 0
    assert "FAILED: training loss became nan at epoch 1" in result.stderr
    monkeypatch.setattr(gammatune.training._stacked, "_stacked_loss", stacked_loss)
    assert _invoke("search", "-c", str(tiny_config)).exit_code == 0
    assert _invoke("report", "-c", str(tiny_config)).exit_code == 0
    rows = _rows(tiny_config.parent / "runs" / "tiny" / "trials.csv")
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 1 and failed[0]["fail_reason"] == "training loss became nan at epoch 1"
    assert sorted(float(r["gamma"]) for r in rows if r["state"] == "COMPLETE") == [0.5, 2.0]


def test_multiclass_digits_run(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        data={"source": "sklearn", "name": "digits", "minority_fraction": 0.03},
        model={"kind": "cnn", "channels": [4]},
        train={"epochs": 2, "batch_size": 256},
        search={"gamma": [1.0], "alpha": [0.75]},
        refine={"n_trials": 1},
    )
    result = _invoke("run", "-c", str(path))
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "runs" / "tiny" / "trials.csv")
    confusion = json.loads(rows[0]["val_confusion"])
    assert len(confusion) == 10 and len(json.loads(rows[0]["val_f1_per_class"])) == 10


def _count_fits(monkeypatch) -> list[object]:
    """Count every model that trains, alone (``fit``) or as a member of a stack."""
    calls: list[object] = []

    def counting(*args, **kwargs) -> FitResult:
        calls.append(kwargs)
        return fit(*args, **kwargs)

    def counting_stacked(members, *args, **kwargs) -> list[FitResult]:
        calls.extend(members)
        return fit_stacked(members, *args, **kwargs)

    monkeypatch.setattr(gammatune.tuning._objective, "fit", counting)
    monkeypatch.setattr(gammatune.tuning._objective, "fit_stacked", counting_stacked)
    return calls


def test_two_workers_share_one_study_without_duplicates(tiny_config: Path) -> None:
    result = _invoke("run", "-c", str(tiny_config), "--workers", "2")
    assert result.exit_code == 0, result.output
    rows = _rows(tiny_config.parent / "runs" / "tiny" / "trials.csv")
    assert all(r["state"] == "COMPLETE" for r in rows)
    fixed = [
        (r["stage"], r["gamma"], r["alpha"], r["model"], r["repeat"], r["fold"])
        for r in rows
        if r["stage"] != "refine"
    ]
    assert len(fixed) == len(set(fixed))  # every baseline, search and confirm point exactly once
    assert sum(r["stage"] in ("baseline", "search") for r in rows) == 6
    assert sum(r["stage"] == "confirm" for r in rows) % 5 == 0  # settings x 5 fresh seeds
    assert sorted(float(r["gamma"]) for r in rows if r["stage"] == "search") == [0.5, 2.0]
    assert sum(r["stage"] == "baseline" for r in rows) == 4
    refine = [r for r in rows if r["stage"] == "refine" and not r["warm_start_from"]]
    assert len(refine) == 2  # refine.n_trials is the total over both workers


def test_unwritable_outputs_are_one_line(tiny_config: Path, tmp_path: Path) -> None:
    assert _invoke("baseline", "-c", str(tiny_config)).exit_code == 0
    folder = tmp_path / "a_folder"
    folder.mkdir()
    result = _invoke("report", "-c", str(tiny_config), "--out", str(folder))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"gammatune: error: report: cannot write {folder}")
    (tmp_path / "x").mkdir()
    blocked = write_config(tmp_path / "x", output_dir=str(tiny_config))  # a file, not a folder
    result = _invoke("baseline", "-c", str(blocked))
    assert result.exit_code == 4 and "output_dir: cannot create" in result.stderr


def test_a_finished_command_leaves_the_whole_study_in_the_db_file(tmp_path: Path) -> None:
    """SQLite's write-ahead log is folded back at exit: copying study.db copies every trial."""
    config = write_config(tmp_path, search={"gamma": [1.0], "alpha": [0.25]})
    command = [sys.executable, "-m", "gammatune", "search", "--config", str(config)]
    subprocess.run(command, capture_output=True, check=True)
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "study.db").is_file()
    assert not (run_dir / "study.db-wal").exists()


def test_check_never_prints_a_storage_password(tmp_path: Path) -> None:
    path = write_config(tmp_path, storage="postgresql://me:s3cret@db/x")
    result = _invoke("check", "-c", str(path))
    assert result.exit_code == 0
    assert "s3cret" not in result.output and "me:***@db/x" in result.output


def test_confirm_needs_search_and_the_baseline(tiny_config: Path) -> None:
    result = _invoke("confirm", "-c", str(tiny_config))
    assert (
        result.exit_code == 4 and "confirm: no completed search or refine trial" in result.stderr
    )
    assert _invoke("search", "-c", str(tiny_config)).exit_code == 0
    result = _invoke("confirm", "-c", str(tiny_config))
    assert result.exit_code == 4 and "run `gammatune baseline` first" in result.stderr
