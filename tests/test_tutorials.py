"""The tutorials' commands run, at a tiny size: each page's ``bash`` blocks are read from the page
itself and run in a copy of examples/ whose experiment files are shrunk (fewer epochs, grid
points and trials), so the pages cannot drift from the code. The files the pages show are
included from examples/ by the docs build (``--8<--`` snippets), not copied."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
SMALL = {
    "train": {"epochs": 3, "min_epochs": 1, "patience": 1, "batch_size": 256, "lr": 0.003},
    "baseline": {"repeats": 1, "linear": False},
    "search": {"gamma": [0.5, 2.0], "alpha": [0.5]},
    "refine": {"n_trials": 2},
    "confirm": {"top_k": 1, "repeats": 2},
}


def _commands(page: Path) -> list[str]:
    """The command lines of the page's ``bash`` blocks, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    lines = [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]
    # An install line is the reader's step, not the tutorial's: CI's venv has the extras.
    return [line for line in lines if line and not line.startswith(("#", "pip install"))]


def _shrunk_examples(folder: Path) -> Path:
    examples = folder / "examples"
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns("__pycache__"))
    for path in examples.glob("*.yaml"):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        config.update(SMALL)
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return examples


def _run(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    args = shlex.split(line)
    if args[0] == "gammatune":
        args = [sys.executable, "-m", "gammatune", *args[1:]]
    elif args[0] == "python":
        args = [sys.executable, *args[1:]]
    else:
        raise AssertionError(f"a tutorial command this test does not know how to run: {line}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("page", ["fraud.md", "text.md"])
def test_a_tutorials_commands_run(page: str, tmp_path: Path) -> None:
    _shrunk_examples(tmp_path)
    commands = _commands(TUTORIALS / page)
    assert any(line.startswith("gammatune run") for line in commands)
    for line in commands:
        result = _run(line, tmp_path)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    for line in commands:
        if line.startswith("gammatune run"):
            config = yaml.safe_load((tmp_path / shlex.split(line)[-1]).read_text("utf-8"))
            assert (tmp_path / "runs" / config["name"] / "report.html").exists()
            assert (tmp_path / "runs" / config["name"] / "model" / "model.json").exists()


def test_the_tutorials_include_their_files_from_examples() -> None:
    for page in TUTORIALS.glob("*.md"):
        for included in re.findall(r'--8<-- "([^"]+)"', page.read_text(encoding="utf-8")):
            assert (ROOT / included).is_file(), (page.name, included)
