"""Every stage against a real PostgreSQL server, as the README says to share a study.

``.ci/run`` starts the server and exports ``GAMMATUNE_TEST_POSTGRES`` (a plain
``postgresql://user:password@host:port/db`` URL, as in the README), ``GAMMATUNE_TEST_PGCTL`` and
``GAMMATUNE_TEST_PGDATA``; ``eval "$(bash .ci/run postgres)"`` does only that, for a run by hand.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import load_config
from gammatune.storage import load_record, open_storage
from tests.conftest import TINY, write_config
from tests.test_faults import (
    SLOW_TRAIN,
    assert_each_point_once,
    error_lines,
    kill_mid_trial_then_resume,
    start_search,
)
from tests.test_faults import trials as _trials

URL = os.environ.get("GAMMATUNE_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(
    not URL,
    reason="no PostgreSQL server: GAMMATUNE_TEST_POSTGRES is not set (bash .ci/run starts one)",
)
PASSWORD = (URL or "").split("://", 1)[-1].rpartition("@")[0].partition(":")[2]
runner = CliRunner()


def _config(folder: Path, name: str, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, name=name, storage=URL, **changes)


def _name() -> str:
    return f"pg-{uuid.uuid4().hex[:10]}"  # one study per test on the shared server


def _refine_runs(config: Path) -> list[optuna.trial.FrozenTrial]:
    """Refine's own trials (not the warm-start copies of search trials)."""
    return [
        t
        for t in _trials(config, "refine")
        if t.state == TrialState.COMPLETE and load_record(t).warm_start_from is None  # type: ignore[union-attr]
    ]


def test_every_stage_in_one_process(tmp_path: Path) -> None:
    config = _config(tmp_path, _name())
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert_each_point_once(config, 4, "baseline")  # CE, CE at 0.75, 2 logistic
    assert_each_point_once(config, 2, "search")
    assert len(_refine_runs(config)) == 2
    confirm = _trials(config, "confirm")
    assert confirm and all(t.state == TrialState.COMPLETE for t in confirm)
    resolved = (tmp_path / "runs" / load_config(config).name / "config.resolved.yaml").read_text()
    assert PASSWORD not in resolved and ":***@127.0.0.1" in resolved


def test_two_workers_without_duplicates_or_a_password_on_their_command_lines(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, _name())
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:  # what `ps` would show every user
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "gammatune worker" in text:
                    seen.append(text)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = runner.invoke(app, ["run", "-c", str(config), "--workers", "2"])
    finally:
        done.set()
        watcher.join()
    assert result.exit_code == 0, result.output
    assert seen and not [line for line in seen if PASSWORD in line or "--storage" in line]
    assert_each_point_once(config, 4, "baseline")  # CE, CE at 0.75, 2 logistic
    assert_each_point_once(config, 2, "search")
    assert len(_refine_runs(config)) == 2
    confirm = Counter(
        tuple(sorted(t.params.items()))
        for t in _trials(config, "confirm")
        if t.state == TrialState.COMPLETE
    )
    assert confirm and set(confirm.values()) == {1}  # each confirm repeat exactly once


def test_two_machines_started_at_once_share_one_study(tmp_path: Path) -> None:
    """Two independent processes, separate run folders, only the URL in common."""
    name = _name()
    grid = {"gamma": [0.5, 1.0, 2.0], "alpha": [0.25, 0.75]}
    train = {**TINY["train"], "parallel": 2}
    configs = [
        _config(tmp_path / m, name, search=grid, train=train, refine={"n_trials": 5}) for m in "ab"
    ]
    for stage in ("search", "refine"):
        processes = [start_search(c, stage) for c in configs]
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr
            assert PASSWORD not in stderr
    assert_each_point_once(configs[0], 6, "search")
    assert len(_refine_runs(configs[0])) == 5  # refine.n_trials is the total over both


def test_kill_9_mid_trial_resumes_without_duplicates(tmp_path: Path) -> None:
    kill_mid_trial_then_resume(_config(tmp_path, _name(), train=SLOW_TRAIN))


def _pg_ctl(*args: str) -> None:
    pg_ctl, data = os.environ["GAMMATUNE_TEST_PGCTL"], os.environ["GAMMATUNE_TEST_PGDATA"]
    command = [pg_ctl, "-D", data, *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(
    "GAMMATUNE_TEST_PGCTL" not in os.environ, reason="the server's pg_ctl is not known"
)
def test_a_server_stopped_mid_run_is_one_line_and_a_rerun_completes(tmp_path: Path) -> None:
    config = _config(tmp_path, _name(), train=SLOW_TRAIN)
    process = start_search(config)
    deadline = time.monotonic() + 60
    while not any(t.state == TrialState.RUNNING for t in _safe_trials(config)):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    log = Path(os.environ["GAMMATUNE_TEST_PGDATA"]).parent / "server.log"
    _pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        _pg_ctl("start", "-w", "-t", "60", "-l", str(log))
    assert process.returncode == 4, stderr
    (line,) = error_lines(stderr)
    assert line.startswith("gammatune: error: storage: lost postgresql://gammatune:***@127.0.0.1:")
    assert line.endswith(
        "the completed trials are kept: run the same command again once it is back."
    )
    assert PASSWORD not in stderr
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 2, "search")


def _safe_trials(config: Path) -> list[optuna.trial.FrozenTrial]:
    try:
        return _trials(config, "search")
    except KeyError:
        return []


def test_force_new_sets_a_changed_study_aside_on_the_server(tmp_path: Path) -> None:
    name = _name()
    config = _config(tmp_path, name)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    _config(tmp_path, name, train={**TINY["train"], "lr": 0.02})
    result = runner.invoke(app, ["search", "-c", str(config), "--workers", "2"])
    assert result.exit_code == 4 and "--force-new" in result.stderr
    assert len(_trials(config)) == 2  # the coordinator refused before it enqueued anything
    result = runner.invoke(app, ["search", "-c", str(config), "--force-new"])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("--force-new")]
    kept = line.split(" as '")[1].split("'")[0]
    assert kept.startswith(f"{name}.search.replaced-") and ":***@127.0.0.1" in line
    storage = open_storage(load_config(config))
    backup = optuna.load_study(study_name=kept, storage=storage)
    assert [t.state for t in backup.get_trials()] == [TrialState.COMPLETE] * 2
    assert_each_point_once(config, 2, "search")


def _bounded(monkeypatch: pytest.MonkeyPatch, seconds: int) -> None:
    """Wait ``seconds`` (not 60 and 10) for a statement and for a connection."""
    import gammatune.storage
    import gammatune.watchdog

    monkeypatch.setattr(gammatune.watchdog, "WAIT_S", seconds)
    monkeypatch.setattr(gammatune.storage, "CONNECT_TIMEOUT_S", seconds)


def _did_not_answer(stderr: str, seconds: int) -> None:
    (line,) = error_lines(stderr)
    assert line.startswith("gammatune: error: storage: postgresql://gammatune:***@127.0.0.1:"), (
        line
    )
    assert line.endswith(
        f"did not answer for {seconds} s (a frozen server, or a lock held by another session); "
        "the completed trials are kept: run the same command again once it answers."
    ), line
    assert PASSWORD not in stderr


def test_a_table_locked_by_another_session_is_one_line_within_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LOCK TABLE trials`` held in psql: the server cancels the wait (lock_timeout)."""
    import psycopg

    _bounded(monkeypatch, 3)
    name = _name()
    config = _config(tmp_path, name)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    _config(tmp_path, name, search={"gamma": [0.5, 2.0, 3.0], "alpha": [0.75]})
    with psycopg.connect(URL or "", application_name="gammatune-test-lock") as holder:
        holder.execute("LOCK TABLE trials IN ACCESS EXCLUSIVE MODE")  # held until rollback
        started = time.monotonic()
        result = runner.invoke(app, ["search", "-c", str(config)])
        waited = time.monotonic() - started
        holder.rollback()
    assert result.exit_code == 4, result.output
    _did_not_answer(result.stderr, 3)
    assert waited < 30, waited
    assert Counter(t.state for t in _trials(config))[TrialState.COMPLETE] == 2
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 3, "search")


def _signal(pids: list[int], signal_number: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal_number)


@pytest.mark.skipif(
    "GAMMATUNE_TEST_PGDATA" not in os.environ or os.geteuid() != 0,
    reason="needs the server's data folder and root (to stop the server's processes)",
)
def test_a_frozen_server_is_one_line_within_the_wait_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP of the server (postmaster) and of this run's backends mid-trial: the kernel
    still answers TCP, so only this process's own deadline ends the wait."""
    import signal

    import psycopg

    _bounded(monkeypatch, 3)
    app_name = f"gammatune-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", app_name)  # libpq names this run's backends so
    name = _name()
    config = _config(tmp_path, name, train=SLOW_TRAIN)
    postmaster = int(
        (Path(os.environ["GAMMATUNE_TEST_PGDATA"]) / "postmaster.pid").read_text().split()[0]
    )
    frozen: list[int] = []
    froze_at: list[float] = []

    def freeze_mid_trial() -> None:
        running = (
            "SELECT count(*) FROM trials t JOIN studies s ON t.study_id = s.study_id "
            "JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
            "WHERE s.study_name = %s AND t.state = 'RUNNING' AND a.key = 'pid'"  # tagged
        )
        mine = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        with psycopg.connect(URL or "", application_name="gammatune-test-watcher") as watcher:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    (count,) = watcher.execute(running, (f"{name}.search",)).fetchone() or (0,)
                except psycopg.errors.UndefinedTable:
                    count = 0
                watcher.rollback()
                if count:
                    pids = [p for (p,) in watcher.execute(mine, (app_name,)).fetchall()]
                    frozen.extend([postmaster, *pids])
                    _signal(frozen, signal.SIGSTOP)
                    froze_at.append(time.monotonic())
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=freeze_mid_trial, daemon=True)
    thread.start()
    try:
        result = runner.invoke(app, ["search", "-c", str(config)])
        ended = time.monotonic()
    finally:
        thread.join(timeout=130)
        _signal(frozen, signal.SIGCONT)
    assert froze_at, "the run ended before a trial started"
    assert result.exit_code == 4, result.output
    _did_not_answer(result.stderr, 3)
    assert ended - froze_at[0] < 60, ended - froze_at[0]
    monkeypatch.delenv("PGAPPNAME")
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 2, "search")
