"""The docs cannot drift from the code: the generated reference (docs/hooks/reference.py) against
the schema, the CLI and a real trials.csv; the README's experiment file, links and length."""

from __future__ import annotations

import importlib.util
import re
import typing
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import Config, load_config
from gammatune.config._sources import DataConfig
from gammatune.errors import GammatuneError

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reference_hook", ROOT / "docs/hooks/reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _hook()


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf key, walked independently of the hook: ``a.b``, ``a.list[].c``."""
    keys = set()
    for name, field in model.model_fields.items():
        if field.annotation is type(None):
            continue
        nested = _models(field.annotation)
        if prefix + name == "data":
            keys.add("data")
            for source in _models(DataConfig):
                keys |= {f"data.{n}" for n, f in source.model_fields.items()
                         if n != "source" and f.annotation is not type(None)}  # fmt: skip
        elif nested:
            items = "[]" if typing.get_origin(field.annotation) is list else ""
            for sub in nested:
                keys |= _schema_keys(sub, f"{prefix}{name}{items}.")
        else:
            keys.add(prefix + name)
    return keys


def _first_column(page: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", page, flags=re.MULTILINE))


def test_every_key_of_the_schema_is_in_the_reference_and_no_other() -> None:
    documented = _first_column(reference.render("reference/experiment-file.md"))
    schema = _schema_keys(Config)
    assert schema - documented == set(), "keys missing from the generated reference"
    assert documented - schema == set(), "keys in the reference that the schema does not have"


def test_a_key_without_a_description_fails_the_build() -> None:
    class Section(BaseModel):
        described: int = Field(1, description="Has one.")
        bare: int = 2

    with pytest.raises(reference.ReferenceError, match="Section.bare"):
        reference.config_rows(Section)


def test_the_reference_shows_types_defaults_and_bounds() -> None:
    rows = {row[0]: row for row in reference.config_rows(Config)}
    assert rows["confirm.repeats"][1:3] == ("int (≥ 2)", "`5`")
    assert rows["train.monitor"][1] == '"pr_auc" | "val_loss"'
    assert rows["name"][2] == "**required**"
    assert "items ≥ 0, ≤ 20" in rows["search.gamma"][1]


def test_every_command_and_option_of_the_cli_is_in_the_reference() -> None:
    page = reference.render("reference/cli.md")
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"]).output.split("Commands:", 1)[1]
    commands = re.findall(r"^  (\w+)\s", listing, re.MULTILINE)
    assert {"check", "suggest", "baseline", "search", "refine", "confirm", "report", "export",
            "predict", "run"} <= set(commands)  # fmt: skip
    for command in commands:
        section = page.split(f"## `gammatune {command}`", 1)[1].split("\n## ", 1)[0]
        shown = runner.invoke(app, [command, "--help"], terminal_width=200).output
        for option in set(re.findall(r"(--[a-z][a-z-]+)", shown)) - {"--help"}:
            assert f"`{option}" in section or f", {option}" in section, (command, option)
    assert "`gammatune worker`" not in page  # hidden


def test_exit_codes_come_from_the_errors() -> None:
    page = reference.render("reference/exit-codes.md")
    for cls in [GammatuneError, *GammatuneError.__subclasses__()]:
        assert f"| `{cls.exit_code}` |" in page and f"`{cls.__name__}`" in page
    assert "| `130` |" in page


def test_the_csv_reference_matches_a_real_trials_csv(tiny_config: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--config", str(tiny_config)])
    assert result.exit_code == 0, result.output
    csv = tiny_config.parent / "runs" / "tiny" / "trials.csv"
    header = csv.read_text(encoding="utf-8").splitlines()[0].split(",")
    documented = reference.csv_columns()
    assert header == [c for c in documented if c in header]  # in the documented order
    from gammatune.report._table import _TASK_FIELDS

    tasks_only = {f"{split}_{name}" for split in ("val", "test") for name in _TASK_FIELDS}
    assert set(documented) - set(header) == tasks_only  # a segmentation or detection run's
    assert _first_column(reference.render("reference/csv-columns.md")) == set(documented)


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_the_readme_is_a_front_page() -> None:
    assert 150 <= len(_readme().splitlines()) <= 200


def test_the_readme_experiment_file_is_valid(tmp_path: Path) -> None:
    block = _readme().split("```yaml\n", 1)[1].split("```", 1)[0]
    assert len(block.splitlines()) <= 16
    path = tmp_path / "fraud.yaml"
    path.write_text(block, encoding="utf-8")
    config = load_config(path)
    assert config.data.source == "csv" and yaml.safe_load(block)["name"] == config.name


def test_the_readme_links_and_picture_exist() -> None:
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", _readme())
    assert "docs/img/report.png" in targets
    for target in targets:
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_every_extra_is_in_the_install_table() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    page = (ROOT / "docs" / "getting-started" / "install.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([a-z-]+)` \|", page, flags=re.MULTILINE))
    assert set(extras) == listed
