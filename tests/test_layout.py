"""Imports point one way, along the data flow; leaves may be imported by anyone."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gammatune"
# Each module imports only from modules left of it; leaves import only other leaves.
ORDER = [
    "config",
    "data",
    "models",
    "train",
    "stacks",
    "ensemble",
    "storage",
    "plan",
    "study",
    "trial",
    "monitor",
    "workflow",
    "workers",
    "report",
    "plots",
    "page",
    "cli",
]
LEAVES = {"errors", "loss", "fused", "schedules", "device", "metrics", "plugins"}


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("gammatune.")
        ):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "gammatune":
            found.add("__init__")
    return found


def test_every_module_is_placed() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(ORDER) | LEAVES


def test_imports_point_left() -> None:
    for index, module in enumerate(ORDER):
        allowed = set(ORDER[:index]) | LEAVES | {"__init__"}
        assert _imports(module) <= allowed, module


def test_leaves_import_only_leaves() -> None:
    for module in LEAVES:
        assert _imports(module) <= LEAVES, module


def test_modules_stay_small() -> None:
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, path.name


def test_public_api_resolves() -> None:
    import gammatune

    for name in gammatune.__all__:
        assert getattr(gammatune, name) is not None, name
