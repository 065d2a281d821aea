"""The trainer contract end to end: a user's function (and command) trains each trial in a
process of its own, through real Optuna storage, and the verdict comes out as for built-in
trials. The user's code here is a few lines of NumPy that "trains" in milliseconds: scores from
one column of the table, noise from ``spec.seed``, sharper with gamma."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import load_config
from gammatune.data import load_data, refold
from gammatune.errors import ConfigError
from gammatune.record import Setting
from gammatune.spec import Job
from gammatune.storage import load_record, open_storage
from gammatune.tuning import trial_spec
from gammatune.tuning._trainer import run_function

runner = CliRunner()

TRAINER = """
import json, os, time
import numpy as np

def run_trial(spec):
    mode = os.environ.get("MODE", "")
    if mode == "raise" and spec.gamma > 0:
        raise ValueError("boom at gamma %g" % spec.gamma)
    if mode == "sleep":
        (spec.workdir / "pid").write_text(str(os.getpid()))
        time.sleep(float(os.environ.get("SLEEP_S", "60")))
    if mode == "crash":
        os._exit(3)
    (spec.workdir / "spec.json").write_text(json.dumps({
        "seed": spec.seed, "gamma": spec.gamma, "alpha": spec.alpha, "repeat": spec.repeat,
        "fold": spec.fold, "stage": spec.stage, "val_ids": spec.val_ids.tolist(),
        "train_ids": spec.train_ids.tolist(), "classes": list(spec.classes),
    }))
    x = spec.table["x"].to_numpy()
    rng = np.random.default_rng(spec.seed)
    out = {}
    for part, ids in (("val", spec.val_ids), ("test", spec.test_ids)):
        if part == "test" and (mode == "valonly" or (mode == "mixed" and spec.alpha)):
            continue  # a loop that never touches the test split
        z = x[ids] * (1 + spec.gamma / 4) + rng.normal(0, 0.7, len(ids))
        if mode == "noisy":  # not seeded: another score each time
            z = z + np.random.default_rng().normal(0, 0.1, len(ids))
        out[part] = {"ids": ids[::-1], "scores": (1 / (1 + np.exp(-z)))[::-1]}
    for epoch in range(2 if mode != "silent" else 0):  # spec.report is optional
        spec.report(epoch, 0.5 + 0.1 * epoch)
    if mode == "nan":
        out["val"]["scores"][0] = float("nan")
    if mode == "none":
        return None
    if mode == "ids":
        out["val"]["ids"] = out["val"]["ids"][1:]
        out["val"]["scores"] = out["val"]["scores"][1:]
    if mode == "badtest":
        out["test"]["scores"] = out["test"]["scores"][:-1]
    if mode == "range":
        out["val"]["scores"] = out["val"]["scores"] * 3
    if mode == "binary2":
        s = out["val"]["scores"]
        out["val"]["scores"] = np.stack([1 - s, s], axis=1)
    if mode == "badcounts":
        for part, ids in (("val", spec.val_ids), ("test", spec.test_ids)):
            tp, fp, fn = (np.full(len(ids), k) for k in (3, 1, 2))
            out[part] = {"ids": ids, "tp": tp, "fp": fp, "fn": fn, "tn": 100 - tp - fp - fn}
        if mode == "badcounts":
            out["val"]["fp"] = -out["val"]["fp"]
    if mode == "weights":
        (spec.workdir / "net.bin").write_bytes(b"seed %d" % spec.seed)
        out["weights"] = str(spec.workdir / "net.bin")
    out["extra"] = {"note": "tiny"}
    return out
"""


def make_table(folder: Path, n: int = 240, groups: bool = False) -> Path:
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.2).astype(int)
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n) + 2.0 * y - 1,
            "label": np.where(y == 1, "sick", "well"),
            "path": [f"img{i}.png" for i in range(n)],
        }
    )
    if groups:
        frame["patient"] = rng.integers(0, 40, n)
    path = folder / "units.csv"
    frame.to_csv(path, index=False)
    return path


def experiment(folder: Path, *, mode: str = "", code: str = TRAINER, **changes: Any) -> Path:
    """An experiment in ``folder``: the table, ``mytrain.py``, and ``exp.yaml``."""
    folder.mkdir(parents=True, exist_ok=True)
    make_table(folder, groups="groups" in json.dumps(changes.get("data", {})))
    (folder / "mytrain.py").write_text(code, encoding="utf-8")
    config: dict[str, Any] = {
        "name": "own",
        "data": {"source": "csv", "path": "units.csv", "target": "label"},
        "trainer": {"function": "mytrain:run_trial", "env": {"MODE": mode}},
        "train": {"epochs": 2, "device": "cpu"},
        "search": {"gamma": [0, 2], "alpha": [0.75]},
        "refine": {"n_trials": 1},
        "confirm": {"top_k": 1, "repeats": 2},
        "output_dir": "runs",
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        elif value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def records(config: Path, stage: str) -> list[Any]:
    loaded = load_config(config)
    study = optuna.load_study(study_name=f"own.{stage}", storage=open_storage(loaded))
    return [(t, load_record(t)) for t in study.get_trials(deepcopy=False)]


def one_error_line(result: Any) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("gammatune: error:")]
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    return lines[0]


def test_the_workflow_runs_on_a_user_function_and_gives_a_verdict(tmp_path: Path) -> None:
    config = experiment(tmp_path)
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "own"
    assert "its card; the trial returned no weights" in " ".join(result.output.split())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"]["kind"] in (
        "focal",
        "class-weight",
        "cross-entropy",
        "not-measurable",
    )
    table = pd.read_csv(run / "trials.csv")
    assert set(table["stage"]) == {"baseline", "search", "refine", "confirm"}
    assert not table["model"].isin(["logistic", "logistic_balanced"]).any()  # no features
    done = [r for _, r in records(config, "search")]
    assert all(r.fail_reason is None and r.extra == {"note": "tiny"} for r in done)
    assert done[0].curves["val_monitor"] == [0.5, 0.6]


def test_export_swaps_in_the_card_and_the_weights_the_trial_returned(tmp_path: Path) -> None:
    config = experiment(tmp_path, mode="weights")
    assert runner.invoke(app, ["run", "-c", str(config)]).exit_code == 0
    model = tmp_path / "runs" / "own" / "model"
    card = json.loads((model / "card.json").read_text())
    assert (model / "net.bin").read_bytes() == b"seed %d" % card["seed"]
    assert card["weights_sha256"] == hashlib.sha256((model / "net.bin").read_bytes()).hexdigest()
    table = pd.read_csv(tmp_path / "runs" / "own" / "trials.csv")
    chosen = (table["stage"] == "confirm") & (table["number"] == card["confirm_trial"])
    row = table[chosen].iloc[0]  # the card names the split and seed that trial trained on
    keys = ("seed", "fold", "repeat")
    assert [card[k] for k in keys] == [row[k] for k in keys]
    again = runner.invoke(app, ["export", "-c", str(config)])
    assert again.exit_code == 0, again.output
    assert "your trainer's first confirm trial" in again.output and "epochs" not in again.output
    assert sorted(p.name for p in model.parent.iterdir() if p.name.startswith(".model")) == []
    refit = runner.invoke(app, ["export", "-c", str(config), "--refit"])
    assert refit.exit_code == 2 and "export --refit: trainer.function" in one_error_line(refit)
    assert (model / "card.json").read_text() == json.dumps(card, indent=2)  # untouched
    data, out = str(tmp_path / "units.csv"), str(tmp_path / "s.csv")
    scored = runner.invoke(app, ["predict", "--model", str(model), "--data", data, "--out", out])
    assert scored.exit_code == 3 and "holds your trainer's export" in one_error_line(scored)


def test_a_trainer_that_reports_no_epochs_is_still_judged(tmp_path: Path) -> None:
    config = experiment(tmp_path, mode="silent")
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    verdict = json.loads((tmp_path / "runs" / "own" / "summary.json").read_text())["verdict"]
    assert "did not progress" not in (verdict["reason"] or ""), verdict
    assert verdict["kind"] != "not-measurable", verdict


@pytest.mark.parametrize("mode", ["valonly", "mixed"])
def test_a_user_function_may_return_no_test_scores(tmp_path: Path, mode: str) -> None:
    """A loop that never touches the test split: the trials complete on validation, the test
    figures are empty (not zeros), and the report says the trainer returned none. ``mixed``:
    only the trials without a class weight return test scores."""
    config = experiment(tmp_path, mode=mode)
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "own"
    table = pd.read_csv(run / "trials.csv")
    done = table[table["state"] == "COMPLETE"]
    assert len(done) == len(table) and done["val_f1"].notna().all()
    has_test = done["alpha"].isna() if mode == "mixed" else pd.Series(False, index=done.index)
    for column in ("test_f1", "test_pr_auc", "test_threshold", "test_tp", "test_confusion"):
        assert done[column].notna().equals(has_test), column
    stored = [r for _, r in records(config, "confirm")]
    expected = [mode == "valonly" or bool(r.setting.alpha) for r in stored]
    assert [r.test is None for r in stored] == expected and all(r.val for r in stored)
    for record in stored:  # the scores file holds test scores where the trial had them
        with np.load(run / record.scores_file) as arrays:
            assert ("test" in arrays.files) == (record.test is not None)
    text = (run / "summary.json").read_text()
    summary = json.loads(text)
    assert summary["verdict"]["kind"] in ("focal", "class-weight", "cross-entropy")
    assert "NaN" not in text  # a figure that is not there is null
    notes = [check["note"] for check in summary["test"]]
    assert notes and all(n.startswith("the trainer returned no test scores") for n in notes)
    if mode == "mixed":  # one side has them: the note names the other
        assert any("no test scores for the trials of " in n for n in notes), notes
    if mode == "valonly":
        assert summary["rows"][0]["test_f1"] is None
        assert "no paired difference, the trainer returned no test scores." in summary["text"]
    page = (run / "report.html").read_text()
    assert '<td class="test_f1">n/a</td>' in page and "the trainer returned no test scores" in page


def test_a_setting_and_its_twin_share_seed_fold_and_ids(tmp_path: Path) -> None:
    config = experiment(tmp_path, confirm={"top_k": 1, "repeats": 2, "folds": 2})
    assert runner.invoke(app, ["run", "-c", str(config)]).exit_code == 0
    specs = [
        json.loads(p.read_text())
        for p in sorted((tmp_path / "runs/own/workdirs").glob("confirm-*/spec.json"))
    ]
    by_pair: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for spec in specs:
        by_pair.setdefault((spec["repeat"], spec["fold"]), []).append(spec)
    assert len(by_pair) == 4  # 2 repeats x 2 folds
    for (repeat, _), group in by_pair.items():
        assert {s["gamma"] for s in group} >= {0.0} and len({s["gamma"] for s in group}) > 1
        assert len({s["seed"] for s in group}) == 1 and group[0]["seed"] == repeat
        assert all(s["val_ids"] == group[0]["val_ids"] for s in group)
    folds = {fold: group[0]["val_ids"] for (_, fold), group in by_pair.items()}
    assert len(folds) == 2 and len({tuple(v) for v in folds.values()}) == 2  # two re-splits


def test_a_users_exception_fails_only_its_trial_and_a_rerun_retries_it(tmp_path: Path) -> None:
    config = experiment(tmp_path, mode="raise")
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    failed = [ln for ln in result.stderr.splitlines() if "FAILED" in ln]
    assert failed == ["search #1: gamma=2 alpha=0.75: FAILED: ValueError: boom at gamma 2"]
    states = [t.state for t, _ in records(config, "search")]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]
    assert runner.invoke(app, ["search", "-c", str(config)]).exit_code == 0
    assert len(records(config, "search")) == 3  # the failed point, tried again


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("none", "payload: the trainer returned None, not a mapping"),
        ("nan", "payload: val.scores must be finite probabilities; 1 NaN or infinite"),
        ("ids", "payload: val.ids must be exactly spec.val_ids; 1 of the split's ids missing"),
        ("range", "payload: val.scores must be probabilities in [0, 1]; got values in"),
        (
            "binary2",
            "payload: val.scores must have shape (48,) (binary: P(positive)); got (48, 2)",
        ),
        ("badtest", "payload: test.scores must have shape (48,) (binary: P(positive)); got (47,)"),
        ("crash", "the trial's process ended with exit code 3"),
        ("badcounts", "payload: val.fp must be whole counts >= 0; got -1"),
    ],
)
def test_a_bad_payload_or_a_crash_fails_the_trial_with_one_line(
    tmp_path: Path, mode: str, reason: str
) -> None:
    config = experiment(tmp_path, mode=mode, search={"gamma": [2], "alpha": [0.75]})
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    [(trial, record)] = records(config, "search")
    assert trial.state == TrialState.FAIL and record.fail_reason.startswith(reason), record
    assert f"FAILED: {reason}"[:40] in result.stderr and "Traceback" not in result.output


def test_a_trainer_that_hangs_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    config = experiment(tmp_path, mode="sleep", trainer={"timeout_s": 1.5})
    started = time.monotonic()
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30
    reasons = {r.fail_reason for _, r in records(config, "search")}
    assert reasons == {"timed out after 1.5 s (trainer.timeout_s)"}


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        (
            {"function": "mytrain:run_trial", "command": ["python"]},
            "exp.yaml: trainer: give exactly one of function and command",
        ),
        ({"function": "nosuchmodule:run"}, "trainer.function: cannot use 'nosuchmodule:run': "),
        ({"function": "mytrain:missing"}, "has no function 'missing'"),
        ({"command": ["no-such-program-xyz", "{split}"]}, "trainer.command[0]: 'no-such-prog"),
        ({"command": ["python", "{nope}"]}, "trainer.command[1]: unknown placeholder {nope}"),
    ],
)
def test_a_bad_trainer_is_one_line_and_exit_2(
    tmp_path: Path, trainer: dict[str, Any], message: str
) -> None:
    config = experiment(tmp_path, trainer=None)
    raw = yaml.safe_load(config.read_text())
    raw["trainer"] = trainer
    config.write_text(yaml.safe_dump(raw))
    for command in ("check", "baseline"):  # check finds it too; a refused stage opens no study
        result = runner.invoke(app, [command, "-c", str(config)])
        assert result.exit_code == 2, result.output
        assert message in one_error_line(result)
    assert not (tmp_path / "runs").exists()


def test_model_keys_with_a_trainer_are_named_and_refused(tmp_path: Path) -> None:
    config = experiment(tmp_path, model={"hidden": [8], "dropout": 0.2})
    result = runner.invoke(app, ["check", "-c", str(config)])
    assert result.exit_code == 2
    assert "model.dropout, model.hidden: no effect with a trainer" in one_error_line(result)


def test_groups_stay_in_one_split_and_a_group_with_every_positive_is_refused(
    tmp_path: Path,
) -> None:
    data = {"source": "csv", "path": "units.csv", "target": "label", "groups": "patient"}
    config = experiment(tmp_path, data=data)
    splits = load_data(load_config(config))
    units = splits.units
    assert units is not None and units.groups is not None
    sets = [set(units.groups[ids]) for ids in (units.train_ids, units.val_ids, units.test_ids)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    moved = refold(splits, 1, seed=0).units
    assert moved is not None and not set(units.groups[moved.val_ids]) & set(
        units.groups[moved.train_ids]
    )
    assert np.array_equal(moved.test_ids, units.test_ids)
    table = pd.read_csv(tmp_path / "units.csv")
    table.loc[table["label"] == "sick", "patient"] = 999  # one patient holds every positive
    table.to_csv(tmp_path / "units.csv", index=False)
    result = runner.invoke(app, ["baseline", "-c", str(config)])
    assert result.exit_code == 3, result.output
    assert "data.groups: class 'sick' occurs in 1 group(s) of column 'patient' (group '999'" in (
        one_error_line(result)
    )


def test_editing_the_training_code_is_refused_like_an_edited_experiment(tmp_path: Path) -> None:
    config = experiment(tmp_path)
    assert runner.invoke(app, ["baseline", "-c", str(config)]).exit_code == 0
    (tmp_path / "mytrain.py").write_text(TRAINER.replace("0.7", "0.6"), encoding="utf-8")
    result = runner.invoke(app, ["baseline", "-c", str(config)])
    assert result.exit_code == 4, result.output
    assert "trainer.source was 'sha256:" in one_error_line(result)


def _spec_and_job(tmp_path: Path, code: str) -> Job:
    config_path = experiment(tmp_path, code=code)
    config = load_config(config_path)
    splits = load_data(config)
    cpu = torch.device("cpu")
    spec = trial_spec(config, splits, Setting(0.0, None), trial=("search", 0), device=cpu)
    assert config.trainer is not None
    return Job("mytrain:run_trial", config.trainer.base_dir, {}, spec)


def test_report_stops_a_trial_the_pruner_stops(tmp_path: Path) -> None:
    code = "def run_trial(spec):\n    for e in range(5):\n        spec.report(e, 0.1 * e)\n"
    job = _spec_and_job(tmp_path, code)
    heard: list[tuple[int, float]] = []

    def prune_at_2(step: int, value: float) -> bool:
        heard.append((step, value))
        return step == 2

    ended = run_function(job, prune_at_2, timeout_s=60)
    assert ended.pruned == (2, pytest.approx(0.2)) and len(heard) == 3


def test_spec_loss_at_gamma_0_is_cross_entropy(tmp_path: Path) -> None:
    job = _spec_and_job(tmp_path, "def run_trial(spec):\n    return None\n")
    logits, targets = torch.randn(16), (torch.rand(16) < 0.3).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    torch.testing.assert_close(job.spec.loss()(logits, targets), expected)


COMMAND = """
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd

split, out, mode = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), sys.argv[3]
if mode == "fail":
    print("loading weights", file=sys.stderr)
    sys.exit("RuntimeError: no checkpoint found")
if mode == "silent":
    sys.exit(0)
x = pd.read_csv("units.csv")["x"].to_numpy()
rng = np.random.default_rng(split["seed"])
arrays = {}
for part in ("val",) if mode == "valonly" else ("val", "test"):
    ids = np.array(split[part + "_ids"])
    z = x[ids] * (1 + split["gamma"] / 4) + rng.normal(0, 0.7, len(ids))
    arrays[part + "_ids"], arrays[part + "_scores"] = ids, 1 / (1 + np.exp(-z))
if mode == "halftest":
    del arrays["test_scores"]
with open(out / "progress.jsonl", "w") as f:
    f.write(json.dumps({"step": 0, "value": 0.5}) + "\\n")
np.savez(out / "scores.npz", **arrays)
"""


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("ok", None),
        ("fail", "the command exited with 1: RuntimeError: no checkpoint found"),
        ("silent", "the command wrote no scores.npz in "),
        ("halftest", "payload: scores.npz has test_ids but no test_scores"),
    ],
)
def test_the_command_form(tmp_path: Path, mode: str, reason: str | None) -> None:
    config = experiment(
        tmp_path,
        trainer=None,
        search={"gamma": [0, 2], "alpha": [0.75]},
    )
    (tmp_path / "train.py").write_text(COMMAND, encoding="utf-8")
    raw = yaml.safe_load(config.read_text())
    raw["trainer"] = {"command": [sys.executable, "train.py", "{split}", "{workdir}", mode]}
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    got = records(config, "search")
    if reason is None:
        assert [t.state for t, _ in got] == [TrialState.COMPLETE] * 2
        assert got[1][1].curves["val_monitor"] == [0.5]
    else:
        assert all(r.fail_reason.startswith(reason) for _, r in got), got[0][1].fail_reason


def test_the_command_form_may_write_no_test_scores(tmp_path: Path) -> None:
    config = experiment(tmp_path, trainer=None)
    (tmp_path / "train.py").write_text(COMMAND, encoding="utf-8")
    raw = yaml.safe_load(config.read_text())
    raw["trainer"] = {"command": [sys.executable, "train.py", "{split}", "{workdir}", "valonly"]}
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "own"
    table = pd.read_csv(run / "trials.csv")
    assert (table["state"] == "COMPLETE").all() and table["test_f1"].isna().all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"]["recommended"] is not None  # one progress line: not-measurable
    assert {c["note"] for c in summary["test"]} == {"the trainer returned no test scores"}
    assert "no paired difference, the trainer returned no test scores." in summary["text"]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped yet, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_mid_trial_then_a_rerun_completes_each_point_once(tmp_path: Path) -> None:
    config = experiment(tmp_path, mode="sleep", trainer={"env": {"MODE": "sleep", "SLEEP_S": "8"}})
    command = [sys.executable, "-m", "gammatune", "search", "--config", str(config)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs/own/workdirs").glob("search-*/pid")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    trial = int(next((tmp_path / "runs/own/workdirs").glob("search-*/pid")).read_text())
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    deadline = time.monotonic() + 3  # the trial (8 s of sleep) stops with gammatune
    while _alive(trial):
        assert time.monotonic() < deadline, "the trial's process outlived gammatune"
        time.sleep(0.05)
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    done = [t for t, _ in records(config, "search") if t.state == TrialState.COMPLETE]
    assert sorted(t.params["gamma"] for t in done) == [0.0, 2.0]
    assert not [t for t, _ in records(config, "search") if t.state == TrialState.RUNNING]


def test_two_workers_share_the_points(tmp_path: Path) -> None:
    config = experiment(tmp_path, search={"gamma": [0, 1, 2], "alpha": [0.75]})
    result = runner.invoke(app, ["search", "-c", str(config), "--workers", "2"])
    assert result.exit_code == 0, result.output
    done = [t for t, _ in records(config, "search") if t.state == TrialState.COMPLETE]
    assert sorted(t.params["gamma"] for t in done) == [0.0, 1.0, 2.0]
    assert len({t.user_attrs.get("pid") for t in done}) >= 1


def test_a_function_that_is_not_importable_fails_before_any_trial() -> None:
    from gammatune.spec import load_function

    with pytest.raises(ImportError):
        load_function("no_such_module_abc:f", Path("."))
    assert ConfigError.exit_code == 2


@pytest.mark.parametrize(("mode", "deterministic"), [("", True), ("noisy", False)])
def test_check_determinism_reports_the_largest_score_difference(
    tmp_path: Path, mode: str, deterministic: bool
) -> None:
    confirm = {"top_k": 1, "repeats": 2, "check_determinism": True}
    config = experiment(tmp_path, mode=mode, confirm=confirm)
    assert runner.invoke(app, ["run", "-c", str(config)]).exit_code == 0
    summary = json.loads((tmp_path / "runs/own/summary.json").read_text())
    difference = summary["determinism_max_difference"]
    assert difference == 0.0 if deterministic else 0.0 < difference < 0.2
    assert len(list((tmp_path / "runs/own/workdirs").glob("confirm-*-again"))) == 1


def test_with_groups_the_verdict_resamples_whole_groups_or_says_why_not(tmp_path: Path) -> None:
    """Rows of one patient are alike: the verdict's and the test check's intervals resample
    whole patients, and summary.json says so; without the table they resample samples and the
    summary warns (never silently)."""
    data = {"source": "csv", "path": "units.csv", "target": "label", "groups": "patient"}
    config = experiment(tmp_path, data=data, confirm={"top_k": 1, "repeats": 2, "folds": 2})
    assert runner.invoke(app, ["run", "-c", str(config)]).exit_code == 0
    written = json.loads((tmp_path / "runs/own/summary.json").read_text())
    verdict = written["verdict"]
    assert verdict["resampled"] == "groups" and written["interval_warning"] is None
    assert {c["resampled"] for c in verdict["comparisons"]} == {"groups"}
    assert all("whole groups of 'patient' resampled" in c["note"] for c in written["test"])
    assert "Warning" not in written["text"]

    from gammatune.report._page import study_summary
    from gammatune.report._resample import declared_groups, validation_spread

    loaded = load_config(config)
    frame, summary, _ = study_summary(loaded)
    confirm = frame[(frame["stage"] == "confirm") & (frame["state"] == "COMPLETE")]
    c = summary.verdict.comparisons[0]
    grouped = validation_spread(loaded, confirm, groups=declared_groups(loaded))
    samples = validation_spread(loaded, confirm)
    assert grouped is not None and samples is not None and grouped.unit == "groups"
    drawn = [spread(c.setting, c.reference) for spread in (grouped, samples)]
    assert drawn[0] is not None and drawn[1] is not None  # other draws: the patients' keys
    assert not np.array_equal(drawn[0], drawn[1])

    (tmp_path / "units.csv").unlink()
    assert runner.invoke(app, ["report", "-c", str(config)]).exit_code == 0
    written = json.loads((tmp_path / "runs/own/summary.json").read_text())
    assert written["verdict"]["resampled"] == "samples"
    warning = written["interval_warning"]
    assert "data.groups names column 'patient', but its table cannot be read" in warning
    assert written["interval_warning"] in written["text"]
    assert all("single samples resampled" in c["note"] for c in written["test"])
