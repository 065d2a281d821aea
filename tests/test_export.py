"""The tuned model: `run` exports it, `predict` scores a CSV with it in a fresh process."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from typer.testing import CliRunner

from gammatune import FocalClassifier, load_config, load_data, load_model, save_model
from gammatune.cli import app
from gammatune.errors import ConfigError
from gammatune.report import setting_mask, study_summary
from gammatune.scores_files import load_scores_file
from gammatune.scoring import score_frame
from tests.conftest import write_config

runner = CliRunner()
COLUMNS = [f"f{i}" for i in range(8)]


def _table_config(folder: Path) -> Path:
    x, y = make_classification(
        n_samples=1200, n_features=8, n_informative=5, weights=[0.9], random_state=3
    )
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame["label"] = np.where(y == 1, "fraud", "ok")
    frame.to_csv(folder / "table.csv", index=False)
    data = {"source": "csv", "path": "table.csv", "target": "label", "positive_label": "fraud"}
    return write_config(folder, data=data, confirm={"repeats": 2, "top_k": 1})


DECIDED: list[str] = []  # who decided the verdict during the fixture's `run`


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `run` on a CSV; returns its experiment file."""
    import gammatune.export
    import gammatune.report._page

    folder = tmp_path_factory.mktemp("export")
    path = _table_config(folder)
    with pytest.MonkeyPatch.context() as patch:
        for module in (gammatune.report._page, gammatune.export):
            decide = module.study_summary
            counted = lambda *a, m=module, f=decide, **k: DECIDED.append(m.__name__) or f(*a, **k)  # noqa: E731
            patch.setattr(module, "study_summary", counted)
        result = runner.invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "exported gamma=" in result.stderr
    return path


def test_run_decides_the_verdict_once_and_exports_what_export_alone_does(exported: Path) -> None:
    """`run`'s export takes its report's trials and summary (deciding the verdict, with its
    bootstraps, took 1-1.5 s a run); the model is the one `export` saves deciding it again."""
    assert DECIDED == ["gammatune.report._page"]
    model = load_config(exported).run_dir / "model"
    before = {name: (model / name).read_bytes() for name in ("model.json", "weights.pt")}
    result = runner.invoke(app, ["export", "-c", str(exported)])
    assert result.exit_code == 0, result.output
    assert {name: (model / name).read_bytes() for name in before} == before


def test_run_exports_weights_and_a_json_card(exported: Path) -> None:
    config = load_config(exported)
    model = config.run_dir / "model"
    card = json.loads((model / "model.json").read_text())
    verdict = study_summary(config)[1].verdict
    assert verdict.recommended is not None
    assert [card["gamma"], card["alpha"]] == [verdict.recommended.gamma, verdict.recommended.alpha]
    assert card["verdict"]["kind"] == verdict.kind and card["trained_on"] == "train"
    assert card["classes"] == ["ok", "fraud"] and card["threshold"] == 0.5  # the user's labels
    assert card["preprocessing"]["columns"] == COLUMNS
    assert card["preprocessing"]["target"] == "label"
    assert card["model"] == {"kind": "mlp", "hidden": [16], "dropout": 0.0, "channels": [16, 32]}


def test_predict_in_a_fresh_process_gives_the_study_test_scores(exported: Path) -> None:
    config = load_config(exported)
    folder, table = exported.parent, exported.parent / "table.csv"
    scores_csv = folder / "scores.csv"
    command = [
        sys.executable,
        "-m",
        "gammatune",
        "predict",
        "--model",
        str(config.run_dir / "model"),
    ]
    command += ["--data", str(table), "--out", str(scores_csv)]
    subprocess.run(command, check=True, capture_output=True)
    scored = pd.read_csv(scores_csv)
    frame = pd.read_csv(table)
    assert list(scored.columns) == ["score", "label"] and len(scored) == len(frame)
    # In this process: the exported model's own scores on the same rows.
    classifier = load_model(config.run_dir / "model")
    own = score_frame(classifier, frame, where="table.csv")
    np.testing.assert_allclose(scored["score"], own["score"], atol=1e-6)
    assert (scored["label"] == own["label"]).all()
    # The test rows (found by their standardized features) score as the study stored them for
    # the recommended setting's first confirm trial: the exported model is that trial's.
    splits = load_data(config)
    scaled = ((frame[COLUMNS].to_numpy() - classifier.mean_) / classifier.std_).astype(np.float32)
    where = {row.tobytes(): i for i, row in enumerate(scaled)}
    test_rows = [where[row.tobytes()] for row in splits.x_test.numpy()]
    stored = load_scores_file(config, _first_confirm_scores_file(config))
    assert stored is not None
    np.testing.assert_allclose(scored["score"].to_numpy()[test_rows], stored.test, atol=1e-6)


def _first_confirm_scores_file(config) -> str:
    frame, summary, _ = study_summary(config)
    mine = frame[(frame["stage"] == "confirm") & setting_mask(frame, summary.verdict.recommended)]
    first = mine.sort_values(["fold", "repeat"])
    assert json.loads((config.run_dir / "model" / "model.json").read_text())["seed"] == int(
        first["seed"].iloc[0]
    )
    return str(first["scores_file"].iloc[0])


@pytest.mark.parametrize(
    ("change", "fragment"),
    [("drop", "missing 'f3'"), ("add", "extra 'surprise'")],
)
def test_a_missing_or_extra_column_is_one_line_and_exit_3(
    exported: Path, tmp_path: Path, change: str, fragment: str
) -> None:
    frame = pd.read_csv(exported.parent / "table.csv").head(5)
    frame = frame.drop(columns="f3") if change == "drop" else frame.assign(surprise=1.0)
    frame.to_csv(tmp_path / "new.csv", index=False)
    model = load_config(exported).run_dir / "model"
    result = runner.invoke(
        app, ["predict", "--model", str(model), "--data", str(tmp_path / "new.csv"), "--out", "x"]
    )
    assert result.exit_code == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert fragment in result.stderr and "new.csv: the columns must be the model's 8 inputs" in (
        result.stderr
    )


def test_many_missing_columns_stay_one_short_line() -> None:
    from gammatune.errors import DataError
    from gammatune.features import Preprocessing, frame_features

    columns = tuple(f"x{i}" for i in range(64))
    preprocessing = Preprocessing.numeric(columns, (0.0,) * 64, (1.0,) * 64)
    with pytest.raises(DataError) as caught:
        frame_features(pd.DataFrame({"x0": [1.0], "x1": [2.0]}), preprocessing, where="new.csv")
    message = str(caught.value)
    assert "missing 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', 'x8', 'x9' and 54 more" in message
    assert "(x0, x1, x2, x3, x4, x5, x6, x7 and 56 more)" in message and len(message) < 200


def test_refit_trains_on_train_and_val_for_the_kept_epochs(exported: Path) -> None:
    result = runner.invoke(app, ["export", "-c", str(exported), "--refit"])
    assert result.exit_code == 0, result.output
    config = load_config(exported)
    card = json.loads((config.run_dir / "model" / "model.json").read_text())
    frame, summary, _ = study_summary(config)
    mine = frame[(frame["stage"] == "confirm") & setting_mask(frame, summary.verdict.recommended)]
    assert card["trained_on"] == "train+val"
    assert card["epochs"] == int(statistics.median(mine["best_epoch"]))  # trained, and kept, last
    runner.invoke(app, ["export", "-c", str(exported)])  # leave the fixture's model as it was


def test_export_saves_the_kept_confirm_model_and_trains_again_where_it_cannot(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` keeps the first confirm repeat's weights; `export` saves those (no training).
    Weights that do not score the validation rows as the study stored (another study's, a damaged
    file) are not used: the setting is trained again, to the same model."""
    import torch

    import gammatune.export

    config = load_config(exported)
    kept = sorted((config.run_dir / "weights").glob("*.pt"))
    assert kept  # one per confirm setting (first repeat)
    before = (config.run_dir / "model" / "weights.pt").read_bytes()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("export trained a model it had kept")

    with monkeypatch.context() as patch:
        patch.setattr(gammatune.export, "train_setting", no_training)
        result = runner.invoke(app, ["export", "-c", str(exported)])
    assert result.exit_code == 0, result.output
    assert (config.run_dir / "model" / "weights.pt").read_bytes() == before
    trained = []
    original = gammatune.export.train_setting
    monkeypatch.setattr(
        gammatune.export, "train_setting", lambda *a, **k: trained.append(1) or original(*a, **k)
    )
    originals = {path: path.read_bytes() for path in kept}
    for path in kept:  # every kept model off by a little: none matches the stored scores
        state = torch.load(path, weights_only=True)
        torch.save({k: v + 0.01 for k, v in state.items()}, path)
    result = runner.invoke(app, ["export", "-c", str(exported)])
    assert result.exit_code == 0, result.output
    assert trained == [1]
    kept[0].write_bytes(b"not a torch file")  # damaged: trained again too, not a traceback
    result = runner.invoke(app, ["export", "-c", str(exported)])
    assert result.exit_code == 0, result.output
    assert trained == [1, 1]
    for path, data in originals.items():  # leave the fixture as it was: the kept model again
        path.write_bytes(data)
    result = runner.invoke(app, ["export", "-c", str(exported)])
    assert result.exit_code == 0 and trained == [1, 1]
    assert (config.run_dir / "model" / "weights.pt").read_bytes() == before


def test_the_first_confirm_trial_of_a_setting_keeps_its_weights(tmp_path: Path) -> None:
    """Confirm's repeats start after the baseline's: with 3 baseline repeats, repeat 3."""
    from gammatune.record import Setting
    from gammatune.weights import keeps

    config = load_config(write_config(tmp_path, baseline={"repeats": 3}))
    assert keeps(config, Setting(2.0, 0.25, repeat=3, fold=1))
    assert not keeps(config, Setting(2.0, 0.25, repeat=4, fold=1))
    assert not keeps(config, Setting(2.0, 0.25, repeat=3, fold=2))
    assert not keeps(config, Setting(0.0, None, repeat=0, fold=0))  # a baseline trial


def test_export_before_confirm_is_one_clear_error(tiny_config: Path) -> None:
    assert runner.invoke(app, ["search", "-c", str(tiny_config)]).exit_code == 0
    result = runner.invoke(app, ["export", "-c", str(tiny_config)])
    assert result.exit_code == 4
    assert "export: the verdict (not-measurable) recommends no setting" in result.stderr


def test_a_fitted_estimator_saves_and_loads(tmp_path: Path) -> None:
    x, y = make_classification(n_samples=300, n_features=5, random_state=1)
    model = FocalClassifier(epochs=3, hidden=(8,), batch_size=64, min_epochs=1).fit(x, y)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, FocalClassifier) and loaded.get_params() == model.get_params()
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-7)
    assert (loaded.predict(x) == model.predict(x)).all()


def _in_a_process(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (which patches a write, then runs the CLI on ``argv``) in its own process,
    as a user's command would be, so that it can kill itself for real."""
    code = (
        f"import os, signal, sys\n{script}\nfrom gammatune.cli import app\napp({list(argv)!r})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


KILL_AFTER_WEIGHTS = """
import torch
_save = torch.save
def save(*args, **kwargs):  # the weights are written; kill -9 before model.json is
    _save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save
"""
INTERRUPT_AFTER_WEIGHTS = KILL_AFTER_WEIGHTS.replace(
    "os.kill(os.getpid(), signal.SIGKILL)", "raise KeyboardInterrupt"
)


@pytest.mark.parametrize(
    ("script", "exit_code"), [(KILL_AFTER_WEIGHTS, -9), (INTERRUPT_AFTER_WEIGHTS, 130)]
)
def test_export_stopped_between_its_writes_keeps_the_previous_model(
    exported: Path, script: str, exit_code: int
) -> None:
    """kill -9 or Ctrl-C after the new weights.pt and before model.json: the previous model
    folder is whole and still scores; a rerun replaces it whole."""
    model = load_config(exported).run_dir / "model"
    before = _folder_bytes(model)
    stopped = _in_a_process(script, "export", "-c", str(exported))
    assert stopped.returncode == exit_code, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert _folder_bytes(model) == before
    table = exported.parent / "table.csv"
    scores = exported.parent / "after-stop.csv"
    predicted = runner.invoke(app, ["predict", "--model", str(model), "--data", str(table),
                                    "--out", str(scores)])  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    result = runner.invoke(app, ["export", "-c", str(exported)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in model.parent.glob(".model.*")) == []  # nothing left beside it
    assert (model / "weights.pt").read_bytes() == before["weights.pt"]  # the same kept model


def test_a_model_folder_of_two_exports_is_refused(exported: Path, tmp_path: Path) -> None:
    """weights.pt of one export beside model.json of another: one line, exit 3, no scores."""
    mixed = tmp_path / "mixed"
    shutil.copytree(load_config(exported).run_dir / "model", mixed)
    x, y = make_classification(n_samples=200, n_features=8, random_state=2)
    other = FocalClassifier(epochs=2, hidden=(16,), batch_size=64, min_epochs=1).fit(x, y)
    save_model(other, tmp_path / "other")
    shutil.copy(tmp_path / "other" / "weights.pt", mixed / "weights.pt")  # same shapes
    out = tmp_path / "scores.csv"
    table = exported.parent / "table.csv"
    result = runner.invoke(app, ["predict", "--model", str(mixed), "--data", str(table),
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 3, result.output
    assert result.stderr.strip() == (
        f"gammatune: error: --model: {mixed / 'weights.pt'} does not belong to "
        f"{mixed / 'model.json'} (its sha256 differs from the one the card records: files of "
        "two exports mixed); export it again."
    )
    assert not out.exists()


def test_predict_killed_while_writing_leaves_no_scores_file(exported: Path) -> None:
    """kill -9 once the scores are written, before they are renamed into place: no file at
    --out (only a hidden .partial), and an earlier scores file stays whole."""
    model = load_config(exported).run_dir / "model"
    table, out = exported.parent / "table.csv", exported.parent / "killed" / "scores.csv"
    script = (
        "import pandas\n_to_csv = pandas.DataFrame.to_csv\n"
        "def to_csv(self, *a, **k):\n    _to_csv(self, *a, **k)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "pandas.DataFrame.to_csv = to_csv\n"
    )
    argv = ["predict", "--model", str(model), "--data", str(table), "--out", str(out)]
    killed = _in_a_process(script, *argv)
    assert killed.returncode == -9, killed.stderr
    assert not out.exists()
    assert [p.name.endswith(".partial") for p in out.parent.iterdir()] == [True]
    out.write_text("earlier scores\n")
    assert _in_a_process(script, *argv).returncode == -9
    assert out.read_text() == "earlier scores\n"
    assert runner.invoke(app, argv).exit_code == 0
    assert len(pd.read_csv(out)) == len(pd.read_csv(table))


@pytest.mark.parametrize("target", ["table.csv", "model/model.json", "model"])
def test_predict_refuses_to_write_over_its_inputs(exported: Path, target: str) -> None:
    run_dir = load_config(exported).run_dir
    table = exported.parent / "table.csv"
    out = (table if target == "table.csv" else run_dir / target).resolve()
    before = out.read_bytes() if out.is_file() else None
    result = runner.invoke(app, ["predict", "--model", str(run_dir / "model"), "--data",
                                 str(table), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"gammatune: error: --out {out}: is ")
    assert line.endswith("writing there would replace it: choose another path.")
    assert before is None or out.read_bytes() == before


def test_saving_over_a_folder_that_holds_other_files_is_refused(tmp_path: Path) -> None:
    """A model folder is replaced whole: a folder with anything else in it is not one."""
    x, y = make_classification(n_samples=200, n_features=5, random_state=1)
    model = FocalClassifier(epochs=2, hidden=(8,), batch_size=64, min_epochs=1).fit(x, y)
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match="replacing it would lose what else it holds"):
        save_model(model, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    save_model(model, tmp_path / "m")
    save_model(model, tmp_path / "m")  # its own folder: replaced whole
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "weights.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "notes.txt"]
