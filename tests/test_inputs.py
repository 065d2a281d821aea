"""Hostile or broken input, driven through the CLI: a YAML bomb, a key given twice, a model
whose outputs do not fit the task, a user's model or data code that raises, and passwords in
URLs. Each is one line naming the field and what is wrong, a non-zero exit, and the stored
study as it was. (Ray's: ``tests/test_ray.py``, its dashboard included.)"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from gammatune.cli import app
from gammatune.config import load_config
from gammatune.config._yaml import MAX_VALUES
from gammatune.storage import _quote_at
from gammatune.tuning._workflow import _write_resolved
from tests.conftest import TINY, write_config
from tests.test_faults import error_lines, trials

runner = CliRunner()

# Ten lines, each alias list nine of the one before: 9**9 (387 million) strings once expanded.
BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "name: *i",
    ]
)


def _memory_capped() -> None:
    """The child may not grow past 4 GiB: a bomb that expands fails there, not the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def test_a_yaml_bomb_fails_fast_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB + "\n", encoding="utf-8")
    assert len(BOMB.splitlines()) == 10
    done = subprocess.run(
        [sys.executable, "-m", "gammatune", "check", "-c", str(path)],
        capture_output=True, text=True, timeout=60, preexec_fn=_memory_capped,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert error_lines(done.stderr) == [
        f"gammatune: error: {path}: line 6: the value that starts here expands, through its "
        f"aliases, to more than {MAX_VALUES:,} values (a YAML bomb?); write the values out."
    ]


def test_aliases_below_the_bound_give_a_short_message(tmp_path: Path) -> None:
    """Four levels (6,561 strings) pass the bound; the error shows the value shortened."""
    path = write_config(tmp_path)
    lines = BOMB.splitlines()[:4]
    text = path.read_text(encoding="utf-8").replace("name: tiny", "name: *d")
    path.write_text("\n".join(lines) + "\n" + text, encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()  # name, and the unknown keys a, b, c, d
    assert len(lines) == 5 and all(len(line) < 300 for line in lines), lines
    assert lines[0].startswith(f"gammatune: error: {path}: name: Input should be a valid string")
    assert lines[0].endswith("...)")


def test_a_recursive_anchor_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: tiny\nseed: &s [1, *s]\n", encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [
        f"gammatune: error: {path}: line 2: an alias refers to the value that holds it (a "
        "recursive anchor); write the value out."
    ]


def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("data:\n") and "\nmodel:\n" in text
    # A second `data:` mapping at the end: PyYAML alone would keep it and drop the first.
    path.write_text(text + "data:\n  source: synthetic\n  n_samples: 50\n", encoding="utf-8")
    second = text.count("\n") + 1
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert error_lines(result.stderr) == [
        f"gammatune: error: {path}: line {second}: key 'data' is given twice (first at line 1); "
        "keep one."
    ]
    nested = write_config(tmp_path)
    lines = nested.read_text(encoding="utf-8").splitlines()
    at = lines.index("model:")
    lines.insert(at + 1, "  hidden: [4]")  # model.hidden, given again below
    nested.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", str(nested)])
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"gammatune: error: {nested}: line ")
    assert f"key 'hidden' is given twice (first at line {at + 2})" in line


def test_merge_keys_and_anchors_still_work(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    text = path.read_text(encoding="utf-8")
    base = "common: &train {epochs: 4, batch_size: 128}\n"
    text = text.replace("train:\n", "train:\n  <<: *train\n")
    path.write_text(text, encoding="utf-8")
    # `common` is not a key of the experiment: the merge worked if that is the only complaint.
    path.write_text(base + text, encoding="utf-8")
    result = runner.invoke(app, ["check", "-c", str(path)])
    assert error_lines(result.stderr) == [
        f"gammatune: error: {path}: common: unknown key (check its spelling and level)"
    ]


PLUGIN = """
import numpy as np
from torch import nn


def good(n_features, n_outputs):
    return nn.Linear(n_features, n_outputs)


def raises(n_features, n_outputs):
    raise ValueError("no layer size for 8 features")


def other_signature(width):
    return nn.Linear(width, 1)


def seven(n_features, n_outputs):  # 7 outputs, whatever the task
    return nn.Linear(n_features, 7)


class _Flat(nn.Module):
    def __init__(self, n_features):
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, x):
        return self.linear(x).reshape(-1)  # (N,), not (N, 1)


def flat(n_features, n_outputs):
    return _Flat(n_features)


class _Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 1)

    def forward(self, x):
        return self.linear(x)  # 5 inputs, not the data's 8


def broken_forward(n_features, n_outputs):
    return _Broken()


def ragged():
    return [[1.0, 2.0], [3.0]] * 50, [0, 1] * 50


def loader_raises():
    raise KeyError("train.csv")


def load_from(path):
    return rows()


def rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8))
    return x, (x[:, 0] > 1.2).astype(int)
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``plug.py`` (the functions above) and ``boom.py`` (raises at import) in the current
    folder, as a user keeps them beside the experiment."""
    (tmp_path / "plug.py").write_text(PLUGIN, encoding="utf-8")
    (tmp_path / "boom.py").write_text(
        "raise RuntimeError('cannot find the GPU driver')\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("plug", "boom"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


_NEEDS = "the task needs (3, 1) (one logit a sample: the task is binary)"


@pytest.mark.parametrize(
    ("changes", "code", "line"),
    [
        ({"model": {"kind": "boom:build"}}, 2,
         "model.kind: cannot import module 'boom': it raised RuntimeError: cannot find the GPU "
         "driver."),
        ({"model": {"kind": "plug:raises"}}, 2,
         "model.kind: plug:raises raised ValueError: no layer size for 8 features."),
        ({"model": {"kind": "plug:other_signature"}}, 2,
         "model.kind: plug:other_signature must accept (n_features=..., n_outputs=...); its "
         "signature is (width)."),
        ({"model": {"kind": "plug:seven"}}, 2,
         f"model.kind: plug:seven returns logits of shape (3, 7) for a batch of 3 samples; "
         f"{_NEEDS}."),
        ({"model": {"kind": "plug:flat"}}, 2,
         f"model.kind: plug:flat returns logits of shape (3,) for a batch of 3 samples; "
         f"{_NEEDS}."),
        ({"model": {"kind": "plug:broken_forward"}}, 2,
         "model.kind: plug:broken_forward fails on a batch of shape (3, 8) (samples, features): "
         "RuntimeError: mat1 and mat2 shapes cannot be multiplied (3x8 and 5x1)."),
        ({"data": {"source": "python", "ref": "boom:load"}}, 2,
         "data.ref: cannot import module 'boom': it raised RuntimeError: cannot find the GPU "
         "driver."),
        ({"data": {"source": "python", "ref": "plug:loader_raises"}}, 3,
         "data.ref: plug:loader_raises raised KeyError: 'train.csv'."),
        ({"data": {"source": "python", "ref": "plug:load_from"}}, 2,
         "data.ref: plug:load_from must accept (no arguments); its signature is (path)."),
        ({"data": {"source": "python", "ref": "plug:ragged"}}, 3,
         "data.ref: plug:ragged must return (features, labels) as arrays; ValueError: setting "
         "an array element with a sequence. The requested array has an inhomogeneous shape "
         "after 1 dimensions. The detected shape was (100,) + inhomogeneous part."),
    ],
)  # fmt: skip
def test_user_code_that_fails_is_one_line(
    plugins: Path, changes: dict[str, object], code: int, line: str
) -> None:
    config = write_config(plugins, **changes)
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == code, result.output
    assert error_lines(result.stderr) == [f"gammatune: error: {line}"]
    database = plugins / "runs" / "tiny" / "study.db"
    stored = optuna.get_all_study_summaries(f"sqlite:///{database}") if database.exists() else []
    assert all(summary.n_trials == 0 for summary in stored)  # nothing claimed, nothing left


def test_a_multiclass_task_names_its_width(plugins: Path) -> None:
    data = {"source": "synthetic", "n_samples": 900, "n_features": 8, "n_classes": 3}
    config = write_config(plugins, data=data, model={"kind": "plug:seven"})
    result = runner.invoke(app, ["baseline", "-c", str(config)])
    assert result.exit_code == 2, result.output
    assert error_lines(result.stderr) == [
        "gammatune: error: model.kind: plug:seven returns logits of shape (3, 7) for a batch of "
        "3 samples; the task needs (3, 3) (one logit a class: 3 classes)."
    ]


def test_a_plugin_broken_after_a_search_leaves_the_study_as_it_was(plugins: Path) -> None:
    """The same ``model.kind``, its code changed to return 7 outputs: refused before any
    step; the completed trials stay as they were, none is added or left running."""
    config = write_config(plugins, model={"kind": "plug:good"})
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    before = [(t.number, t.state, t.params, t.values) for t in trials(config)]
    assert Counter(t[1] for t in before) == {TrialState.COMPLETE: 2}
    source = (plugins / "plug.py").read_text(encoding="utf-8")
    (plugins / "plug.py").write_text(
        source.replace("nn.Linear(n_features, n_outputs)", "nn.Linear(n_features, 7)"),
        encoding="utf-8",
    )
    sys.modules.pop("plug", None)
    write_config(plugins, model={"kind": "plug:good"}, search={"gamma": [0.5, 2.0, 3.0],
                                                               "alpha": [0.75]})  # fmt: skip
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 2, result.output
    assert error_lines(result.stderr) == [
        f"gammatune: error: model.kind: plug:good returns logits of shape (3, 7) for a batch of "
        f"3 samples; {_NEEDS}."
    ]
    assert [(t.number, t.state, t.params, t.values) for t in trials(config)] == before


def test_a_good_plugin_trains(plugins: Path) -> None:
    config = write_config(
        plugins, model={"kind": "plug:good"}, data={"source": "python", "ref": "plug:rows"}
    )
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert Counter(t.state for t in trials(config)) == {TrialState.COMPLETE: 2}


MLFLOW = "http://me:s3cret-mlflow@127.0.0.1:9"  # nothing listens on port 9


def test_check_and_the_resolved_file_hide_the_mlflow_password(tmp_path: Path) -> None:
    config = write_config(tmp_path, train={**TINY["train"], "mlflow": MLFLOW})
    result = runner.invoke(app, ["check", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "mlflow: http://me:***@127.0.0.1:9" in result.output
    _write_resolved(load_config(config))  # what every stage writes into the run folder
    text = (tmp_path / "runs" / "tiny" / "config.resolved.yaml").read_text(encoding="utf-8")
    assert "s3cret" not in text and "mlflow: http://me:***@127.0.0.1:9" in text
    result = runner.invoke(app, ["search", "-c", str(config)])
    assert result.exit_code == 4
    (line,) = error_lines(result.stderr)
    assert "s3cret" not in result.output and "http://me:***@127.0.0.1:9" in line


def test_a_password_with_a_raw_at_sign_shows_no_part_of_itself(tmp_path: Path) -> None:
    """SQLAlchemy ends a password at its first ``@``: the rest went to the server as part of
    the host name, and the driver's error named that host ("failed to resolve host
    '2pass@127.0.0.1'")."""
    pytest.importorskip("psycopg")
    config = write_config(tmp_path)
    url = "postgresql://me:hunter@2pass@127.0.0.1:9/db"
    result = runner.invoke(app, ["search", "-c", str(config), "--storage", url])
    assert result.exit_code == 4
    (line,) = error_lines(result.stderr)
    assert line.startswith(
        "gammatune: error: storage: cannot open postgresql+psycopg://me:***@127.0.0.1:9/db: "
        "connection failed: "
    ), line
    assert "Connection refused" in line  # the right host was asked
    assert "hunter" not in result.output and "2pass" not in result.output


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("postgresql://me:p@ss@db/x", "postgresql://me:p%40ss@db/x"),
        ("postgresql://me:a@b@c@db:5432/x?sslmode=require",
         "postgresql://me:a%40b%40c@db:5432/x?sslmode=require"),
        ("postgresql://me:p%40ss@db/x", "postgresql://me:p%40ss@db/x"),  # encoded already
        ("postgresql://me:plain@db/x", "postgresql://me:plain@db/x"),
        ("postgresql://me@db/x", "postgresql://me@db/x"),
        ("sqlite:///runs/a@b/study.db", "sqlite:///runs/a@b/study.db"),
    ],
)  # fmt: skip
def test_a_raw_at_sign_in_a_password_is_encoded(url: str, sent: str) -> None:
    assert _quote_at(url) == sent
