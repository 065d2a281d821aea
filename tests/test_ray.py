"""``--executor ray`` on a real Ray cluster that the tests start on 127.0.0.1: a head and a
second node process, one CPU each. Each stacked group of trials is a Ray task; the study stays
in the SQLite storage of the process that runs the stage.

The cluster's processes are stopped by their process groups (each ``ray start`` leads one)
and by the pids of their workers, never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.errors import ConfigError
from gammatune.tuning._ray import _gather
from tests.conftest import TINY, write_config
from tests.test_faults import SLOW_TRAIN, assert_each_point_once, error_lines, trials

try:
    import ray
except ImportError:  # the tests that need it say so; the one of a missing Ray runs anyway
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed: pip install -e .[ray]")
runner = CliRunner()
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
# Several seconds a trial on one core, so that a node can be killed (or Ctrl+C land) mid-group.
SLOWER_TRAIN = {**SLOW_TRAIN, "epochs": 150, "min_epochs": 150, "patience": 150, "batch_size": 32}
# A lost node is noticed in about a second (Ray's default: about 15 s).
FAST_HEALTH = {
    "RAY_health_check_period_ms": "300",
    "RAY_health_check_timeout_ms": "300",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "0",
}


@dataclass
class _Cluster:
    address: str
    groups: list[int]  # the process group of each node's `ray start`
    dashboard: str  # http://127.0.0.1:PORT
    temp: Path  # Ray's session folders (logs, sockets)

    def node_pids(self, group: int) -> list[int]:
        return [pid for pid in _pids() if _pgid(pid) == group]


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's title (argv, as Ray sets it) and parent pid."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return title, parent


def _children(parents: set[int]) -> list[int]:
    return [pid for pid in _pids() if (s := _stat(pid)) is not None and s[1] in parents]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ray_start(*args: str, env: dict[str, str]) -> int:
    """``ray start`` as the leader of a new process group; returns that group."""
    command = [RAY or "ray", "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
               "--object-store-memory", str(200 * 2**20), "--disable-usage-stats",
               *args]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        out, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        out = "`ray start` took more than 120 s"
    if process.returncode != 0:
        _stop_groups([process.pid])
        pytest.skip(f"a Ray node could not start: {out.strip().splitlines()[-1:]}")
    return process.pid


def _stop_groups(groups: list[int]) -> None:
    """Kill each node's processes and its workers (in process groups of their own)."""
    members = {pid for pid in _pids() if _pgid(pid) in set(groups)}
    for pid in [*_children(members), *members]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[_Cluster]:
    """A head and a second node on 127.0.0.1 (1 CPU each); this process is a driver on it."""
    if ray is None:
        pytest.skip("ray is not installed: pip install -e .[ray]")
    if RAY is None:
        pytest.skip("the `ray` command is not on PATH")
    port, dashboard = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="gt-ray-", dir="/tmp")  # Ray's socket paths must be short
    env = {**os.environ, **FAST_HEALTH}
    env.pop("RAY_ADDRESS", None)
    groups: list[int] = []
    try:
        groups.append(
            _ray_start(
                "--head",
                "--port",
                str(port),
                "--temp-dir",
                temp,
                "--include-dashboard",
                "true",  # what the dashboard shows of a run is tested
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(dashboard),
                "--ray-client-server-port",
                str(_free_port()),
                env=env,
            )  # fmt: skip
        )
        groups.append(_ray_start("--address", f"127.0.0.1:{port}", env=env))
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, logging_level="WARNING")
        deadline = time.monotonic() + 60
        while ray.cluster_resources().get("CPU", 0) < 2:
            if time.monotonic() > deadline:
                pytest.skip("the second Ray node did not join in 60 s")
            time.sleep(0.2)
        yield _Cluster(f"127.0.0.1:{port}", groups, f"http://127.0.0.1:{dashboard}", Path(temp))
    finally:
        ray.shutdown()
        _stop_groups(groups)
        shutil.rmtree(temp, ignore_errors=True)


def _config(folder: Path, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, **changes)


def test_ray_gives_every_trial_the_value_local_training_gives(
    tmp_path: Path, cluster: _Cluster
) -> None:
    small = {
        "train": {**TINY["train"], "parallel": 2},  # 2 groups of 2 at once on the 2 nodes
        "refine": {"n_trials": 2, "batch": 2},
        "confirm": {"top_k": 1, "repeats": 2},
    }
    local, remote = _config(tmp_path / "local", **small), _config(tmp_path / "ray", **small)
    result = runner.invoke(app, ["run", "-c", str(local)])
    assert result.exit_code == 0, result.output
    command = ["run", "-c", str(remote), "--executor", "ray", "--address", cluster.address]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    expected, got = (pd.read_csv(c.parent / "runs/tiny/trials.csv") for c in (local, remote))
    assert len(got) == len(expected) > 10
    keys = ["stage", "number"]
    compared = [c for c in expected.columns if c != "duration_s"]
    pd.testing.assert_frame_equal(
        got.sort_values(keys)[compared].reset_index(drop=True),
        expected.sort_values(keys)[compared].reset_index(drop=True),
    )


def _start_search(config: Path, address: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "gammatune", "search", "--config", str(config),
               "--executor", "ray", "--address", address]  # fmt: skip
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, preexec_fn=_default_sigint,
    )  # fmt: skip


def _default_sigint() -> None:
    """Ctrl+C as in a terminal: a test run started in the background (``make test &``) passes
    SIGINT on ignored, and the command would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _training_on(cluster: _Cluster, group: int) -> int | None:
    """The pid of a worker of ``group``'s node that is running a group of trials now."""
    raylets = {p for p in cluster.node_pids(group) if "raylet" in (_stat(p) or ("", 0))[0]}
    for pid in _children(raylets):
        if (found := _stat(pid)) is not None and found[0].startswith("ray::_train_group"):
            return pid
    return None


def test_ctrl_c_cancels_the_groups_and_a_rerun_completes(
    tmp_path: Path, cluster: _Cluster
) -> None:
    config = _config(tmp_path, train=SLOWER_TRAIN, data={**TINY["data"], "n_samples": 4000})
    process = _start_search(config, cluster.address)
    deadline = time.monotonic() + 90
    while not any(_training_on(cluster, group) for group in cluster.groups):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no group of trials started"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert error_lines(stderr) == ["gammatune: interrupted; run the same command again to resume."]
    assert {t.state for t in trials(config)} == {TrialState.FAIL}
    deadline = time.monotonic() + 2  # the cancelled groups stop, well before they would end
    while any(_training_on(cluster, group) for group in cluster.groups):
        assert time.monotonic() < deadline, "a cancelled group kept training"
        time.sleep(0.1)
    command = ["search", "-c", str(config), "--executor", "ray", "--address", cluster.address]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 2)


def test_a_node_killed_mid_group_loses_no_trial(tmp_path: Path, cluster: _Cluster) -> None:
    # One trial a group, a few seconds each: one group runs on each node at once.
    config = _config(tmp_path, train=SLOWER_TRAIN, data={**TINY["data"], "n_samples": 4000})
    process = _start_search(config, cluster.address)
    second = cluster.groups[1]
    deadline = time.monotonic() + 90
    while (worker := _training_on(cluster, second)) is None:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no group of trials started on the second node"
        time.sleep(0.05)
    time.sleep(0.5)  # into its training, past the worker's set-up
    assert _training_on(cluster, second) == worker  # still training: killed mid-group
    done_before = Counter(t.state for t in trials(config))[TrialState.COMPLETE]
    _stop_groups([second])  # the node's raylet, its agents and the training worker: kill -9
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert not error_lines(stderr)
    assert done_before < 2  # the lost group had not finished
    assert sum(node["Alive"] for node in ray.nodes()) == 1  # the cluster saw the node die
    assert_each_point_once(config, 2)
    assert all(t.state == TrialState.COMPLETE for t in trials(config))


def _refuse() -> None:
    raise ConfigError("search.rare_classes: 'x' is not a class of the data.")


def test_a_users_error_on_the_cluster_arrives_as_itself(cluster: _Cluster) -> None:
    with pytest.raises(ConfigError, match=r"^search.rare_classes: 'x' is not a class"):
        _gather(ray, [ray.remote(_refuse).remote()])


@needs_ray
def test_no_cluster_is_one_line_with_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # not the fixture's connection
    config = _config(tmp_path)
    command = ["search", "-c", str(config), "--executor", "ray", "--address", "127.0.0.1:1"]
    result = runner.invoke(app, command)
    assert result.exit_code == 4, result.output
    assert error_lines(result.stderr) == [
        "gammatune: error: ray: no cluster answers at 127.0.0.1:1 ([Errno 111] Connection "
        "refused); start one (`ray start --head`) or give its head's address with --address "
        "or RAY_ADDRESS."
    ]


def test_ray_missing_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as when not installed
    result = runner.invoke(app, ["search", "-c", str(_config(tmp_path)), "--executor", "ray"])
    assert result.exit_code == 2, result.output
    assert error_lines(result.stderr) == [
        "gammatune: error: --executor ray: Ray is not installed; pip install 'gammatune[ray]'."
    ]


def test_workers_and_ray_together_are_refused(tmp_path: Path) -> None:
    command = ["search", "-c", str(_config(tmp_path)), "--executor", "ray", "--workers", "2"]
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert error_lines(result.stderr) == [
        "gammatune: error: --executor ray: must be local, or ray with --workers 1."
    ]


@needs_ray
def test_a_port_that_never_answers_is_one_line_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener that accepts connections and never speaks (a frozen head, another program):
    Ray's own wait lasts minutes; gammatune waits 5 s for the handshake."""
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # not the fixture's connection
    config = _config(tmp_path)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes each connection; nothing ever reads
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        command = ["search", "-c", str(config), "--executor", "ray", "--address", where]
        result = runner.invoke(app, command)
        elapsed = time.monotonic() - started
    assert result.exit_code == 4, result.output
    assert error_lines(result.stderr) == [
        f"gammatune: error: ray: no cluster answers at {where} (a connection opens, but nothing "
        "answered Ray's handshake in 5 s); start one (`ray start --head`) or give its head's "
        "address with --address or RAY_ADDRESS."
    ]
    assert elapsed < 30, elapsed  # data and imports included; the wait itself is 5 s
    with contextlib.suppress(KeyError):  # no study yet, or one without trials: none claimed
        assert trials(config) == []


@pytest.fixture
def lone_head() -> Iterator[_Cluster]:
    """A head of its own (1 CPU, no dashboard), for a test that kills it."""
    if ray is None or RAY is None:
        pytest.skip("ray is not installed: pip install -e .[ray]")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="gt-lone-", dir="/tmp")
    env = {**os.environ, **FAST_HEALTH}
    env.pop("RAY_ADDRESS", None)
    groups: list[int] = []
    try:
        groups.append(
            _ray_start(
                "--head",
                "--port",
                str(port),
                "--temp-dir",
                temp,
                "--include-dashboard",
                "false",
                "--ray-client-server-port",
                str(_free_port()),
                env=env,
            )  # fmt: skip
        )
        yield _Cluster(f"127.0.0.1:{port}", groups, "", Path(temp))
    finally:
        _stop_groups(groups)
        shutil.rmtree(temp, ignore_errors=True)


def test_the_head_killed_mid_run_is_one_line_and_fails_its_trials(
    tmp_path: Path, lone_head: _Cluster
) -> None:
    """gcs_server and raylet killed (kill -9) while a group trains: one line, exit 4, no trial
    left RUNNING (Ray's own driver exits 1 after 60 s, leaving them so); a rerun retrains."""
    config = _config(tmp_path, train=SLOWER_TRAIN, data={**TINY["data"], "n_samples": 4000})
    process = _start_search(config, lone_head.address)
    (group,) = lone_head.groups
    deadline = time.monotonic() + 90
    while _training_on(lone_head, group) is None:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no group of trials started"
        time.sleep(0.05)
    titles = {pid: (_stat(pid) or ("", 0))[0] for pid in lone_head.node_pids(group)}
    head = [pid for pid, title in titles.items() if title.endswith(("/gcs_server", "/raylet"))]
    assert len(head) == 2, titles
    killed_at = time.monotonic()
    for pid in head:
        os.kill(pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    waited = time.monotonic() - killed_at
    assert process.returncode == 4, stderr
    (line,) = error_lines(stderr)
    assert re.fullmatch(
        r"gammatune: error: ray: lost the cluster's head at [\d.]+:\d+ \(\[Errno 111\] "
        r"Connection refused; for 10 s\); the trials in flight are failed: run the same "
        r"command again once the cluster is back\.",
        line,
    ), line
    assert waited < 55, waited  # before Ray's own exit at 60 s
    states = Counter(t.state for t in trials(config))  # one CPU: the other point still waits
    assert states[TrialState.RUNNING] == 0 and states[TrialState.FAIL] == 1, states
    result = runner.invoke(app, ["search", "-c", str(config)])  # here, the cluster is gone
    assert result.exit_code == 0, result.output
    assert_each_point_once(config, 2)


PG_URL = os.environ.get("GAMMATUNE_TEST_POSTGRES")


@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL server: GAMMATUNE_TEST_POSTGRES unset")
def test_the_dashboard_never_shows_the_storage_password(tmp_path: Path, cluster: _Cluster) -> None:
    """Ray records a driver's command line as its job's entrypoint, and the dashboard shows it
    (``/api/jobs/``): a ``--storage`` URL there would show the database's password."""
    import json
    import urllib.request
    import uuid

    assert PG_URL is not None
    password = PG_URL.split("://", 1)[1].rpartition("@")[0].partition(":")[2]
    assert password
    name = f"dash-{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, name=name, train={**TINY["train"], "epochs": 2})
    command = [sys.executable, "-m", "gammatune", "search", "-c", str(config),
               "--executor", "ray", "--address", cluster.address, "--storage", PG_URL]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        with urllib.request.urlopen(f"{cluster.dashboard}/api/jobs/", timeout=30) as answer:
            body = answer.read().decode()
    except OSError as exc:
        pytest.skip(f"the Ray dashboard does not answer: {exc}")
    assert password not in body
    shown = [job["entrypoint"] for job in json.loads(body) if str(config) in job["entrypoint"]]
    assert len(shown) == 1 and "--storage postgresql://gammatune:***@" in shown[0], shown
    for path in cluster.temp.rglob("*"):  # the session's logs and files
        if path.is_file() and not path.is_socket():
            with contextlib.suppress(OSError):
                assert password.encode() not in path.read_bytes(), path


def test_ray_runs_a_users_trainer_function_one_trial_a_task(
    tmp_path: Path, cluster: _Cluster
) -> None:
    from tests.test_trainer import experiment, records

    resources = {"env": {"MODE": ""}, "resources": {"cpus": 1}}
    config = experiment(tmp_path, trainer=resources, search={"gamma": [0, 1, 2], "alpha": [0.75]})
    command = ["search", "-c", str(config), "--executor", "ray", "--address", cluster.address]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    done = [r for t, r in records(config, "search") if t.state == TrialState.COMPLETE]
    assert sorted(r.setting.gamma for r in done) == [0.0, 1.0, 2.0]
    local = experiment(tmp_path / "local", search={"gamma": [0, 1, 2], "alpha": [0.75]})
    assert runner.invoke(app, ["search", "-c", str(local)]).exit_code == 0
    expected = {r.setting.gamma: r.value for _, r in records(local, "search")}
    assert {r.setting.gamma: r.value for r in done} == expected  # the same trials as locally
