"""``--workers``: the coordinating process checks the experiment before it enqueues anything,
and its workers never outlive it (kill -9, SIGTERM), their trials in flight failed and retried.
Real processes, as a user starts them; Linux (``/proc``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from gammatune.cli import app
from tests.conftest import TINY, write_config
from tests.test_faults import SLOW_TRAIN, assert_each_point_once, error_lines, trials

runner = CliRunner()
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
# Slow enough to be caught mid-trial, and for the stage not to end between the moment a worker
# is seen training and the signal (20 epochs did, 1 run in 5 here); a confirm stage of 2 repeats
# of 1 finalist, so that the rerun of `run` stays short.
SLOW = {
    "train": {**SLOW_TRAIN, "epochs": 80, "min_epochs": 80, "patience": 80},
    "confirm": {"top_k": 1, "repeats": 2},
}


def _start(config: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "gammatune", *args, "--config", str(config)]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie no init has reaped yet is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _workers_training(config: Path, coordinator: subprocess.Popen[str]) -> list[int]:
    """Wait until both workers run and one of them trains a trial; return their pids."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert coordinator.poll() is None, coordinator.communicate()
        workers = _children(coordinator.pid)
        try:
            running = [t for t in trials(config, "baseline") if t.state == TrialState.RUNNING]
        except KeyError:  # the study is not there yet
            running = []
        if len(workers) == 2 and any(t.user_attrs.get("pid") in workers for t in running):
            return workers
        time.sleep(0.1)
    raise AssertionError("the workers did not start training in time")


def _assert_gone(pids: list[int], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if _alive(pid)]
        time.sleep(0.1)


def _assert_failed_or_orphaned(config: Path, workers: list[int]) -> None:
    """The workers failed their trials in flight (SIGTERM, from the kernel or the coordinator)
    before they went. One that the signal caught inside a storage write may be left RUNNING
    (2 of about 20 runs here): it names its dead worker, so the next run fails it at once."""
    found = trials(config, "baseline")
    running = [t for t in found if t.state == TrialState.RUNNING]
    assert all(t.user_attrs.get("pid") in workers for t in running), running
    assert running or Counter(t.state for t in found)[TrialState.FAIL] >= 1


def test_kill_9_of_the_coordinator_stops_its_workers_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, **SLOW)
    coordinator = _start(config, "run", "--workers", "2")
    workers = _workers_training(config, coordinator)
    os.kill(coordinator.pid, signal.SIGKILL)
    _assert_gone(workers, within_s=10)
    coordinator.communicate(timeout=30)
    _assert_failed_or_orphaned(config, workers)
    result = runner.invoke(app, ["run", "-c", str(config), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 4, "baseline")  # CE, CE at 0.75, 2 logistic
    assert_each_point_once(config, 2, "search")
    confirm = [t for t in trials(config, "confirm") if t.state == TrialState.COMPLETE]
    assert confirm and len({tuple(sorted(t.params.items())) for t in confirm}) == len(confirm)


def test_sigterm_to_the_coordinator_reaches_its_workers(tmp_path: Path) -> None:
    config = write_config(tmp_path, **SLOW)
    coordinator = _start(config, "baseline", "--workers", "2")
    workers = _workers_training(config, coordinator)
    os.kill(coordinator.pid, signal.SIGTERM)
    _, stderr = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 130, stderr
    assert "gammatune: interrupted; run the same command again to resume." in stderr
    _assert_gone(workers, within_s=2)
    _assert_failed_or_orphaned(config, workers)
    result = runner.invoke(app, ["baseline", "-c", str(config), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 4, "baseline")


def test_the_coordinator_checks_the_experiment_before_it_enqueues(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    write_config(tmp_path, train={**TINY["train"], "lr": 0.02}, search={"gamma": [0.5, 1.0, 2.0],
                 "alpha": [0.75]})  # fmt: skip
    result = runner.invoke(app, ["search", "-c", str(config), "--workers", "2"])
    assert result.exit_code == 4, result.output
    assert error_lines(result.stderr) == [
        "gammatune: error: study 'tiny.search' was run on a different experiment: train.lr was "
        "0.01, now 0.02; set a new `name` to start a new study, undo the change to continue "
        "this one, or pass --force-new to set it aside and start afresh."
    ]
    assert "worker 1" not in result.stderr  # no worker was started
    assert [t.state for t in trials(config)] == [TrialState.COMPLETE] * 2  # nothing enqueued
    result = runner.invoke(app, ["search", "-c", str(config), "--workers", "2", "--force-new"])
    assert result.exit_code == 0, result.output
    assert "--force-new: kept 'tiny.search' as 'tiny.search.replaced-" in result.stderr
    assert_each_point_once(config, 3)
