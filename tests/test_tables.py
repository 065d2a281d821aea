"""Tables as people have them: column roles and kinds, encodings fitted on training rows,
bad input as one line, and ids and the user's labels kept through export and predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gammatune import load_config, load_data, load_model
from gammatune.cli import app
from gammatune.columns import CategoricalStep, NumericStep, fit_categorical
from gammatune.config import Config, TrainConfig
from gammatune.errors import DataError
from gammatune.tables import fit_steps
from tests.conftest import write_config

runner = CliRunner()


def _mixed(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """An id, a number with missing values, a category, a boolean, a note, a string label."""
    rng = np.random.default_rng(seed)
    fraud = np.arange(n) % 10 == 0
    amount = rng.normal(size=n) + 2.5 * fraud
    amount[rng.choice(n, 15, replace=False)] = np.nan
    city = np.where(fraud & (rng.random(n) < 0.7), "Lyon", rng.choice(["Paris", "Nice"], n))
    return pd.DataFrame(
        {
            "row_id": [f"r{i:04d}" for i in range(n)],
            "amount": amount,
            "city": city,
            "card_present": rng.random(n) < 0.5,
            "note": rng.choice(["a", "b"], n),
            "label": np.where(fraud, "fraud", "ok"),
        }
    )


def _config(
    tmp_path: Path, frame: pd.DataFrame, *, changes: dict | None = None, **data: object
) -> Path:
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    source = {"source": "csv", "path": "mixed.csv", "target": "label", "positive_label": "fraud"}
    source = {**source, "id": "row_id", "exclude": ["note"], **data}
    return write_config(tmp_path, data=source, **(changes or {}))


def test_columns_get_their_kind_and_the_id_and_excluded_ones_are_not_inputs(
    tmp_path: Path,
) -> None:
    splits = load_data(load_config(_config(tmp_path, _mixed())))
    preprocessing = splits.preprocessing
    assert preprocessing is not None
    assert preprocessing.features == (
        "amount", "amount=missing", "city=Lyon", "city=Nice", "city=Paris", "city=other",
        "card_present=False", "card_present=True", "card_present=other",
    )  # fmt: skip
    assert splits.n_features == 9 and splits.class_names == ("ok", "fraud")
    assert (preprocessing.id, preprocessing.ignored) == ("row_id", ("note",))
    assert preprocessing.target == "label"


def test_encodings_are_fitted_on_the_training_rows_only() -> None:
    train = pd.DataFrame(
        {"amount": [1.0, np.nan, 3.0, 4.0, 100.0], "city": ["a", "a", "b", "b", "c"]}
    )
    new = pd.DataFrame({"amount": [np.nan, 2.0], "city": ["zz", np.nan]})
    from gammatune.tables import ColumnPlan

    plan = ColumnPlan(("amount",), ("city",), None, "label", None, (), 2, 0)
    numeric, city = fit_steps(train, plan)
    assert isinstance(numeric, NumericStep) and isinstance(city, CategoricalStep)
    assert numeric.medians == (3.5,) and numeric.flagged == ("amount",)
    # a missing number: the training median and the indicator; an unseen category: "other"
    np.testing.assert_array_equal(numeric.transform(new, where="t"), [[3.5, 1.0], [2.0, 0.0]])
    assert city.categories == ("a", "b")  # the 2 most frequent (max_categories 2)
    np.testing.assert_array_equal(city.transform(new, where="t"), [[0, 0, 1], [0, 0, 1]])
    assert city.unseen(new) == 2


def test_a_model_without_fitted_medians_refuses_missing_values() -> None:
    from gammatune.features import Preprocessing, frame_features

    preprocessing = Preprocessing.numeric(("a", "b"), (0.0, 0.0), (1.0, 1.0))  # an array source
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, 1.0]})
    with pytest.raises(DataError, match="new.csv: column 'b' has missing values; this model"):
        frame_features(frame, preprocessing, where="new.csv")


def test_the_cap_keeps_the_most_frequent_values_and_numbers_read_alike() -> None:
    values = pd.Series(["x"] * 9 + ["y"] * 5 + ["z"] * 3 + ["w"], name="c")
    assert fit_categorical(values, max_categories=2).categories == ("x", "y")
    step = fit_categorical(pd.Series([1, 2, 2], name="n"), max_categories=5)
    # 2 and 2.0 (a column read with missing values) are the same category
    codes = step.transform(pd.DataFrame({"n": [2.0, np.nan, 1.0]}), where="t")
    np.testing.assert_array_equal(codes.argmax(axis=1), [1, 2, 0])


def test_auto_batch_size_gives_small_tables_enough_steps() -> None:
    train = TrainConfig()
    assert train.batch_size == "auto"
    assert [train.batch_rows(n) for n in (100, 226, 1800, 8192, 20000)] == [32, 32, 113, 512, 512]
    assert TrainConfig(batch_size=64).batch_rows(226) == 64


def _bad(tmp_path: Path, case: str) -> Path:
    frame = _mixed()
    data: dict[str, object] = {}
    if case == "distinct":
        frame = pd.concat([_mixed(n=10_500, seed=1)], ignore_index=True)
        frame["merchant"] = [f"m{i % 10_000}" for i in range(len(frame))]
    elif case == "all-missing":
        frame["empty"] = np.nan
    elif case == "exclude":
        data = {"exclude": ["nope"]}
    elif case == "folder":
        data = {"path": "."}
    elif case == "infinite":
        frame.loc[::10, "amount"] = np.inf  # some rows of every split
    elif case == "stray":
        frame["amount"] = frame["amount"].astype(object)
        frame.loc[7, "amount"] = "?"
    elif case == "id-in-features":
        data = {"features": ["amount", "row_id"]}
    elif case == "categorical-id":
        data = {"categorical": ["row_id"]}
    elif case == "target-in-features":
        data = {"features": ["amount", "label"], "id": None, "exclude": []}
    path = _config(tmp_path, frame, **data)
    if case == "twice":
        text = (tmp_path / "mixed.csv").read_text().splitlines()
        rows = [f"{line},{line.rsplit(',', 1)[1]}" for line in text]
        (tmp_path / "mixed.csv").write_text("\n".join(rows) + "\n")
    elif case == "no-rows":
        header = (tmp_path / "mixed.csv").read_text().splitlines()[0]
        (tmp_path / "mixed.csv").write_text(header + "\n")
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "distinct",
            "data: categorical column 'merchant' has 10000 distinct values in 10500 rows (the "
            "cap: data.max_distinct = 1000",
        ),
        ("all-missing", "data: column 'empty' holds no value (300 of 300 missing)"),
        ("exclude", "data.exclude: no column 'nope' in mixed.csv (columns: row_id, amount,"),
        ("folder", "data.path: is a folder, not a file: "),
        ("infinite", "data: column 'amount' holds an infinite value; fix it, or leave the cell"),
        ("stray", "data: column 'amount' holds numbers but for 1 value(s) such as '?'; leave"),
        ("id-in-features", "data.id: 'row_id' is also listed in data.features"),
        ("target-in-features", "data.features: lists the target column 'label'"),
        ("categorical-id", "data.categorical: 'row_id' is the target, the id, the text or"),
        ("twice", "data.path: the header of mixed.csv names 'label' twice (columns 6 and 7)"),
        ("no-rows", "data.path: mixed.csv has no rows"),
    ],
)
def test_bad_tables_are_one_line_exit_3_and_nothing_is_written(
    tmp_path: Path, case: str, message: str
) -> None:
    path = _bad(tmp_path, case)
    for command in ("check", "search"):
        result = runner.invoke(app, [command, "-c", str(path)])
        assert result.exit_code == 3, result.output
        assert result.stderr.strip().startswith(f"gammatune: error: {message}")
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no run folder, no study.db


def test_check_describes_the_data(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "-c", str(_config(tmp_path, _mixed()))])
    assert result.exit_code == 0, result.output
    assert "# fraud      30" in result.stdout and "# ok        270" in result.stdout
    assert "#   categorical: city: 3 values (Lyon, Nice, Paris) + other" in result.stdout
    assert "#   missing values filled with the training median" in result.stdout
    assert "amount (15)" in result.stdout and "#   excluded: note" in result.stdout
    assert "#   id: row_id (not an input" in result.stdout
    assert "# batch size: 128 (set)" in result.stdout  # the tiny experiment sets it
    assert "valid; data loaded" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_python_loader_dataframe_keeps_its_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _mixed().drop(columns="label")
    labels = _mixed()["label"].to_numpy()
    frame.to_pickle(tmp_path / "frame.pkl")
    (tmp_path / "frame_loader.py").write_text(
        "import pandas as pd\n"
        f"LABELS = {labels.tolist()!r}\n"
        "def load():\n"
        f"    return pd.read_pickle({str(tmp_path / 'frame.pkl')!r}), LABELS\n"
        "def array():\n"
        "    return pd.read_pickle("
        f"{str(tmp_path / 'frame.pkl')!r})[['amount']].to_numpy(), LABELS\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    source = {"source": "python", "ref": "frame_loader:load", "id": "row_id", "exclude": ["note"]}
    splits = load_data(Config.model_validate({"name": "p", "data": source}))
    assert splits.preprocessing is not None and splits.preprocessing.columns == (
        "amount", "city", "card_present",
    )  # fmt: skip
    array = {"source": "python", "ref": "frame_loader:array", "id": "row_id"}
    with pytest.raises(DataError, match="data.id: names columns, but frame_loader:array"):
        load_data(Config.model_validate({"name": "p", "data": array}))


def test_a_binary_positive_label_keeps_the_other_label() -> None:
    from gammatune.labels import encode_labels

    labels = np.array(["ok", "fraud", "ok"])
    assert encode_labels(labels, "fraud")[1] == ("ok", "fraud")
    assert encode_labels(np.array(["a", "b", "c"]), "c")[1] == ("not c", "c")


def test_run_then_predict_on_the_raw_csv_keeps_ids_and_labels(tmp_path: Path) -> None:
    path = _config(tmp_path, _mixed(), changes={"confirm": {"repeats": 2, "top_k": 1}})
    result = runner.invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    model_dir = load_config(path).run_dir / "model"
    new = _mixed(n=40, seed=5)
    new.loc[0, "city"] = "Grenoble"  # never seen in training: its "other" column
    new.loc[1, "amount"] = np.nan
    new.drop(columns="label").to_csv(tmp_path / "new.csv", index=False)
    args = ["--model", str(model_dir), "--data", str(tmp_path / "new.csv")]
    result = runner.invoke(app, ["predict", *args, "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    assert "column 'city': 1 row(s) hold a value never seen in training" in result.stderr
    scores = pd.read_csv(tmp_path / "s.csv")
    assert list(scores.columns) == ["row_id", "score", "label"]
    assert scores["row_id"].tolist() == new["row_id"].tolist()
    assert set(scores["label"]) <= {"ok", "fraud"} and scores["score"].between(0, 1).all()
    # the Python API takes the columns by name: reordered, the scores stay
    model = load_model(model_dir)
    raw = new.drop(columns="label")
    expected = model.predict_proba(raw)
    np.testing.assert_allclose(model.predict_proba(raw[raw.columns[::-1]]), expected)
    np.testing.assert_allclose(expected[:, 1], scores["score"], rtol=1e-6)
    with pytest.raises(DataError, match="missing 'city'"):
        model.predict_proba(raw.drop(columns="city"))


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_example_tables_load_from_plain_yaml(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_tables.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    found = {}
    for name in ("cancer", "transactions", "severity"):
        shutil.copy(EXAMPLES / f"{name}.yaml", tmp_path)
        splits = load_data(load_config(tmp_path / f"{name}.yaml"))
        assert splits.preprocessing is not None
        found[name] = (splits.class_names, splits.n_features, splits.preprocessing.id)
    assert found == {
        "cancer": (("benign", "malignant"), 30, "patient_id"),
        "transactions": (("ok", "fraud"), 33, "tx_id"),
        "severity": (("critical", "high", "low", "medium"), 13, "incident"),
    }
    committed = pd.read_csv(EXAMPLES / "transactions.csv")  # the script rebuilds the files
    pd.testing.assert_frame_equal(committed, pd.read_csv(tmp_path / "transactions.csv"))
    assert int(committed.isna().sum().sum()) == 171
