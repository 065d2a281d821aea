"""Experiment-file validation: every user mistake is one line naming the field and value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from gammatune.config import Config, load_config
from gammatune.errors import ConfigError
from tests.conftest import TINY

BAD = [
    ({"nam": "x"}, "nam: unknown key (check its spelling and level) (got 'x')"),
    ({"train": {"epochs": 0}}, "train.epochs: Input should be greater than 0 (got 0)"),
    ({"train": {"epochs": "ten"}}, "train.epochs: Input should be a valid integer"),
    ({"train": {"devce": "cpu"}}, "train.devce: unknown key"),
    ({"train": {"device": "gpu"}}, "train.device: String should match pattern"),
    (
        {"train": {"monitor": "f1"}},
        "train.monitor: Input should be 'pr_auc' or 'val_loss' (got 'f1')",
    ),
    ({"data": {"source": "excel"}}, "data: Input tag 'excel' found using 'source'"),
    ({"data": {"source": "csv", "path": "x.csv"}}, "data.target: Field required"),
    (
        {"data": {"source": "synthetic", "n_samples": 10}},
        "data.n_samples: Input should be greater",
    ),
    ({"data": {"source": "sklearn", "name": "mnist"}}, "data.name: Input should be"),
    ({"data": {"source": "python", "ref": "no colon"}}, "data.ref: String should match pattern"),
    (
        {"search": {"gamma": [0.5, -1]}},
        "search.gamma[1]: Input should be greater than or equal to 0",
    ),
    (
        {"search": {"alpha": [1.5]}},
        "search.alpha[0]: must be a number in [0, 1], null (off), 'inverse' or 'effective' "
        "(got 1.5)",
    ),
    ({"search": {"gamma": []}}, "search.gamma: List should have at least 1 item"),
    ({"search": {"gamma": [True]}}, "search: gamma must not be a boolean; got [True] (YAML"),
    ({"search": {"alpha": [False, 0.75]}}, "search: alpha must not be a boolean"),
    ({"seed": True}, "seed must not be a boolean; got True"),
    ({"train": {"lr": True}}, "train: lr must not be a boolean"),
    ({"seed": -1}, "seed: Input should be greater than or equal to 0 (got -1)"),
    ({"seed": 2**70}, "seed: Input should be less than 4294967296"),
    ({"confirm": {"repeats": 1}}, "confirm.repeats: Input should be greater than or equal to 2"),
    ({"split": {"val": 0.5, "test": 0.5}}, "split: val + test must be < 0.9; got 1"),
    (
        {"model": {"kind": "transformer"}},
        "model.kind: must be one of linear, mlp, cnn, unet or 'module:function'",
    ),
    ({"objective": "accuracy"}, "objective: must be one of f1, recall, precision, pr_auc"),
    ({"objective": ["precision"]}, "objective: a list of objectives needs 2 or more distinct"),
    ({"threshold": 1.5}, "threshold: must be in (0, 1) or 'tuned' (got 1.5)"),
    ({"refine": {"n_trials": -3}}, "refine.n_trials: Input should be greater than 0 (got -3)"),
    ({"name": "a b/c"}, "name: String should match pattern"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_field_names_field_and_value(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({**TINY, **change}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}: {message}" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the experiment file is empty"),
        ("- a\n- b\n", "the experiment file is a list, not a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_config(tmp_path / "nope.yaml")


def test_defaults_paths_and_storage(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    config = {"name": "demo", "data": {"source": "csv", "path": "data/x.csv", "target": "y"}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    loaded = load_config(path)
    assert loaded.data.path == tmp_path / "data" / "x.csv"  # relative to the file
    assert loaded.search.gamma == [0.5, 1.0, 1.5, 2.0]
    assert loaded.train.monitor == "pr_auc"
    assert loaded.storage_url == "sqlite:///runs/demo/study.db"
    assert load_config(path, storage="sqlite:///other.db").storage_url == "sqlite:///other.db"


def test_overrides_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    with pytest.raises(ConfigError, match="storage: Input should be a valid string"):
        load_config(path, storage=3)


def test_a_unet_trains_through_gammatunes_own_trainer_function() -> None:
    from gammatune.config import UNET_TRAINER

    raw = {"name": "x", "data": {"source": "npz", "path": "x.npz"}, "model": {"kind": "unet"}}
    config = Config.model_validate(raw)
    assert config.trainer is not None and config.trainer.function == UNET_TRAINER
    assert config.trainer.is_builtin
    again = Config.model_validate(config.model_dump(mode="json"))  # config.resolved.yaml reads
    assert again == config
    synthetic = {**raw, "data": {"source": "synthetic"}}
    with pytest.raises(ValidationError, match="model.kind: unet needs images with masks"):
        Config.model_validate(synthetic)
