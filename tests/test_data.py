"""Data sources, checks and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gammatune.config import Config
from gammatune.data import load_data
from gammatune.errors import ConfigError, DataError


def _config(data: dict, **extra) -> Config:
    return Config.model_validate({"name": "t", "data": data, **extra})


def _write_csv(tmp_path: Path, n: int = 300, positives: int = 30) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n) * 10 + 5})
    frame["label"] = ["fraud" if i < positives else "ok" for i in range(n)]
    path = tmp_path / "x.csv"
    frame.to_csv(path, index=False)
    return path


def test_csv_minority_is_positive_and_split_is_stratified(tmp_path: Path) -> None:
    path = _write_csv(tmp_path)
    splits = load_data(_config({"source": "csv", "path": str(path), "target": "label"}))
    assert splits.class_names == ("ok", "fraud")
    counts = splits.class_counts()
    assert counts == {"train": [162, 18], "val": [54, 6], "test": [54, 6]}
    assert splits.imbalance_ratio() == pytest.approx(9.0)
    # standardized with train statistics only
    assert splits.x_train.mean(0).abs().max() < 1e-5
    assert (splits.x_train.std(0, unbiased=False) - 1).abs().max() < 1e-4


def test_split_is_reproducible_and_seed_dependent(tmp_path: Path) -> None:
    data = {"source": "csv", "path": str(_write_csv(tmp_path)), "target": "label"}
    a, b = load_data(_config(data)), load_data(_config(data))
    c = load_data(_config(data, seed=1))
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "klass"}, "data.target: no column 'klass' in x.csv (columns: a, b, label)"),
        ({"features": ["a", "zz"]}, "data.features: no column 'zz' in x.csv"),
        ({"path": "missing.csv"}, "data.path: no such file"),
        (
            {"positive_label": "spam"},
            "data.positive_label: 'spam' is not a label (labels: fraud, ok)",
        ),
        (
            {"minority_fraction": 0.3},
            "data.minority_fraction: 0.3 needs 116 samples of the minority class, but the data "
            "has 30",
        ),
    ],
)
def test_csv_mistakes_name_field_and_value(tmp_path: Path, change: dict, message: str) -> None:
    data = {"source": "csv", "path": str(_write_csv(tmp_path)), "target": "label", **change}
    with pytest.raises(DataError) as info:
        load_data(_config(data))
    assert message in str(info.value)


def test_nan_in_an_array_source_is_named(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(60, 3))
    x[[3, 7], 1] = np.nan
    np.savez(tmp_path / "a.npz", X=x, y=np.r_[np.zeros(50), np.ones(10)])
    with pytest.raises(
        DataError, match=r"2 NaN or infinite feature values, in column\(s\) 1 \(2\)"
    ):
        load_data(_config({"source": "npz", "path": str(tmp_path / "a.npz")}))


def test_one_class_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "y.csv"
    pd.DataFrame({"a": [1.0] * 10, "city": ["x"] * 10, "label": [1] * 10}).to_csv(
        path, index=False
    )
    with pytest.raises(
        DataError, match=r"the labels hold one class only \('1'\); a classifier needs two"
    ):
        load_data(_config({"source": "csv", "path": str(path), "target": "label"}))


def test_too_few_of_a_class_to_split(tmp_path: Path) -> None:
    path = _write_csv(tmp_path, n=50, positives=2)
    with pytest.raises(DataError, match="class 'fraud' has 2 sample"):
        load_data(_config({"source": "csv", "path": str(path), "target": "label"}))


def test_sklearn_digits_multiclass_and_one_vs_rest() -> None:
    multi = load_data(_config({"source": "sklearn", "name": "digits"}))
    assert multi.n_classes == 10 and multi.image_shape == (1, 8, 8)
    binary = load_data(
        _config(
            {"source": "sklearn", "name": "digits", "positive_label": 9, "minority_fraction": 0.05}
        )
    )
    assert binary.class_names == ("not 9", "9")
    totals = np.sum(list(binary.class_counts().values()), axis=0)
    assert totals[1] / totals.sum() == pytest.approx(0.05, abs=0.002)


def test_npz_images_and_missing_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "a.npz"
    np.savez(path, X=rng.normal(size=(60, 1, 4, 4)), y=np.r_[np.zeros(50), np.ones(10)])
    splits = load_data(_config({"source": "npz", "path": str(path)}))
    assert splits.image_shape == (1, 4, 4) and splits.n_features == 16
    with pytest.raises(DataError, match=r"data.x_key: no array 'X2' in a.npz \(arrays: X, y\)"):
        load_data(_config({"source": "npz", "path": str(path), "x_key": "X2"}))


def test_python_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_loader.py").write_text(
        "import numpy as np\n"
        "def load():\n"
        "    rng = np.random.default_rng(0)\n"
        "    return rng.normal(size=(90, 3)), np.r_[np.zeros(80), np.ones(10)]\n"
        "def broken():\n"
        "    return 3\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    assert load_data(_config({"source": "python", "ref": "my_loader:load"})).n_features == 3
    with pytest.raises(DataError, match="must return \\(features, labels\\); got int"):
        load_data(_config({"source": "python", "ref": "my_loader:broken"}))
    with pytest.raises(ConfigError, match="data.ref: module 'my_loader' has no function 'nope'"):
        load_data(_config({"source": "python", "ref": "my_loader:nope"}))
    with pytest.raises(ConfigError, match="data.ref: cannot import module 'no_such_mod'"):
        load_data(_config({"source": "python", "ref": "no_such_mod:load"}))


def test_synthetic_multiclass() -> None:
    splits = load_data(
        _config(
            {"source": "synthetic", "n_samples": 2000, "n_classes": 4, "minority_fraction": 0.05}
        )
    )
    counts = np.sum(list(splits.class_counts().values()), axis=0)
    assert splits.n_classes == 4 and counts[3] < counts[:3].min()


def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")

    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(DataError, match="data.source: parquet needs pyarrow: pip install pyarrow"):
        load_data(_config({"source": "parquet", "path": str(path), "target": "y"}))


def test_a_file_that_is_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    path.write_text("not a zip", encoding="utf-8")
    with pytest.raises(DataError, match=r"data.path: a.npz is not a NumPy .npz file"):
        load_data(_config({"source": "npz", "path": str(path)}))
