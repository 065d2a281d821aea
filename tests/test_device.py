"""device.py's thread choice: what train.threads (and --threads) give a training process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import load_config
from gammatune.device import cpu_threads
from gammatune.errors import ConfigError
from gammatune.fingerprint import config_facts
from tests.conftest import write_config


def _machine(monkeypatch: pytest.MonkeyPatch, *, cpus: int, load: float) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: cpus)


def test_auto_takes_the_cpus_the_load_leaves_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cpus=2, load=10.9)  # the busy 2-core box: one thread
    assert cpu_threads("auto") == 1
    _machine(monkeypatch, cpus=16, load=3.2)
    assert cpu_threads("auto") == 13
    _machine(monkeypatch, cpus=8, load=0.0)  # idle: torch's default
    assert cpu_threads("auto") == 8


def test_a_number_or_omp_num_threads_is_taken_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cpus=2, load=10.0)
    assert cpu_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads("auto") == 2


def test_threads_in_the_file_on_the_command_line_and_out_of_the_fingerprint(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path)
    assert load_config(path).train.threads == "auto"
    assert load_config(path, **{"train.threads": 2}).train.threads == 2
    assert load_config(path).train.lr == load_config(path, **{"train.threads": 2}).train.lr
    assert config_facts(load_config(path)) == config_facts(
        load_config(path, **{"train.threads": 4})
    )
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["train"]["threads"] = 0
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"train\.threads"):
        load_config(path)


def test_the_threads_option_sets_torchs_threads(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["baseline", "-c", str(path), "--threads", "2"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 2
        bad = CliRunner().invoke(app, ["baseline", "-c", str(path), "--threads", "0"])
        assert bad.exit_code == 2
    finally:
        torch.set_num_threads(before)
