"""Faults a user can cause, driven through the CLI on SQLite: a process killed (kill -9) or
terminated mid-trial, a machine lost (stale heartbeat), an edited experiment, a damaged store,
and passwords that must not leak. ``tests/test_postgres.py`` runs the same on a server."""

from __future__ import annotations

import errno
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

import gammatune.storage
import gammatune.tuning._optuna
from gammatune.cli import app
from gammatune.config import load_config
from gammatune.storage import open_storage, redact
from gammatune.tuning._optuna import pop_waiting_trial
from gammatune.tuning._workflow import _write_resolved
from tests.conftest import TINY, write_config

runner = CliRunner()
# Long enough (a few seconds a trial on 2 cores) to be caught mid-trial, one trial at a time.
SLOW_TRAIN = {
    **TINY["train"], "epochs": 20, "min_epochs": 20, "patience": 20, "batch_size": 64,
    "parallel": 1,
}  # fmt: skip


def start_search(config: Path, stage: str = "search") -> subprocess.Popen[str]:
    """``gammatune search`` (or another stage) as its own process, as a user starts it."""
    command = [sys.executable, "-m", "gammatune", stage, "--config", str(config)]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip


def trials(config: Path, stage: str = "search") -> list[optuna.trial.FrozenTrial]:
    loaded = load_config(config)
    study = optuna.load_study(study_name=f"{loaded.name}.{stage}", storage=open_storage(loaded))
    return study.get_trials(deepcopy=False)


def wait_for_running(config: Path, process: subprocess.Popen[str], timeout_s: float = 60) -> None:
    """Until ``process`` has tagged a trial it is training (host and pid set)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if any(
                t.state == TrialState.RUNNING and "pid" in t.user_attrs for t in trials(config)
            ):
                return
        except (KeyError, optuna.exceptions.StorageInternalError):
            pass  # the study is not there yet
        time.sleep(0.05)
    raise AssertionError("no trial started in time")


def assert_each_point_once(config: Path, n_points: int, stage: str = "search") -> None:
    """Every point completed exactly once, and nothing left running or waiting."""
    found = trials(config, stage)
    assert not [t.number for t in found if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = Counter(
        tuple(sorted(t.params.items())) for t in found if t.state == TrialState.COMPLETE
    )
    assert len(done) == n_points and set(done.values()) == {1}, done


def error_lines(stderr: str) -> list[str]:
    """What stderr says beyond progress (the data line, trial lines, bars): one line, if all
    is well, and never a traceback."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("gammatune:")]


def _slow_config(folder: Path, **changes: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, train=SLOW_TRAIN, **changes)


def _shorten_grace(monkeypatch: pytest.MonkeyPatch, seconds: int) -> None:
    monkeypatch.setattr(gammatune.storage, "GRACE_PERIOD_S", seconds)
    monkeypatch.setattr(gammatune.tuning._optuna, "GRACE_PERIOD_S", seconds)


def kill_mid_trial_then_resume(config: Path) -> None:
    """kill -9 ``gammatune search`` mid-trial; a rerun completes the grid, no point twice."""
    process = start_search(config)
    wait_for_running(config, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert any(t.state == TrialState.RUNNING for t in trials(config))  # what kill -9 leaves
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 2)


def test_kill_9_mid_trial_resumes_without_duplicates(tmp_path: Path) -> None:
    kill_mid_trial_then_resume(_slow_config(tmp_path))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_killed_process_not_yet_reaped_is_dead(tmp_path: Path) -> None:
    """A zombie (killed, and not reaped yet: a container's init may reap late) holds no trial:
    the rerun fails its trial at once, instead of leaving it RUNNING and its point untrained."""
    config = _slow_config(tmp_path)
    process = start_search(config)
    wait_for_running(config, process)
    os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        result = runner.invoke(app, ["search", "-c", str(config)])
        assert result.exit_code == 0, result.output
        assert_each_point_once(config, 2)
    finally:
        process.wait(timeout=30)


def test_a_lost_machine_is_failed_by_its_heartbeat(tmp_path: Path, monkeypatch) -> None:
    """A trial of another host (no pid to check here) is failed once its heartbeat is stale."""
    config = _slow_config(tmp_path)
    process = start_search(config)
    wait_for_running(config, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    storage = open_storage(load_config(config))
    (running,) = [t for t in trials(config) if t.state == TrialState.RUNNING]
    storage.set_trial_user_attr(running._trial_id, "host", "a-machine-that-died")
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0  # within the grace period: it may still be alive; left alone
    assert [t.number for t in trials(config) if t.state == TrialState.RUNNING] == [running.number]
    said = " ".join(result.stderr.split())  # the warning says so, and when it is retrained
    assert (
        "tiny.search: 1 point(s) still RUNNING in another process (a-machine-that-died): this "
        "run ends without them; if that process is gone, the next run retrains them once their "
        "heartbeat is 90 s old."
    ) in said, said
    _shorten_grace(monkeypatch, 1)
    # Staleness is judged on whole seconds (SQLite's CURRENT_TIMESTAMP): wait well past 1 s.
    time.sleep(3.0)
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 2)
    assert trials(config)[running.number].state == TrialState.FAIL


def test_a_trial_claimed_but_never_tagged_is_retried(tmp_path: Path, monkeypatch) -> None:
    """The gap of issue 13: a process dies between claiming a trial and tagging it."""
    config = write_config(tmp_path)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    storage = open_storage(load_config(config))
    study = optuna.load_study(study_name="tiny.search", storage=storage)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    study.enqueue_trial(dict(done[0].params) | {"gamma": 3.0})  # a point claimed, then lost
    claimed = pop_waiting_trial(study, storage)
    assert claimed is not None and claimed[0].number not in {t.number for t in done}
    config = write_config(tmp_path, search={"gamma": [0.5, 2.0, 3.0], "alpha": [0.75]})
    _shorten_grace(monkeypatch, 1)
    # Staleness is judged on whole seconds (SQLite's CURRENT_TIMESTAMP): wait well past 1 s.
    time.sleep(3.0)
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 3)
    assert result.output.count("search #") == 1  # only the lost point trained


def test_sigterm_mid_trial_fails_the_trial_instead_of_leaving_it_running(tmp_path: Path) -> None:
    config = _slow_config(tmp_path)
    process = start_search(config)
    wait_for_running(config, process)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted; run the same command again to resume" in stderr
    states = Counter(t.state for t in trials(config))
    assert states[TrialState.RUNNING] == 0 and states[TrialState.FAIL] >= 1
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 2)


def test_an_edited_experiment_is_refused_and_an_unchanged_one_resumes(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    # What does not change a trial's result may change.
    write_config(tmp_path, refine={"n_trials": 5}, confirm={"repeats": 3})
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0 and "search #" not in result.output  # resumed: nothing to do
    write_config(tmp_path, train={**TINY["train"], "lr": 0.02})
    for stage in ("search", "refine"):  # refine too: it would build on search's old trials
        result = runner.invoke(app, [stage, "-c", str(config)])
        assert result.exit_code == 4, result.output
        assert result.stderr.splitlines()[-1] == (
            "gammatune: error: study 'tiny.search' was run on a different experiment: "
            "train.lr was 0.01, now 0.02; set a new `name` to start a new study, undo the "
            "change to continue this one, or pass --force-new to set it aside and start afresh."
        )
        assert result.stderr.count("gammatune: error") == 1 and "Traceback" not in result.output
    write_config(tmp_path, data={**TINY["data"], "n_samples": 1300})
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 4
    assert "data.n_samples was 1200, now 1300; data.content was" in result.stderr  # cause first
    assert len(trials(config)) == 2  # nothing was added to the old study


def test_report_and_export_refuse_an_edited_experiment(tmp_path: Path) -> None:
    config = write_config(tmp_path, confirm={"repeats": 2})
    assert runner.invoke(app, ["run", "-c", str(config)]).exit_code == 0
    model = (tmp_path / "runs" / "tiny" / "model" / "model.json").read_bytes()
    write_config(tmp_path, confirm={"repeats": 2}, data={**TINY["data"], "n_samples": 1300})
    for command in ("report", "export"):  # export would retrain on the new data, old verdict
        result = runner.invoke(app, [command, "-c", str(config)])
        assert result.exit_code == 4, result.output
        (line,) = error_lines(result.stderr)
        assert "was run on a different experiment: data.n_samples was 1200, now 1300" in line
    assert (tmp_path / "runs" / "tiny" / "model" / "model.json").read_bytes() == model


def test_a_changed_data_file_is_refused(tmp_path: Path) -> None:
    rows = ["a,b,y"] + [f"{i % 7},{i % 5},{int(i % 10 == 0)}" for i in range(400)]
    data = tmp_path / "data.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = write_config(tmp_path, data={"source": "csv", "path": str(data), "target": "y"})
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    data.write_text("\n".join(rows[:1] + rows[:0:-1]) + "\n", encoding="utf-8")  # rows reversed
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 4 and "data.content was 'sha256:" in result.stderr


def test_a_damaged_study_file_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "study.db").write_bytes(b"this is not a database" * 100)
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 4
    (line,) = error_lines(result.stderr)
    assert line.startswith("gammatune: error: storage: cannot open sqlite:///")
    assert line.endswith("study.db: file is not a database.")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:secret@db/x", "postgresql://me:***@db/x"),
        ("postgresql://me:se@cr@et@db:5432/x", "postgresql://me:***@db:5432/x"),
        ("postgresql://me@db/x?password=secret&sslmode=require",
         "postgresql://me@db/x?password=***&sslmode=require"),
        ("mysql+pymysql://me:secret@db/x?charset=utf8&PASSWORD=secret",
         "mysql+pymysql://me:***@db/x?charset=utf8&PASSWORD=***"),
        ("sqlite:///runs/a@b/study.db", "sqlite:///runs/a@b/study.db"),
    ],
)  # fmt: skip
def test_redact_hides_every_spelling_of_a_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_missing_driver_names_the_package(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    url = "postgresql+psycopg2://me:secret@127.0.0.1:9/db"  # psycopg2 is not installed here
    pytest.importorskip("psycopg")  # (the dev extra installs psycopg 3 only)
    result = runner.invoke(app, ["search", "-c", str(config), "--storage", url])
    assert result.exit_code == 4
    assert error_lines(result.stderr) == [
        "gammatune: error: storage: cannot open postgresql+psycopg2://me:***@127.0.0.1:9/db: "
        "its driver is not installed (no module 'psycopg2'); pip install 'psycopg2-binary'."
    ]


def test_an_unanswering_server_times_out_as_one_line(tmp_path: Path, monkeypatch) -> None:
    """A server that accepts the connection and never answers: one line, not a hang."""
    import socket

    pytest.importorskip("psycopg")
    monkeypatch.setattr(gammatune.storage, "CONNECT_TIMEOUT_S", 2)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        config = write_config(tmp_path)
        url = f"postgresql://me:secret@127.0.0.1:{port}/db"
        started = time.monotonic()
        result = runner.invoke(app, ["search", "-c", str(config), "--storage", url])
    assert time.monotonic() - started < 30
    assert result.exit_code == 4
    assert error_lines(result.stderr) == [
        f"gammatune: error: storage: cannot open postgresql+psycopg://me:***@127.0.0.1:{port}/db: "
        "connection timeout expired."
    ]
    assert "secret" not in result.output


def test_the_resolved_config_never_holds_the_password(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, storage="postgresql://me:s3cret@db/x"))
    _write_resolved(config)
    text = (config.run_dir / "config.resolved.yaml").read_text(encoding="utf-8")
    assert "s3cret" not in text and "storage: postgresql://me:***@db/x" in text


def test_force_new_sets_the_changed_studies_aside_and_starts_afresh(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for stage in ("baseline", "search"):
        assert runner.invoke(app, [stage, "-c", str(config)]).exit_code == 0
    before = {stage: trials(config, stage) for stage in ("baseline", "search")}
    write_config(tmp_path, train={**TINY["train"], "lr": 0.02})
    result = runner.invoke(app, ["search", "-c", str(config), "--force-new"])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("--force-new")]
    found = re.fullmatch(
        r"--force-new: kept 'tiny\.baseline' as '(tiny\.baseline\.replaced-\d{8}T\d{6}Z)', "
        r"'tiny\.search' as '(tiny\.search\.replaced-\d{8}T\d{6}Z)' in sqlite:///\S+/study\.db; "
        r"starting afresh\.",
        line,
    )
    assert found, line
    storage = open_storage(load_config(config))
    for stage, kept in zip(("baseline", "search"), found.groups(), strict=True):
        backup = optuna.load_study(study_name=kept, storage=storage)
        assert backup.user_attrs["fingerprint"]["train.lr"] == 0.01
        copied = backup.get_trials()
        assert [(t.state, t.params, t.values) for t in copied] == [
            (t.state, t.params, t.values) for t in before[stage]
        ]
        for trial in copied:  # the score files moved with their records
            scores_file = trial.user_attrs["result"]["scores_file"]
            assert scores_file.startswith(f"scores/{kept}-")
            assert (tmp_path / "runs" / "tiny" / scores_file).is_file()
    assert_each_point_once(config, 2)  # the new search, on the new experiment
    assert (
        optuna.load_study(study_name="tiny.search", storage=storage).user_attrs["fingerprint"][
            "train.lr"
        ]
        == 0.02
    )
    assert "tiny.baseline" not in optuna.get_all_study_names(storage)  # it starts afresh too
    result = runner.invoke(app, ["search", "-c", str(config)])  # an unchanged rerun resumes
    assert result.exit_code == 0 and "search #" not in result.output
    assert "--force-new" not in result.stderr
    write_config(tmp_path)  # back to lr 0.01, at once: a second copy, perhaps in the same second
    result = runner.invoke(app, ["search", "-c", str(config), "--force-new"])
    assert result.exit_code == 0, result.output
    kept = [n for n in optuna.get_all_study_names(storage) if n.startswith("tiny.search.")]
    assert len(kept) == 2 and found.group(2) in kept, kept


LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "everything":  # a backup tool's way: no other connection may even read
    connection.execute("PRAGMA locking_mode=EXCLUSIVE")
connection.execute("BEGIN EXCLUSIVE")
connection.execute("SELECT count(*) FROM studies").fetchall()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize(("command", "held"), [("search", "writes"), ("report", "everything")])
def test_a_locked_study_file_is_one_line_within_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, held: str
) -> None:
    config = write_config(tmp_path)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    database = tmp_path / "runs" / "tiny" / "study.db"
    monkeypatch.setattr(gammatune.storage, "SQLITE_TIMEOUT_S", 2)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(database), held], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        started = time.monotonic()
        result = runner.invoke(app, [command, "-c", str(config)])
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.communicate()
    assert result.exit_code == 4, result.output
    assert error_lines(result.stderr) == [
        f"gammatune: error: storage: sqlite:///{database} is locked by another process (waited "
        "2 s); the completed trials are kept: close that process (a sqlite3 shell, a backup) "
        "and run the same command again."
    ]
    assert elapsed < 30
    result = runner.invoke(app, [command, "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 2)


def test_report_on_a_study_damaged_after_it_opened_is_one_line(tmp_path: Path) -> None:
    """The schema reads (the storage opens), a table of trial attributes does not."""
    config = write_config(tmp_path)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    database = tmp_path / "runs" / "tiny" / "study.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        (root,) = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'trial_user_attributes'"
        ).fetchone()
    with database.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xff" * page_size)
    result = runner.invoke(app, ["report", "-c", str(config)])
    assert result.exit_code == 4, result.output
    assert error_lines(result.stderr) == [
        f"gammatune: error: storage: sqlite:///{database} is damaged: database disk image is "
        "malformed; restore it from a backup."
    ]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a run folder that fills up."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_run_folder_is_one_line_and_a_rerun_completes(
    tmp_path: Path, small_disk: Path
) -> None:
    runs = {"output_dir": str(small_disk / "runs")}
    config = write_config(tmp_path, **runs)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    write_config(tmp_path, search={"gamma": [0.5, 2.0, 3.0], "alpha": [0.75]}, **runs)
    filler = _fill(small_disk)
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 4, result.output
    (line,) = error_lines(result.stderr)
    assert line.startswith(("gammatune: error: storage: cannot write ",
                            "gammatune: error: output_dir: cannot write ")), line  # fmt: skip
    assert line.endswith(
        "the completed trials are kept: free the disk and run the same command again."
    ), line
    filler.unlink()
    assert Counter(t.state for t in trials(config))[TrialState.COMPLETE] == 2
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 3)


def test_report_on_a_full_run_folder_is_one_line_and_keeps_the_earlier_report(
    tmp_path: Path, small_disk: Path
) -> None:
    config = write_config(tmp_path, output_dir=str(small_disk / "runs"),
                          storage=f"sqlite:///{tmp_path / 'study.db'}")  # fmt: skip
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    assert runner.invoke(app, ["report", "-c", str(config)]).exit_code == 0
    written = {p.name: p.read_bytes() for p in (small_disk / "runs" / "tiny").glob("*.*")}
    assert {"trials.csv", "report.html", "summary.json"} <= set(written)
    filler = _fill(small_disk)
    result = runner.invoke(app, ["report", "-c", str(config)])
    assert result.exit_code != 0, result.output
    (line,) = error_lines(result.stderr)
    assert line.startswith("gammatune: error: report: cannot write "), line
    assert "None" not in line and "No space left on device" in line, line
    filler.unlink()
    for name in ("trials.csv", "report.html", "summary.json"):  # whole, as they were
        assert (small_disk / "runs" / "tiny" / name).read_bytes() == written[name]
    assert not list((small_disk / "runs" / "tiny").glob(".*.partial"))


@pytest.mark.parametrize(
    ("option", "target", "what"),
    [
        ("--out", "runs/tiny/study.db", "is the study storage"),
        ("--html", "tiny.yaml", "is the experiment file"),
        ("--out", "runs/tiny/study.db-wal", "is the study storage"),
        ("--html", "runs/tiny/model/model.json", "is inside the exported model"),
        ("--plots", "runs/tiny/scores", "is the trials' score files"),
        ("--out", "copy.db", "is a SQLite database (a study?)"),
    ],
)
def test_report_refuses_to_write_over_an_input(
    tmp_path: Path, option: str, target: str, what: str
) -> None:
    """Before anything is written: exit 2, one line, the study and the file as they were."""
    config = write_config(tmp_path)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    database = tmp_path / "runs" / "tiny" / "study.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (tmp_path / "copy.db").write_bytes(database.read_bytes())
    path = tmp_path / target
    before = {p: p.read_bytes() for p in (config, database, path) if p.is_file()}
    result = runner.invoke(app, ["report", "-c", str(config), option, str(path)])
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"gammatune: error: {option} {path}: {what}"), line
    assert line.endswith("writing there would replace it: choose another path."), line
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "runs" / "tiny" / "trials.csv").exists()  # nothing written
    assert Counter(t.state for t in trials(config))[TrialState.COMPLETE] == 2


def test_report_refuses_one_path_for_two_outputs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    same = tmp_path / "both.txt"
    result = runner.invoke(app, ["report", "-c", str(config), "--out", str(same),
                                 "--html", str(same)])  # fmt: skip
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [
        f"gammatune: error: --out {same}: is also --html; give each its own path."
    ]


def test_a_hand_damaged_trial_record_is_one_line_naming_study_and_trial(tmp_path: Path) -> None:
    """A trial's ``result`` cut short in the database (not JSON any more): report, refine,
    confirm and export each say which study, trial and attribute, exit 4, and change
    nothing (a verdict without that trial could differ silently)."""
    config = write_config(tmp_path)
    assert runner.invoke(app, ["run", "-c", str(config)]).exit_code == 0
    database = tmp_path / "runs" / "tiny" / "study.db"
    with sqlite3.connect(database) as connection:
        (attribute, value) = connection.execute(
            "SELECT a.trial_user_attribute_id, a.value_json FROM trial_user_attributes a "
            "JOIN trials t ON a.trial_id = t.trial_id JOIN studies s ON t.study_id = s.study_id "
            "WHERE s.study_name = 'tiny.search' AND t.number = 1 AND a.key = 'result'"
        ).fetchone()
        connection.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE trial_user_attribute_id = ?",
            (value[: len(value) // 2], attribute),
        )
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damaged = database.read_bytes()
    model = (tmp_path / "runs" / "tiny" / "model" / "weights.pt").read_bytes()
    for command in ("report", "refine", "confirm", "export"):
        result = runner.invoke(app, [command, "-c", str(config)])
        assert result.exit_code == 4, (command, result.output)
        (line,) = error_lines(result.stderr)
        assert line.startswith(
            "gammatune: error: storage: study 'tiny.search', trial 1: its attribute 'result' is "
            "damaged (not JSON: "
        ), line
        assert line.endswith(f"restore sqlite:///{database} from a backup."), line
    assert database.read_bytes() == damaged
    assert (tmp_path / "runs" / "tiny" / "model" / "weights.pt").read_bytes() == model


RACE = """
import sys, time
from gammatune.config import load_config
from gammatune.errors import StudyError
from gammatune.storage import open_storage
config = load_config(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all at one moment
try:
    open_storage(config)
except StudyError as exc:
    print(exc)
"""


def test_processes_creating_one_fresh_study_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Before the lock around creation, 9 of 12 such processes (3 rounds of 4) failed with
    ``UNIQUE constraint failed: alembic_version`` or ``table studies already exists``."""
    for round_ in range(3):
        (tmp_path / str(round_)).mkdir()
        config = write_config(tmp_path / str(round_))
        start = time.time() + 4  # past every process's imports
        processes = [
            subprocess.Popen([sys.executable, "-c", RACE, str(config), str(start)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(4)
        ]  # fmt: skip
        said = [p.communicate(timeout=120)[0] for p in processes]
        assert [p.returncode for p in processes] == [0] * 4 and said == [""] * 4, said
        assert optuna.get_all_study_names(open_storage(load_config(config))) == []


def test_two_refine_processes_started_at_once_propose_different_points(tmp_path: Path) -> None:
    """Each process that runs refine gets its own TPE seed (the first keeps ``seed``): two
    started together trained the same point twice when both were seeded alike."""
    config = write_config(tmp_path, refine={"n_trials": 4})
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    processes = [start_search(config, "refine") for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    own = [
        tuple(sorted(t.params.items()))
        for t in trials(config, "refine")
        if t.state == TrialState.COMPLETE and "warm_start_from" not in t.user_attrs
    ]
    assert len(own) >= 4 and len(set(own)) == len(own), own
    study = optuna.load_study(study_name="tiny.refine", storage=open_storage(load_config(config)))
    assert study.user_attrs["tpe_processes"] == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_each_process_that_opens_refine_gets_its_own_tpe_seed(tmp_path: Path) -> None:
    """The race above made certain: two processes open refine before either asks TPE. The
    first keeps ``seed`` (a single process's refine is reproducible), the second differs."""
    from gammatune.tuning._optuna import suggest
    from gammatune.tuning._runner import _open

    config_path = write_config(tmp_path)
    assert runner.invoke(app, ["search", "-c", str(config_path)]).exit_code == 0
    config = load_config(config_path)
    proposals = []
    for _ in range(2):
        plan, study = _open(config, "refine", open_storage(config), None, prepare=True)
        trial = study.ask()
        proposals.append({n: suggest(trial, n, d) for n, d in plan.distributions.items()})
    assert proposals[0] != proposals[1]
    (tmp_path / "again").mkdir()
    fresh = write_config(tmp_path / "again")  # the same experiment, run afresh
    assert runner.invoke(app, ["search", "-c", str(fresh)]).exit_code == 0
    again = load_config(fresh)
    plan, study = _open(again, "refine", open_storage(again), None, prepare=True)
    trial = study.ask()
    assert {n: suggest(trial, n, d) for n, d in plan.distributions.items()} == proposals[0]
