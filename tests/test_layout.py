"""The layout encodes the design: imports point one way, along the data flow.

Units are the top-level modules and the subpackages (``loss``, ``training``, ``tuning``,
``report``). Each unit imports only units left of it in ``ORDER``, and the leaves; the leaves
import only leaves. ``loss`` imports nothing of gammatune but ``errors``; ``training`` never
imports optuna; ``report`` never imports torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gammatune"
ORDER = [
    "config", "outputs", "encoders", "columns", "features", "tables", "labels", "units", "data",
    "models", "training", "spec", "estimator", "record", "tasks", "detection",
    "detection_bootstrap", "task_scores", "scores_files", "journal", "watchdog", "damage",
    "storage", "weights", "fingerprint",
    "tuning", "report", "saved_model", "scoring", "export", "suggest", "overview", "progress",
    "cli",
]  # fmt: skip
LEAVES = {"errors", "device", "metrics", "bootstrap", "segmentation", "plugins", "loss"}
SUBPACKAGES = {"config", "loss", "training", "tuning", "report"}


def _files(unit: str) -> list[Path]:
    folder = PACKAGE / unit
    return sorted(folder.glob("*.py")) if folder.is_dir() else [PACKAGE / f"{unit}.py"]


def _imported(path: Path) -> tuple[set[str], set[str]]:
    """The gammatune units and the top-level third-party packages a file imports."""
    units, packages = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "gammatune":
                names = [f"gammatune.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "gammatune" and len(parts) > 1:
                units.add(parts[1])
            elif parts[0] != "gammatune":
                packages.add(parts[0])
    return units, packages


def _unit_imports(unit: str) -> tuple[set[str], set[str]]:
    units: set[str] = set()
    packages: set[str] = set()
    for path in _files(unit):
        found, third = _imported(path)
        units |= found
        packages |= third
    return units - {unit, "__version__"}, packages


def test_every_module_is_placed() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top | folders == set(ORDER) | LEAVES
    assert folders == SUBPACKAGES


def test_imports_point_left() -> None:
    for index, unit in enumerate(ORDER):
        allowed = set(ORDER[:index]) | LEAVES
        assert _unit_imports(unit)[0] <= allowed, unit


def test_leaves_import_only_leaves() -> None:
    for unit in LEAVES - {"loss"}:
        assert _unit_imports(unit)[0] <= LEAVES - {"loss"}, unit
    assert _unit_imports("loss")[0] <= {"errors"}


def test_training_never_imports_optuna_and_report_never_torch() -> None:
    assert "optuna" not in _unit_imports("training")[1]
    assert "torch" not in _unit_imports("report")[1]
    code = "import sys, gammatune.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_subpackages_hide_their_modules_behind_all() -> None:
    for name in SUBPACKAGES:
        private = [p.stem for p in (PACKAGE / name).glob("*.py") if p.stem != "__init__"]
        assert all(stem.startswith("_") for stem in private), name
        module = __import__(f"gammatune.{name}", fromlist=["__all__"])
        assert module.__all__ and all(getattr(module, n) is not None for n in module.__all__)


def test_examples_and_benchmarks_use_only_public_names() -> None:
    root = PACKAGE.parent
    for path in [*root.glob("examples/*.py"), *root.glob("bench/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gammatune"):
                private = [p for p in node.module.split(".") if p.startswith("_")]
                private += [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name}: {node.module}"


def test_modules_stay_small() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, path.name


def test_public_api_resolves() -> None:
    import gammatune

    for name in gammatune.__all__:
        assert getattr(gammatune, name) is not None, name
