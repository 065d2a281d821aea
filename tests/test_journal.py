"""Every stage on an Optuna JournalStorage file (``storage: journal://...``): one process,
``--workers 2``, kill -9 mid-trial, an edited experiment, and a path that cannot be opened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import load_config
from gammatune.storage import open_storage
from tests.conftest import TINY, write_config
from tests.test_faults import (
    SLOW_TRAIN,
    assert_each_point_once,
    error_lines,
    kill_mid_trial_then_resume,
    trials,
)

runner = CliRunner()


def _refine_runs(config: Path) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in trials(config, "refine")
        if t.state == TrialState.COMPLETE and "warm_start_from" not in t.user_attrs
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_stage_on_a_journal_file(tmp_path: Path, workers: str) -> None:
    config = write_config(tmp_path, storage="journal://study.log")  # in the run folder
    result = runner.invoke(app, ["run", "-c", str(config), "--workers", workers])
    assert result.exit_code == 0, result.output
    journal = tmp_path / "runs" / "tiny" / "study.log"
    assert journal.stat().st_size > 0 and not (tmp_path / "runs" / "tiny" / "study.db").exists()
    assert isinstance(open_storage(load_config(config)), optuna.storages.JournalStorage)
    assert_each_point_once(config, 4, "baseline")  # CE, CE at 0.75, 2 logistic
    assert_each_point_once(config, 2, "search")
    assert len(_refine_runs(config)) == 2  # refine.n_trials, also over two workers
    confirm = [t for t in trials(config, "confirm") if t.state == TrialState.COMPLETE]
    assert confirm and len({tuple(sorted(t.params.items())) for t in confirm}) == len(confirm)
    assert (tmp_path / "runs" / "tiny" / "report.html").is_file()
    assert (tmp_path / "runs" / "tiny" / "model" / "weights.pt").is_file()


def test_kill_9_mid_trial_on_a_journal_file_resumes_without_duplicates(tmp_path: Path) -> None:
    """JournalStorage has no heartbeats: the dead process's trial is found by its pid."""
    path = tmp_path / "elsewhere" / "study.log"
    path.parent.mkdir()
    kill_mid_trial_then_resume(
        write_config(tmp_path, train=SLOW_TRAIN, storage=f"journal://{path}")
    )


def test_a_process_killed_holding_the_write_lock_leaves_no_lock(tmp_path: Path) -> None:
    """The journal's write lock is the kernel's (Optuna's default, a symlink, stays behind a
    kill -9 and holds every other process for its 30 s grace period)."""
    config = write_config(tmp_path, storage="journal://study.log")
    assert runner.invoke(app, ["baseline", "-c", str(config)]).exit_code == 0
    lock = tmp_path / "runs" / "tiny" / "study.log.write.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gammatune.journal import FileLock; "
         f"FileLock({str(lock)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    holder.kill()
    holder.communicate(timeout=30)
    started = time.monotonic()
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 25
    assert_each_point_once(config, 2)


def test_an_edited_experiment_on_a_journal_file_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, storage="journal://study.log")
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    write_config(tmp_path, storage="journal://study.log", train={**TINY["train"], "lr": 0.02})
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 4
    (line,) = error_lines(result.stderr)
    assert "train.lr was 0.01, now 0.02" in line and "--force-new" in line
    assert len(trials(config)) == 2


def test_a_journal_path_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    url = f"journal://{tmp_path}/missing/study.log"
    result = runner.invoke(app, ["search", "-c", str(config), "--storage", url])
    assert result.exit_code == 4
    assert error_lines(result.stderr) == [
        f"gammatune: error: storage: cannot open {url}: No such file or directory."
    ]


def _lines_are_whole_json(path: Path) -> bool:
    data = path.read_bytes()
    return data.endswith(b"\n") and all(json.loads(line) for line in data.splitlines())


@pytest.mark.parametrize("torn", [b"", b"\n"])
def test_a_torn_last_line_is_set_aside_once_and_every_command_works(
    tmp_path: Path, torn: bytes
) -> None:
    """A write cut short (no newline, or garbage that a power loss ends with one): the next
    command cuts it off under the write lock, keeps it beside the journal, warns once; nothing
    is appended behind it, and every later command works."""
    config = write_config(tmp_path, storage="journal://study.log")
    assert runner.invoke(app, ["baseline", "-c", str(config)]).exit_code == 0
    journal = tmp_path / "runs" / "tiny" / "study.log"
    whole = journal.read_bytes()
    cut = (
        b'{"op_code": 5, "worker_id": "x", "trial_id": 3, "user_attr": {"result": "{\\"ver' + torn
    )
    journal.write_bytes(whole + cut)
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.stderr
    assert result.stderr.count("ended in a torn line") == 1
    (kept,) = journal.parent.glob("study.log.torn-*")
    assert kept.read_bytes() == cut and journal.read_bytes().startswith(whole)
    assert _lines_are_whole_json(journal)
    assert_each_point_once(config, 2)
    for command in ("refine", "report"):
        result = runner.invoke(app, [command, "-c", str(config)])
        assert result.exit_code == 0, result.output
        assert "ended in a torn line" not in result.stderr
    assert len(list(journal.parent.glob("study.log.torn-*"))) == 1


def test_a_damaged_line_inside_a_journal_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, storage="journal://study.log")
    assert runner.invoke(app, ["baseline", "-c", str(config)]).exit_code == 0
    journal = tmp_path / "runs" / "tiny" / "study.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4][:30] + b"\n"
    journal.write_bytes(b"".join(lines))
    damaged = journal.read_bytes()
    for command in ("search", "report"):
        result = runner.invoke(app, [command, "-c", str(config)])
        assert result.exit_code == 4, result.output
        assert error_lines(result.stderr) == [
            "gammatune: error: storage: journal://study.log is damaged at line 5 (not a whole "
            "JSON line); restore it from a backup."
        ]
    assert journal.read_bytes() == damaged
