"""The visual report: it renders for every kind of study, and its numbers are the CSV's."""

from __future__ import annotations

import base64
import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.report._health import training_health
from gammatune.report._table import curve_flags, undertrained
from tests.conftest import TINY, write_config

runner = CliRunner()


class _Page(HTMLParser):
    """Collects the embedded images and the summary table's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[bytes] = []
        self.rows: list[dict[str, str]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            src = attributes["src"] or ""
            assert src.startswith("data:image/png;base64,")
            self.images.append(base64.b64decode(src.split(",", 1)[1]))
        if tag == "tr" and "data-stage" in attributes:
            self.rows.append({k.removeprefix("data-"): v for k, v in attributes.items()})
        if tag == "td" and self.rows and attributes.get("class"):
            self._cell = attributes["class"]

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.rows[-1][self._cell] = data
            self._cell = None


def _report(path: Path, *extra: str) -> _Page:
    result = runner.invoke(app, ["report", "-c", str(path), *extra])
    assert result.exit_code == 0, result.output
    page = _Page()
    page.feed((path.parent / "runs" / "tiny" / "report.html").read_text(encoding="utf-8"))
    return page


def _assert_real_pngs(images: list[bytes]) -> None:
    for data in images:
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
        pixels = imread(io.BytesIO(data))
        assert pixels.std() > 0.05  # drawn on, not a blank canvas


def test_binary_report_pictures_and_numbers_match_the_csv(
    tiny_config: Path, tmp_path: Path
) -> None:
    assert runner.invoke(app, ["run", "-c", str(tiny_config)]).exit_code == 0
    page = _report(tiny_config, "--plots", str(tmp_path / "png"))
    assert len(page.images) == 6  # all but the per-class bars, which are for multiclass
    _assert_real_pngs(page.images)
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == [
        "confusion.png",
        "forest.png",
        "heatmaps.png",
        "objective_vs_gamma.png",
        "pr_curves.png",
        "training.png",
    ]
    files = sorted((tmp_path / "png" / name).read_bytes() for name in pngs)
    assert files == sorted(page.images)  # each figure rendered once, for the page and its file
    with (tiny_config.parent / "runs" / "tiny" / "trials.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    rows = {(r["stage"], r["number"]): r for r in table}
    assert len(page.rows) >= 4 and any("mean" in shown for shown in page.rows)
    keys = ("objective", "val_precision", "val_recall", "val_pr_auc", "test_f1", "test_pr_auc",
            "test_ece", "test_brier")  # fmt: skip
    for shown in page.rows:
        if "mean" in shown:  # a confirm setting: the mean over its seeds
            gamma, alpha = shown["mean"].split("|")
            trials = [
                r for r in table
                if r["stage"] == "confirm" and f"{float(r['gamma']):g}" == gamma
                and (f"{float(r['alpha']):g}" if r["alpha"] else "off") == alpha
            ]  # fmt: skip
            assert len(trials) == 5
            for key in keys:
                mean = sum(float(r[key]) for r in trials) / len(trials)
                assert shown[key] == f"{mean:.3f}", key
            continue
        row = rows[(shown["stage"], shown["number"])]
        for key in keys:
            assert shown[key] == f"{float(row[key]):.3f}", key


def test_multiclass_report_has_per_class_bars(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        data={"source": "sklearn", "name": "wine"},
        model={"kind": "mlp", "hidden": [8]},
        train={**TINY["train"], "epochs": 2},
        search={"gamma": [1.0], "alpha": [0.75]},
        refine={"n_trials": 1},
    )
    assert runner.invoke(app, ["run", "-c", str(path)]).exit_code == 0
    page = _report(path)
    _assert_real_pngs(page.images)
    assert len(page.images) == 6  # a PR curve is for binary tasks; per-class bars instead


def test_report_of_a_baseline_only_study(tiny_config: Path) -> None:
    assert runner.invoke(app, ["baseline", "-c", str(tiny_config)]).exit_code == 0
    page = _report(tiny_config)
    assert 1 <= len(page.images) <= 4  # no search: no heatmap, no gamma curve
    _assert_real_pngs(page.images)


def test_report_with_failed_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gammatune.tuning._objective
    from gammatune.training._loop import FitResult

    path = write_config(tmp_path, train={**TINY["train"], "parallel": 1})

    def failing(members, *args, **kwargs) -> list[FitResult]:
        failed = FitResult(1, 0, "non_finite_loss", "training loss became nan at epoch 1", 0.1)
        return [failed for _ in members]

    monkeypatch.setattr(gammatune.tuning._objective, "fit_stacked", failing)
    assert runner.invoke(app, ["search", "-c", str(path)]).exit_code == 0
    page = _report(path)
    assert page.rows == []  # nothing completed: no comparison, and no crash
    html = (tmp_path / "runs" / "tiny" / "report.html").read_text(encoding="utf-8")
    assert "No trial has completed yet." in html


def _curves(train: list[float], val: list[float], monitor: list[float]) -> dict:
    return {"train_loss": train, "val_loss": val, "val_monitor": monitor}


RISING = _curves([1, 0.8, 0.6, 0.4, 0.2], [1, 0.7, 0.75, 0.8, 0.9], [0.1, 0.2, 0.25, 0.26, 0.27])
WOBBLY = _curves([1, 0.9, 0.8, 0.7, 0.6], [1, 0.9, 0.8, 0.7, 0.6], [0.2, 0.5, 0.1, 0.6, 0.2])
SMOOTH = _curves([1, 0.9, 0.8], [1, 0.9, 0.85], [0.2, 0.3, 0.35])


@pytest.mark.parametrize(
    ("curves", "best_epoch", "flags"),
    [
        (RISING, 5, "overconfident"),  # kept after the validation loss rose
        (RISING, 2, ""),  # early stopping kept the epoch before the rise: nothing to flag
        (WOBBLY, 5, "unstable"),
        (SMOOTH, 3, ""),
    ],
)
def test_curve_flags(curves: dict, best_epoch: int, flags: str) -> None:
    assert curve_flags(curves, best_epoch) == flags


@pytest.mark.parametrize(
    ("best_epoch", "epochs_run", "stop_reason", "flagged"),
    [
        (40, 40, "max_epochs", True),  # best on the last epoch: still rising
        (37, 40, "max_epochs", True),  # among the last 4 of 40
        (36, 40, "max_epochs", False),  # it peaked 4 epochs before the limit
        (40, 40, "early_stopping", False),  # not stopped by the limit
        (5, 5, "max_epochs", True),  # short runs: the last 2 epochs
        (3, 5, "max_epochs", False),
    ],
)
def test_undertrained(best_epoch: int, epochs_run: int, stop_reason: str, flagged: bool) -> None:
    assert undertrained(best_epoch, epochs_run, stop_reason) is flagged


def test_training_health_gives_advice_and_names_a_better_yardstick() -> None:
    import pandas as pd

    rows = [
        {"stage": "search", "state": "COMPLETE", "model": "configured", "objective": 0.60,
         "undertrained": True, "epochs_run": 30, "curve_flags": "overconfident"},
        {"stage": "refine", "state": "COMPLETE", "model": "configured", "objective": 0.62,
         "undertrained": False, "epochs_run": 12, "curve_flags": ""},
        {"stage": "baseline", "state": "COMPLETE", "model": "logistic", "objective": 0.70,
         "undertrained": False, "epochs_run": 1, "curve_flags": ""},
    ]  # fmt: skip
    found = training_health(pd.DataFrame(rows), "f1")
    assert len(found) == 3
    assert found[0].startswith("Undertrained: 1 of 3 trials (1 search) ran to the 30-epoch limit")
    assert "Raise train.epochs (for example to 60)" in found[0]
    assert found[1].startswith("Overconfident (not a fault): 1 of 3 trials")
    assert found[2].startswith(
        "A logistic regression yardstick (validation f1 0.700) beats every network trial on "
        "the same split (best 0.620)"
    )
    rows[2]["objective"] = 0.5
    healthy = [{**r, "undertrained": False, "curve_flags": ""} for r in rows]
    assert training_health(pd.DataFrame(healthy), "f1") == ()


def test_the_page_explains_the_recommendation_beside_the_forest_plot(
    tiny_config: Path,
) -> None:
    assert runner.invoke(app, ["run", "-c", str(tiny_config)]).exit_code == 0
    run = tiny_config.parent / "runs" / "tiny"
    html = (run / "report.html").read_text(encoding="utf-8")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    forest = html[html.index('<figure id="forest">') : html.index("</figure>", html.index(
        '<figure id="forest">'))]  # fmt: skip
    assert "Why this recommendation." in forest and "What each bar compares" in forest
    n_bars = forest.count("<tr") - 1
    assert n_bars == len(summary["verdict"]["comparisons"])
    assert "gamma alone: does gamma add anything beyond the class weight?" in forest
    assert ".verdict b{color:#222}" in html  # a neutral headline, not red
    assert "Training health" in html
    if summary["verdict"]["decided_by"] is not None:
        assert '<tr class="decided">' in forest
