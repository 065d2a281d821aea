"""The trial record: one typed value, stored as versioned JSON and read back unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn.metrics as sk

from gammatune.metrics import evaluate
from gammatune.record import RECORD_VERSION, Setting, TrialRecord, format_alpha
from gammatune.report._table import _split_fields

Y = np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 1])
S = np.array([0.1, 0.6, 0.2, 0.7, 0.4, 0.3, 0.9, 0.05, 0.55, 0.8])


def _record() -> TrialRecord:
    return TrialRecord(
        Setting(1.5, 0.25, repeat=2, fold=1),
        seed=2,
        device="cpu",
        value=0.5,
        epochs_run=3,
        best_epoch=2,
        curves={"train_loss": [0.5, 0.4, None]},
        val=evaluate(Y, S),
        test=evaluate(Y, S[::-1]),
        scores_file="scores/x.npz",
        stage="search",
    )


def test_a_record_survives_json_and_the_storage_round_trip() -> None:
    record = _record()
    data = json.loads(json.dumps(record.to_json()))  # JSON-safe, as Optuna's storage needs
    assert data["version"] == RECORD_VERSION
    back = TrialRecord.from_json(data, params={})
    assert back == record


def test_a_version_1_record_is_read_from_its_flat_keys() -> None:
    old = {"gamma": 2.0, "alpha": 0.75, "seed": 0, "epochs_run": 4, "best_epoch": 3,
           "val": dict(_record().to_json()["val"], ece=None) | {"brier": 0.1},
           "warm_start_from": 7, "model": "mlp"}  # fmt: skip
    old["val"].pop("ece")  # a field added since: read as NaN
    record = TrialRecord.from_json(old, params={"gamma": 2.0, "alpha": 0.75})
    assert record.setting == Setting(2.0, 0.75) and record.warm_start_from == 7
    assert record.val is not None and np.isnan(record.val.ece) and record.val.brier == 0.1


def test_a_newer_record_is_refused() -> None:
    with pytest.raises(ValueError, match="version 3"):
        TrialRecord.from_json({"version": 3}, params={})


def test_settings_key_params_and_twins() -> None:
    setting = Setting(0.8500000000000001, None, repeat=3)
    assert setting.key() == Setting(0.85, None, repeat=3).key()
    assert "alpha" not in setting.params()  # alpha off is a trial without an alpha parameter
    assert Setting.from_params(setting.params()) == setting
    assert setting.twin() == Setting(0.0, None, repeat=3)
    assert setting.label == "gamma=0.85 alpha=off repeat=3"
    assert format_alpha(float("nan")) == "off" and format_alpha(0.75) == "0.75"


def test_binary_rows_flatten_the_confusion_counts() -> None:
    fields = _split_fields(evaluate(Y, S))
    (tn, fp), (fn, tp) = sk.confusion_matrix(Y, S >= 0.5)
    assert (fields["tn"], fields["fp"], fields["fn"], fields["tp"]) == (tn, fp, fn, tp)
