"""optuna-dashboard, started for real on 127.0.0.1, lists what a user sorts trials by."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.storage import KEY_FIGURES, load_record
from tests.conftest import write_config

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A finished baseline -> refine run, served by optuna-dashboard."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
    config = write_config(tmp_path, refine={"n_trials": 3})
    for stage in ("baseline", "search", "refine"):
        result = CliRunner().invoke(app, [stage, "-c", str(config)])
        assert result.exit_code == 0, result.output
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    storage = f"sqlite:///{tmp_path / 'runs' / 'tiny' / 'study.db'}"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("optuna-dashboard")), storage,
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"{url}/api/studies")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not start: {server.stderr.read()!r}")
                time.sleep(0.2)
        yield url, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=10)


def _study(url: str, name: str) -> dict[str, Any]:
    studies = _get(f"{url}/api/studies")["study_summaries"]
    (study_id,) = [s["study_id"] for s in studies if s["study_name"] == name]
    return _get(f"{url}/api/studies/{study_id}?after=0")


def test_the_dashboard_sorts_trials_by_the_key_figures(dashboard: tuple[str, Path]) -> None:
    url, folder = dashboard
    search = _study(url, "tiny.search")
    sortable = {a["key"] for a in search["union_user_attrs"] if a["sortable"]}
    assert {f"val_{name}" for name in KEY_FIGURES} <= sortable
    trial = search["trials"][0]
    attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
    # The full record is still stored (the dashboard cuts long values at 1024 characters).
    stored = optuna.load_study(
        study_name="tiny.search", storage=f"sqlite:///{folder / 'runs' / 'tiny' / 'study.db'}"
    ).trials[trial["number"]]
    record = load_record(stored)
    assert record is not None and record.val is not None
    assert float(attrs["val_f1"]) == pytest.approx(record.val.f1, abs=1e-6)
    assert float(attrs["val_recall"]) == pytest.approx(record.val.recall, abs=1e-6)
    assert not any(key.startswith("test_") for key in attrs)  # choosing by test is the pitfall


def test_refine_fills_the_learning_curves_and_marks_copies(dashboard: tuple[str, Path]) -> None:
    url, _ = dashboard
    refine = _study(url, "tiny.refine")
    assert refine["has_intermediate_values"]
    copies = [t for t in refine["trials"] if any(
        a["key"] == "warm_start_from" for a in t["user_attrs"])]  # fmt: skip
    trained = [t for t in refine["trials"] if t not in copies]
    assert copies, "the search trials in the window are copied, and marked"
    assert all(not t["intermediate_values"] for t in copies)
    assert trained and all(len(t["intermediate_values"]) >= 2 for t in trained)
    attrs = {a["key"] for a in copies[0]["user_attrs"]}
    assert {"val_f1", "val_precision", "val_recall"} <= attrs
