"""The declared search space beyond gamma x alpha: learning rates, a rare-class gamma, adaptive
gamma schedules and per-class weight schemes; what each stores, trains, refines and confirms.

Trainings are tiny (a few hundred rows, 2 epochs); planning checks use a stand-in objective.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import ConfidenceSchedule, Config, load_config
from gammatune.data import load_data
from gammatune.loss import GammaSchedule, class_balanced_weights
from gammatune.record import EXTRA_FIELDS, Setting, TrialRecord
from gammatune.storage import load_record, load_study, open_storage
from gammatune.tuning import loss_terms, plan_stage, run_stages
from gammatune.tuning._stages import confirm_points, grid_points
from tests.conftest import TINY, write_config

runner = CliRunner()

SMALL_DATA = {"source": "synthetic", "n_samples": 400, "n_features": 6, "minority_fraction": 0.15}
FAST_TRAIN = {**TINY["train"], "epochs": 2, "min_epochs": 1}


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _write(folder: Path, **changes: Any) -> Path:
    """The tiny experiment on smaller data and 2 epochs, with ``changes`` on top."""
    return write_config(folder, **{"data": SMALL_DATA, "train": FAST_TRAIN, **changes})


def _config(tmp_path: Path, **changes: Any) -> Config:
    return Config.model_validate({**TINY, "output_dir": str(tmp_path), **changes})


def _trials(path: Path, stage: str = "search") -> list[optuna.trial.FrozenTrial]:
    config = load_config(path)
    study = load_study(config, stage, open_storage(config))  # type: ignore[arg-type]
    assert study is not None, f"no {stage} study"
    return study.get_trials(deepcopy=False)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """``gammatune report``'s trials.csv of the experiment at ``path``."""
    result = _invoke("report", "-c", str(path))
    assert result.exit_code == 0, result.output
    with (path.parent / "runs" / "tiny" / "trials.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _csv_setting(row: dict[str, str]) -> Setting:
    """The setting a CSV row names, from its gamma, alpha and extra columns alone."""
    columns = ("gamma", "alpha", *EXTRA_FIELDS)
    return Setting.from_params({c: row[c] for c in columns if row[c] != ""})


def _planted(values: dict[tuple[Any, ...], float]):
    """A stand-in objective (no training): the planted value of ``Setting.key()`` of the arm,
    else 0.1."""

    def objective(settings: list[Setting], *_: Any) -> list[tuple[TrialRecord, None]]:
        return [
            (TrialRecord(s, seed=s.repeat, value=values.get(s.arm().key(), 0.1)), None)
            for s in settings
        ]

    return objective


# --- the config keys ------------------------------------------------------------------------


def test_every_new_key_reads_from_yaml_in_its_short_forms(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        search={
            "gamma": [1],
            "alpha": [0.5, None, "inverse", "effective", 1],
            "beta": 0.99,
            "lr": [0.001, 0.003],
            "gamma_rare": [2],
            "gamma_schedule": {"kind": "confidence"},  # a single item, not a list
        },
        refine={"alpha": "fixed", "lr_factor": 2.0},
    )
    config = load_config(path)
    assert config.search.alpha == [0.5, None, "inverse", "effective", 1.0]
    assert config.search.gamma_schedule == [ConfidenceSchedule(kind="confidence")]
    assert config.search.gamma_schedule[0].k == [0.5, 1.0, 2.0]
    assert config.search.gamma_schedule[0].max_gamma == 5.0
    assert (config.refine.alpha, config.refine.lr_factor) == ("fixed", 2.0)
    result = _invoke("check", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert "gamma_schedule:" in result.stdout and "lr_factor: 2.0" in result.stdout
    one = {"gamma": [1.0], "gamma_schedule": "flsd53"}
    alone = Config.model_validate({**TINY, "search": one})
    assert [s.kind for s in alone.search.gamma_schedule] == ["flsd53"]
    default = Config.model_validate(TINY)
    assert default.search.lr is None and default.search.gamma_rare is None
    assert default.search.gamma_schedule == [] and default.refine.alpha == "tune"


@pytest.mark.parametrize(
    ("section", "value", "where", "got"),
    [
        ("search", {"lr": [-1]}, "search.lr[0]", "(got -1)"),
        ("search", {"lr": [0.001, 0]}, "search.lr[1]", "(got 0)"),
        ("search", {"alpha": ["maybe"]}, "search.alpha[0]", "(got 'maybe')"),
        ("search", {"alpha": [1.5]}, "search.alpha[0]", "(got 1.5)"),
        ("search", {"gamma_rare": [-1]}, "search.gamma_rare[0]", "(got -1)"),
        ("search", {"rare_classes": []}, "search.rare_classes", "(got [])"),
        ("search", {"beta": 1.0}, "search.beta", "(got 1.0)"),
        ("refine", {"alpha": "sometimes"}, "refine.alpha", "(got 'sometimes')"),
        ("refine", {"lr_factor": 1.0}, "refine.lr_factor", "(got 1.0)"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_field(
    tmp_path: Path, section: str, value: dict[str, Any], where: str, got: str
) -> None:
    base = {"search": {"gamma": [1.0], "alpha": [0.5]}, "refine": {"n_trials": 2}}
    path = _write(tmp_path, **{section: {**base[section], **value}})
    result = _invoke("check", "-c", str(path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"gammatune: error: {path}: {where}: ")
    assert result.stderr.rstrip().endswith(got) and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("schedule", "named"),
    [(["bogus"], "'bogus'"), ([{"kind": "confidence", "k": [0]}], "k[0]"), ("flsd5", "'flsd5'")],
)
def test_a_bad_schedule_is_refused_naming_the_field(
    tmp_path: Path, schedule: Any, named: str
) -> None:
    path = _write(tmp_path, search={"gamma": [1.0], "alpha": [0.5], "gamma_schedule": schedule})
    result = _invoke("check", "-c", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines and all(f"{path}: search.gamma_schedule[0]" in line for line in lines)
    assert named in result.stderr


def test_an_unknown_rare_class_is_one_line_when_the_data_is_loaded(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        data={"source": "sklearn", "name": "wine"},
        search={"gamma": [1.0], "alpha": [None], "gamma_rare": [2.0], "rare_classes": ["nope"]},
    )
    assert _invoke("check", "-c", str(path)).exit_code == 0  # the classes are not known yet
    result = _invoke("search", "-c", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and result.stderr.endswith(errors[0] + "\n"), result.stderr
    assert errors[0].startswith("gammatune: error: search.rare_classes: 'nope'")
    assert "0, 1, 2" in errors[0]  # the classes it could have named


# --- search: what is stored and reported ----------------------------------------------


def test_search_stores_each_declared_dimension_and_the_csv_shows_it(tmp_path: Path) -> None:
    search = {
        "gamma": [1.0, 2.0],
        "gamma_rare": [2.0],  # gamma 2 with gamma_rare 2 is one gamma: gamma_rare off
        "alpha": [0.5, "inverse", "effective", 0.5],  # the repeated 0.5 is one point
        "beta": 0.99,
        "lr": [0.001, 0.003],
    }
    path = _write(tmp_path, search=search)
    result = _invoke("search", "-c", str(path))
    assert result.exit_code == 0, result.output
    trials = _trials(path)
    # gamma (2) x gamma_rare (1) x alpha (3 distinct) x lr (2)
    assert len(trials) == 2 * 1 * 3 * 2 == len(grid_points(load_config(path)))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    focus = [{"gamma": 1.0, "gamma_rare": 2.0}, {"gamma": 2.0}]
    weights = [{"alpha": 0.5}, {"weights": "inverse"}, {"weights": "effective", "beta": 0.99}]
    expected = {
        tuple(sorted({**f, **w, "lr": lr}.items()))
        for f in focus
        for w in weights
        for lr in (0.001, 0.003)
    }
    pairing = ("repeat", "fold", "model")
    stored = {
        tuple(sorted((k, v) for k, v in t.params.items() if k not in pairing)) for t in trials
    }
    assert stored == expected
    for trial in trials:  # the record trained what the parameters say
        record = load_record(trial)
        assert record is not None and record.setting == Setting.from_params(trial.params)
    assert {Setting.from_params(t.params).name for t in trials} >= {
        "gamma=1 gamma_rare=2 alpha=0.5 lr=0.001",
        "gamma=2 weights=inverse lr=0.003",
        "gamma=1 gamma_rare=2 weights=effective(beta=0.99) lr=0.003",
    }
    rows = _csv_rows(path)
    assert set(EXTRA_FIELDS) <= set(rows[0]) and len(rows) == len(trials)
    by_number = {t.number: Setting.from_params(t.params) for t in trials}
    assert {int(r["number"]): _csv_setting(r) for r in rows} == by_number
    effective = [r for r in rows if r["weights"] == "effective"]
    assert len(effective) == 4 and {r["beta"] for r in effective} == {"0.99"}
    assert {r["alpha"] for r in effective} == {""}  # the scheme replaces alpha
    assert {r["schedule"] for r in rows} == {"fixed"} and {r["k"] for r in rows} == {""}


# --- the loss each setting trains with ---------------------------------------------------


def test_loss_terms_binary() -> None:
    config = Config.model_validate(
        {**TINY, "data": SMALL_DATA, "search": {"gamma": [1.0], "gamma_rare": [3.0]}}
    )
    splits = load_data(config)
    counts = torch.bincount(splits.y_train, minlength=2).tolist()
    assert loss_terms(config, Setting(1.0, 0.25), splits) == (1.0, 0.25)
    # binary: the positive class (label 1) gets gamma_rare
    assert loss_terms(config, Setting(1.0, 0.25, gamma_rare=3.0), splits) == ((1.0, 3.0), 0.25)
    flsd, alpha = loss_terms(config, Setting(5.0, 0.5, schedule="flsd53"), splits)
    assert isinstance(flsd, GammaSchedule) and flsd.kind == "flsd53" and alpha == 0.5
    confidence, _ = loss_terms(config, Setting(4.0, schedule="confidence", k=2.0), splits)
    assert confidence == GammaSchedule("confidence", k=2.0, max_gamma=4.0)
    _, inverse = loss_terms(config, Setting(1.0, weights="inverse"), splits)
    assert inverse == pytest.approx(tuple(class_balanced_weights(counts, "inverse")))
    assert inverse[1] > inverse[0]  # the minority weighs more
    _, effective = loss_terms(config, Setting(1.0, weights="effective", beta=0.9), splits)
    assert effective == pytest.approx(tuple(class_balanced_weights(counts, "effective", 0.9)))
    assert effective != pytest.approx(inverse)


def test_loss_terms_multiclass_rare_classes() -> None:
    data = {"source": "sklearn", "name": "wine"}
    named = Config.model_validate({**TINY, "data": data, "search": {"rare_classes": [0, "2"]}})
    rarest = Config.model_validate({**TINY, "data": data})
    splits = load_data(rarest)
    counts = torch.bincount(splits.y_train, minlength=3).tolist()
    setting = Setting(1.0, weights="inverse", gamma_rare=4.0)
    gamma, alpha = loss_terms(named, setting, splits)
    assert gamma == (4.0, 1.0, 4.0)
    assert alpha == pytest.approx(tuple(class_balanced_weights(counts, "inverse")))
    gamma, _ = loss_terms(rarest, setting, splits)  # default: the rarest training class
    rare = counts.index(min(counts))
    assert gamma == tuple(4.0 if c == rare else 1.0 for c in range(3))


@pytest.mark.parametrize(
    "focal",
    [
        Setting(2.0, weights="effective", beta=0.99, lr=0.003, gamma_rare=3.0, repeat=2, fold=1),
        Setting(5.0, alpha=0.25, lr=0.01, schedule="confidence", k=1.5),
        Setting(5.0, schedule="flsd53", lr=0.01),
    ],
)
def test_the_ce_twin_keeps_the_weight_and_lr_and_drops_the_focus(focal: Setting) -> None:
    twin = focal.twin()
    assert focal.is_focal and not twin.is_focal
    assert (twin.gamma, twin.gamma_rare, twin.schedule, twin.k) == (0.0, None, "fixed", None)
    kept = ("alpha", "weights", "beta", "lr", "repeat", "fold", "model")
    assert all(getattr(twin, f) == getattr(focal, f) for f in kept)
    assert twin.is_weighted == focal.is_weighted
    assert set(twin.params()) <= set(focal.params())
    assert not {"gamma_rare", "schedule", "k"} & set(twin.params())
    config = Config.model_validate({**TINY, "data": SMALL_DATA})
    gamma, alpha = loss_terms(config, twin, load_data(config))
    assert gamma == 0.0 and (alpha == focal.alpha or focal.weights is not None)


# --- refine around the best grid point ---------------------------------------------------


def test_refine_alpha_fixed_keeps_the_best_alpha_and_tunes_gamma(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        search={"gamma": [1.0, 2.0], "alpha": [0.25, 0.75]},
        refine={"n_trials": 3, "alpha": "fixed", "gamma_window": 0.5},
    )
    best = Setting(2.0, 0.75)
    storage = open_storage(config)
    run_stages(config, ["search"], _planted({best.key(): 0.9}), storage=storage, parallel=8)
    plan = plan_stage(config, "refine", storage)
    dists = plan.distributions
    assert set(dists) == {"gamma", "alpha"}
    assert dists["alpha"] == FloatDistribution(0.75, 0.75)  # one value: the best's
    gamma = dists["gamma"]
    assert isinstance(gamma, FloatDistribution) and gamma.step is not None
    assert gamma.low < 2.0 < gamma.high and gamma.high - gamma.low >= 0.5  # a window
    warm = [Setting.from_params(t.params) for t in plan.warm_start]
    assert warm == [best]  # the one search trial inside: alpha 0.25 is not
    studies = run_stages(config, ["refine"], _planted({}), storage=storage, parallel=3)
    trials = studies["refine"].get_trials()
    refined = [t for t in trials if load_record(t).warm_start_from is None]  # type: ignore[union-attr]
    assert len(refined) == 3 and all(t.state == TrialState.COMPLETE for t in refined)
    for trial in refined:
        assert trial.params["alpha"] == 0.75
        assert gamma.low <= trial.params["gamma"] <= gamma.high


def test_refine_ranges_lr_around_the_best_by_lr_factor(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        search={"gamma": [1.0, 2.0], "alpha": [0.25, 0.75], "lr": [0.001, 0.01]},
        refine={"alpha": "fixed", "lr_factor": 4.0},
    )
    best = Setting(2.0, 0.75, lr=0.01)
    storage = open_storage(config)
    run_stages(config, ["search"], _planted({best.key(): 0.9}), storage=storage, parallel=8)
    plan = plan_stage(config, "refine", storage)
    dists = plan.distributions
    assert set(dists) == {"gamma", "alpha", "lr"}
    assert dists["alpha"] == FloatDistribution(0.75, 0.75)
    lr = dists["lr"]
    assert isinstance(lr, FloatDistribution) and lr.log
    assert (lr.low, lr.high) == pytest.approx((0.01 / 4, 0.01 * 4))
    assert [Setting.from_params(t.params) for t in plan.warm_start] == [best]  # not lr 0.001


def test_refine_alpha_fixed_with_the_best_unweighted_leaves_alpha_off(tmp_path: Path) -> None:
    config = _config(
        tmp_path, search={"gamma": [1.0, 2.0], "alpha": [None, 0.5]}, refine={"alpha": "fixed"}
    )
    storage = open_storage(config)
    objective = _planted({Setting(1.0, None).key(): 0.9})
    run_stages(config, ["search"], objective, storage=storage, parallel=8)
    dists = plan_stage(config, "refine", storage).distributions
    assert "alpha" not in dists and "lr" not in dists  # no lr declared: train.lr
    assert isinstance(dists["gamma"], FloatDistribution) and dists["gamma"].low < 1.0
    tuned = _config(tmp_path, search={"gamma": [1.0, 2.0], "alpha": [None, 0.5]})
    alpha = plan_stage(tuned, "refine", storage).distributions["alpha"]
    assert isinstance(alpha, FloatDistribution) and alpha.low < 0.5 < alpha.high  # tune


def test_refine_of_a_schedule_or_weight_scheme_holds_them(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        search={
            "gamma": [1.0],
            "alpha": ["effective"],
            "beta": 0.99,
            "gamma_schedule": {"kind": "confidence", "k": [1.0], "max_gamma": 4.0},
        },
    )
    best = Setting(4.0, schedule="confidence", k=1.0, weights="effective", beta=0.99)
    storage = open_storage(config)
    run_stages(config, ["search"], _planted({best.key(): 0.9}), storage=storage, parallel=8)
    dists = plan_stage(config, "refine", storage).distributions
    assert dists["gamma"] == FloatDistribution(4.0, 4.0)
    assert dists["schedule"] == CategoricalDistribution(["confidence"])
    assert dists["weights"] == CategoricalDistribution(["effective"])
    assert dists["beta"] == FloatDistribution(0.99, 0.99)
    k = dists["k"]
    assert isinstance(k, FloatDistribution) and k.low < 1.0 < k.high
    assert "alpha" not in dists


# --- schedules end to end -----------------------------------------------------------------


def test_a_schedule_search_trains_names_and_resumes(tmp_path: Path) -> None:
    """Adaptive gamma and a rare-class gamma: each trains, is named, is a row of the CSV, and a
    rerun of the same experiment trains nothing."""
    search = {
        "gamma": [1.0],
        "gamma_rare": [3.0],  # not crossed with the schedules
        "alpha": [0.5, None],
        "gamma_schedule": ["flsd53", {"kind": "confidence", "k": [1.0]}],
    }
    path = _write(tmp_path, search=search)
    result = _invoke("search", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("search #") == 6  # one line per trained trial
    trials = _trials(path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    names = {Setting.from_params(t.params).name for t in trials}
    assert names == {
        f"{focus} {weight}"
        for focus in ("gamma=1 gamma_rare=3", "gamma=flsd53", "gamma=confidence(k=1,max=5)")
        for weight in ("alpha=0.5", "alpha=off")
    }
    for trial in trials:
        record = load_record(trial)
        assert record is not None and not record.failed and record.epochs_run >= 1
        assert record.setting == Setting.from_params(trial.params)
    rows = _csv_rows(path)
    assert {int(r["number"]): _csv_setting(r) for r in rows} == {
        t.number: Setting.from_params(t.params) for t in trials
    }
    schedules = sorted((r["schedule"], r["k"], r["gamma"], r["gamma_rare"]) for r in rows)
    assert schedules == [
        *[("confidence", "1.0", "5.0", "")] * 2,
        *[("fixed", "", "1.0", "3.0")] * 2,
        *[("flsd53", "", "5.0", "")] * 2,
    ]

    def done(ts: list[optuna.trial.FrozenTrial]) -> list[tuple[Any, ...]]:
        return sorted((t.number, t.state.name, t.datetime_complete, str(t.params)) for t in ts)

    before = done(trials)
    again = _invoke("search", "-c", str(path))
    assert again.exit_code == 0, again.output
    assert "search #" not in again.stderr  # no trial line: nothing trained
    assert done(_trials(path)) == before


# --- confirm with declared learning rates -----------------------------------------------


def test_confirm_twins_carry_the_finalists_lr_and_weights(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        search={"gamma": [1.0], "gamma_rare": [3.0], "alpha": ["inverse"], "lr": [0.001, 0.01]},
        confirm={"top_k": 2, "repeats": 2},
    )
    first = Setting(1.0, gamma_rare=3.0, weights="inverse", lr=0.01)
    second = Setting(1.0, gamma_rare=3.0, weights="inverse", lr=0.001)
    objective = _planted({first.key(): 0.9, second.key(): 0.8})
    storage = open_storage(config)
    run_stages(config, ["baseline", "search"], objective, storage=storage, parallel=8)
    points = confirm_points(config, storage)
    arms = {p.arm() for p in points}
    twins = {Setting(0.0, weights="inverse", lr=0.01), Setting(0.0, weights="inverse", lr=0.001)}
    assert {first, second} | twins <= arms
    assert {first.twin(), second.twin()} == twins
    assert Setting(0.0) in arms  # plain cross-entropy, at train.lr
    assert Setting(0.0, weights="inverse") in arms  # the baseline's weighted CE, at train.lr
    assert len(arms) == 6 and len(points) == 6 * 2
    studies = run_stages(config, ["confirm"], objective, storage=storage, parallel=8)
    stored = [Setting.from_params(t.params) for t in studies["confirm"].get_trials()]
    assert Counter(s.key() for s in stored) == Counter(p.key() for p in points)
    ce = [s for s in stored if not s.is_focal and s.lr is not None]
    assert {(s.lr, s.weights) for s in ce} == {(0.01, "inverse"), (0.001, "inverse")}
    assert all("gamma_rare" not in s.params() for s in ce)


def test_a_learning_rate_search_resumes_and_refines_on_a_log_scale(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        search={"gamma": [1.0], "alpha": [0.5], "lr": [0.001, 0.003]},
        refine={"n_trials": 3, "batch": 3},
    )
    for _ in range(2):  # the rerun trains nothing and accepts the stored log-scale lr
        result = _invoke("search", "-c", str(path))
        assert result.exit_code == 0, result.output
    assert len(_trials(path)) == 2
    result = _invoke("refine", "-c", str(path))
    assert result.exit_code == 0, result.output
    refined = [t for t in _trials(path, "refine") if t.state == TrialState.COMPLETE]
    assert len(refined) >= 3
    assert all(t.distributions["lr"].log for t in refined)


@pytest.mark.parametrize(
    "changes",
    [
        {
            "data": {"source": "sklearn", "name": "wine"},
            "search": {"gamma": [1.0], "alpha": ["inverse"]},
        },
        {"search": {"gamma": [1.0], "alpha": ["inverse"], "gamma_schedule": "flsd53"}},
    ],
    ids=["multiclass-inverse", "binary-inverse-flsd53"],
)
def test_per_class_weights_above_one_train(tmp_path: Path, changes: dict[str, Any]) -> None:
    """inverse weights average 1, so the rare class's is above 1: the kernel takes it."""
    path = _write(tmp_path, **changes)
    result = _invoke("search", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert {t.state for t in _trials(path)} == {TrialState.COMPLETE}
