"""Text data: a text column becomes TF-IDF features fitted on the training split alone."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gammatune import load_config, load_data, load_model
from gammatune.cli import app
from gammatune.errors import DataError
from gammatune.scoring import score_frame
from tests.conftest import write_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _tickets(folder: Path, n: int = 800, **data: object) -> Path:
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_tickets_csv.py"), str(folder / "t.csv")],
        check=True,
        capture_output=True,
    )
    frame = pd.read_csv(folder / "t.csv").head(n)
    frame["message"] = [f"{m} row{i}" for i, m in enumerate(frame["message"])]  # a unique word
    frame.to_csv(folder / "t.csv", index=False)
    source = {"source": "csv", "path": "t.csv", "target": "label", "positive_label": "urgent"}
    return write_config(folder, data={**source, "text": "message", **data})


def test_the_vocabulary_sees_only_training_rows(tmp_path: Path) -> None:
    splits = load_data(load_config(_tickets(tmp_path, text_max_features=100_000)))
    text = splits.preprocessing.text
    assert text is not None and text.column == "message"
    unique_words = [t for t in text.terms if t.startswith("row") and " " not in t]
    assert len(unique_words) == len(splits.y_train)  # not one of a val or test row's
    assert splits.preprocessing.columns == ("n_attachments", "account_age_days")
    assert splits.n_features == 2 + len(text.terms)


def test_the_vocabulary_is_bounded(tmp_path: Path) -> None:
    splits = load_data(load_config(_tickets(tmp_path, text_max_features=50)))
    assert len(splits.preprocessing.text.terms) == 50 and splits.n_features == 52


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"text": "subject"}, "data.text: no column 'subject' in t.csv (columns: message,"),
        ({"text": None}, "categorical column 'message' has 800 distinct values in 800 rows"),
    ],
)
def test_text_errors_name_the_column(tmp_path: Path, data: dict, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        load_data(load_config(_tickets(tmp_path, **data)))


def test_run_export_predict_on_text(tmp_path: Path) -> None:
    path = _tickets(tmp_path, text_max_features=200)
    runner = CliRunner()
    result = runner.invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    model = load_config(path).run_dir / "model"
    assert '"terms"' in (model / "model.json").read_text()  # the vocabulary, as JSON
    new = pd.read_csv(tmp_path / "t.csv").drop(columns="label").head(50)
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        app,
        ["predict", "--model", str(model), "--data", str(tmp_path / "new.csv"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    own = score_frame(load_model(model), new, where="new.csv")
    np.testing.assert_allclose(pd.read_csv(out)["score"], own["score"], atol=1e-6)
