"""Per class: the recommendation against the baselines, and which class each setting helped."""

from __future__ import annotations

import csv
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_wine
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.report import class_changes, compare_classes
from gammatune.report._perclass import per_class_html
from gammatune.report._verdict import Verdict, decide
from tests.conftest import TINY, write_config

runner = CliRunner()
NAMES = ["common", "mid", "rare"]
# Validation F1 per class of each confirm setting, one list per repeat (all on fold 1).
PLAIN = [[0.90, 0.70, 0.20], [0.92, 0.68, 0.22], [0.88, 0.72, 0.18], [0.90, 0.70, 0.20]]
TWIN = [[0.90, 0.70, 0.25], [0.92, 0.68, 0.27], [0.88, 0.72, 0.23], [0.90, 0.70, 0.25]]
FOCAL = [[0.85, 0.705, 0.38], [0.87, 0.685, 0.42], [0.83, 0.725, 0.43], [0.85, 0.705, 0.47]]


def _trial(
    stage: str, gamma: float, alpha: float | None, repeat: int, f1: list[float], **extra: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "stage": stage, "number": 0, "state": "COMPLETE", "gamma": gamma,
        "alpha": math.nan if alpha is None else alpha, "repeat": repeat,
        "fold": 0 if stage == "baseline" else 1, "model": "configured",
        "objective": sum(f1) / len(f1), "val_predicted_positive": 10, "best_epoch": 3,
        "warm_start_from": None,
    }  # fmt: skip
    for split in ("val", "test"):
        for metric in ("precision", "recall", "f1"):
            row[f"{split}_{metric}_per_class"] = list(f1)
    return {**row, **extra}


def _study() -> pd.DataFrame:
    """Baselines on the configured split, and a confirm stage where gamma 2 (alpha 0.25) helps
    the rare class on validation, costs the common one, and leaves the middle one be."""
    rows = [
        _trial("baseline", 0.0, None, 0, [0.5, 0.5, 0.5]),
        _trial("baseline", 0.0, None, 0, [1.0, 1.0, 1.0], model="logistic"),
        _trial("baseline", 0.0, None, 0, [0.9, 0.9, 0.9], model="logistic_balanced"),
    ]
    for repeat in range(4):
        rows.append(_trial("confirm", 0.0, None, repeat, PLAIN[repeat]))
        rows.append(_trial("confirm", 0.0, 0.25, repeat, TWIN[repeat]))
        rows.append(_trial("confirm", 0.0, 0.5, repeat, [0.1, 0.1, 0.1]))  # a bad weight
        # On test, gamma 2 also lifts the middle class: shown, but it does not count as helped.
        test = [FOCAL[repeat][0], FOCAL[repeat][1] + 0.1, FOCAL[repeat][2]]
        rows.append(_trial("confirm", 2.0, 0.25, repeat, FOCAL[repeat], test_f1_per_class=test))
    # Plain CE's fifth repeat has no gamma-2 partner (it failed): comparing it would be unpaired.
    rows.append(_trial("confirm", 0.0, None, 4, [0.0, 0.0, 0.0]))
    failed = {"state": "FAIL", "objective": math.nan, "val_f1_per_class": math.nan}
    rows.append(_trial("confirm", 2.0, 0.25, 4, [0.0, 0.0, 0.0], **failed))
    return pd.DataFrame(rows)


def _verdict(frame: pd.DataFrame) -> Verdict:
    confirm = frame[(frame["stage"] == "confirm") & (frame["state"] == "COMPLETE")]
    return decide(confirm, n_val_positives=50, objective="f1_macro")


def _mean(rows: list[list[float]], k: int) -> float:
    return sum(r[k] for r in rows) / len(rows)


def test_each_setting_names_the_classes_it_helped_and_hurt_against_plain_ce() -> None:
    frame = _study()
    changes = {c.setting: c for c in class_changes(frame, _verdict(frame), NAMES)}
    assert set(changes) == {"gamma=0 alpha=0.25", "gamma=0 alpha=0.5", "gamma=2 alpha=0.25"}
    focal = changes["gamma=2 alpha=0.25"]
    assert focal.recommended and focal.n == 4  # paired: plain CE's unpartnered repeat left out
    for k in range(3):
        assert focal.f1[k] == pytest.approx(_mean(FOCAL, k) - _mean(PLAIN[:4], k))
    assert focal.helped == ("rare",) and focal.hurt == ("common",)  # mid moved only 0.005
    assert focal.test_helped == ("mid", "rare")  # test is shown, never decides "helped"
    assert changes["gamma=0 alpha=0.25"].helped == ("rare",)
    assert changes["gamma=0 alpha=0.5"].hurt == ("common", "mid", "rare")
    assert not changes["gamma=0 alpha=0.5"].recommended


def test_the_recommendation_against_every_baseline_per_class() -> None:
    frame = _study()
    verdict = _verdict(frame)
    assert verdict.kind == "focal"
    found = {f.key: f for f in compare_classes(frame, verdict, split="val")}
    assert list(found) == [
        "plain_ce", "best_weighted_ce", "logistic", "logistic_balanced", "recommended",
    ]  # fmt: skip
    assert found["recommended"].setting == "gamma=2 alpha=0.25"
    assert found["recommended"].n == 4  # the failed trial is not a figure
    assert found["recommended"].f1 == pytest.approx([_mean(FOCAL, k) for k in range(3)])
    # Cross-entropy is confirm's (same seeds and re-splits), not the baseline's trial.
    assert found["plain_ce"].n == 5 and found["plain_ce"].f1[2] == pytest.approx(0.16)
    assert found["best_weighted_ce"].setting == "gamma=0 alpha=0.25"  # the better weight
    assert found["logistic"].f1 == (1.0, 1.0, 1.0) and found["logistic"].setting == "scikit-learn"


def test_before_confirm_the_baseline_is_shown_for_a_binary_task() -> None:
    rows = [
        _trial("baseline", 0.0, None, 0, [0.95, 0.30]),
        _trial("baseline", 0.0, 0.75, 0, [0.90, 0.40]),
        _trial("search", 2.0, 0.75, 0, [0.92, 0.45]),
    ]
    frame = pd.DataFrame(rows)
    verdict = Verdict("not-measurable", None, "", "the confirm stage has not run", ())
    found = {f.key: f for f in compare_classes(frame, verdict, split="test")}
    assert list(found) == ["plain_ce", "best_weighted_ce"]
    assert found["best_weighted_ce"].recall == (0.90, 0.40)
    assert class_changes(frame, verdict, ["ok", "fraud"]) == []  # nothing confirmed yet
    page = per_class_html(frame, verdict, ["ok", "<fraud>"])
    assert 'data-class="&lt;fraud&gt;"' in page and "class-changes" not in page


class _Tables(HTMLParser):
    """Cells of the per-class tables: by class (figures) and by setting (changes)."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str]] = {}
        self.changes: dict[str, dict[str, str]] = {}
        self._row: dict[str, str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-class") is not None:
            self._row = self.figures.setdefault(str(found["data-class"]), {})
        elif tag == "tr" and found.get("data-setting") is not None:
            self._row = self.changes.setdefault(str(found["data-setting"]), {})
            self._row["row-class"] = str(found.get("class"))
        elif tag == "tr":
            self._row = None
        self._cell = found.get("class") if tag == "td" and self._row is not None else None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell:
            self._row[self._cell] = data
            self._cell = None


def test_a_three_class_report_shows_per_class_figures_that_match_the_csv(tmp_path: Path) -> None:
    wine = load_wine(as_frame=True).frame
    cultivars = ["barolo", "grignolino", "barbera"]
    wine["cultivar"] = [cultivars[t] for t in wine.pop("target")]
    wine.to_csv(tmp_path / "wine.csv", index=False)
    path = write_config(
        tmp_path,
        data={"source": "csv", "path": "wine.csv", "target": "cultivar"},
        model={"kind": "mlp", "hidden": [8]},
        train={**TINY["train"], "epochs": 2},
        search={"gamma": [1.0], "alpha": [0.75]},
        refine={"n_trials": 1},
    )
    assert runner.invoke(app, ["run", "-c", str(path)]).exit_code == 0
    run = tmp_path / "runs" / "tiny"
    page = _Tables()
    page.feed((run / "report.html").read_text(encoding="utf-8"))
    with (run / "trials.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    names = sorted(cultivars)  # labels are encoded in sorted order
    assert list(page.figures) == names
    chosen = [r for r in table if r["recommended"] == "True"]
    recommended = [json.loads(r["val_f1_per_class"]) for r in chosen]
    plain = [
        json.loads(r["val_f1_per_class"]) for r in table
        if r["stage"] == "confirm" and r["model"] == "configured" and float(r["gamma"]) == 0
        and not r["alpha"]
    ]  # fmt: skip
    assert len(recommended) == len(plain) == 5
    for k, name in enumerate(names):
        assert page.figures[name]["recommended-f1"] == f"{_mean(recommended, k):.3f}"
        assert page.figures[name]["plain_ce-f1"] == f"{_mean(plain, k):.3f}"
        assert {"logistic-recall", "logistic_balanced-recall"} <= set(page.figures[name])
    assert len(page.changes) == 4  # the 2 finalists and their 2 cross-entropy twins
    for row in page.changes.values():
        listed = {*row["helped"].split(", "), *row["hurt"].split(", ")} - {"none"}
        assert listed <= set(names)
    # The recommended setting's row is marked, unless it is plain CE, the reference itself.
    is_plain = float(chosen[0]["gamma"]) == 0 and not chosen[0]["alpha"]
    marked = sum(row["row-class"] == "recommended" for row in page.changes.values())
    assert marked == (0 if is_plain else 1)
