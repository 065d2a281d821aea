"""The command form of a user's trainer: a subprocess per trial, files in and out.

gammatune writes the trial's setting and ids to ``{split}`` (JSON), runs the command with the
placeholders filled in, follows ``{workdir}/progress.jsonl`` (``{"step": .., "value": ..}``
lines) for the pruner (SIGTERM stops the command), and reads ``{workdir}/scores.npz``
(``val_ids``, ``val_scores``, and optionally ``test_ids``, ``test_scores``) once it exits 0.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gammatune.config import TrainerConfig
from gammatune.errors import ConfigError
from gammatune.spec import Report, TrialSpec, die_with_parent
from gammatune.tuning._trainer import Ended

PLACEHOLDERS = (
    "gamma", "alpha", "seed", "repeat", "fold", "stage", "split", "workdir", "epochs", "device",
    "lr", "python",
)  # fmt: skip


def check_command(command: list[str], base_dir: Path) -> None:
    """Refuse unknown placeholders and a program that is neither on PATH nor a file.

    Raises:
        ConfigError: Naming the argument.
    """
    for index, argument in enumerate(command):
        try:
            names = [n for _, n, _, _ in string.Formatter().parse(argument) if n is not None]
        except ValueError as exc:
            raise ConfigError(f"trainer.command[{index}]: {argument!r}: {exc}.") from None
        unknown = [n for n in names if n not in PLACEHOLDERS]
        if unknown:
            raise ConfigError(
                f"trainer.command[{index}]: unknown placeholder {{{unknown[0]}}}; known: "
                + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                + "."
            )
    program = command[0]
    if "{" in program:  # {python}: the interpreter gammatune runs on
        return
    if shutil.which(program) is None and not (base_dir / program).is_file():
        raise ConfigError(f"trainer.command[0]: {program!r} is not found (not on PATH).")


def run_command(
    command: list[str], spec: TrialSpec, trainer: TrainerConfig, report: Report | None
) -> Ended:
    """Run one trial's command in the experiment's folder and read back its scores."""
    workdir = spec.workdir
    for stale in ("scores.npz", "progress.jsonl"):  # a rerun of an interrupted trial
        (workdir / stale).unlink(missing_ok=True)
    split = workdir / "split.json"
    split.write_text(json.dumps(_split_json(spec)), encoding="utf-8")
    values = _placeholders(spec, split)
    arguments = [argument.format_map(values) for argument in command]
    stderr_path = workdir / "stderr.log"
    with (workdir / "stdout.log").open("wb") as out, stderr_path.open("wb") as err:
        try:
            process = subprocess.Popen(
                arguments, cwd=trainer.base_dir, env={**os.environ, **trainer.env},
                stdout=out, stderr=err, start_new_session=True,
                preexec_fn=die_with_parent,  # kill -9 of gammatune stops the command too
            )  # fmt: skip
        except OSError as exc:
            return Ended(reason=f"cannot run {arguments[0]!r}: {exc.strerror or exc}")
        try:
            ended = _follow(process, workdir, report, trainer.timeout_s)
        finally:
            _stop(process)
    if ended is not None:
        return ended
    curve = tuple(_progress(workdir / "progress.jsonl")[1])
    if process.returncode != 0:
        last = _last_line(stderr_path)
        return Ended(reason=f"the command exited with {process.returncode}: {last}", curve=curve)
    return _scores(workdir / "scores.npz", curve)


def _follow(
    process: subprocess.Popen[bytes], workdir: Path, report: Report | None, timeout_s: float | None
) -> Ended | None:
    """Wait for the command, passing its progress lines to ``report``; an ending other than
    its own exit (pruned, timed out), or None."""
    deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
    heard = 0
    progress = workdir / "progress.jsonl"
    while process.poll() is None:
        if time.monotonic() > deadline:
            curve = tuple(_progress(progress)[1])
            return Ended(
                reason=f"timed out after {timeout_s:g} s (trainer.timeout_s)", curve=curve
            )
        steps, values = _progress(progress)
        for step, value in zip(steps[heard:], values[heard:], strict=True):
            if report is not None and report(step, value):
                return Ended(pruned=(step, value), curve=tuple(values))
        heard = len(steps)
        time.sleep(0.1)
    return None


def _progress(path: Path) -> tuple[list[int], list[float]]:
    """The complete ``{"step", "value"}`` lines of ``progress.jsonl`` so far."""
    if not path.is_file():
        return [], []
    steps, values = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # being written
        try:
            item = json.loads(line)
            steps.append(int(item["step"]))
            values.append(float(item["value"]))
        except (ValueError, KeyError, TypeError):
            continue
    return steps, values


def _scores(path: Path, curve: tuple[float, ...]) -> Ended:
    if not path.is_file():
        return Ended(reason=f"the command wrote no {path.name} in {path.parent}", curve=curve)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: arrays[key] for key in arrays.files}
    except (ValueError, OSError) as exc:
        return Ended(reason=f"cannot read {path.name}: {exc}", curve=curve)
    payload: dict[str, Any] = {}
    for part in ("val", "test"):  # test is optional: neither array is a trial without it
        ids, scores = f"{part}_ids", f"{part}_scores"
        if (ids in found) != (scores in found):
            have, lack = (ids, scores) if ids in found else (scores, ids)
            return Ended(reason=f"payload: {path.name} has {have} but no {lack}", curve=curve)
        if ids in found:
            payload[part] = {"ids": found[ids], "scores": found[scores]}
    return Ended(payload=payload, curve=curve)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL if it is still there after 10 s."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "(nothing on stderr)"


def _placeholders(spec: TrialSpec, split: Path) -> dict[str, str]:
    return {
        "gamma": f"{spec.gamma:g}",
        "alpha": "none" if spec.alpha is None else f"{spec.alpha:g}",
        "seed": str(spec.seed),
        "repeat": str(spec.repeat),
        "fold": str(spec.fold),
        "stage": spec.stage,
        "split": str(split),
        "workdir": str(spec.workdir),
        "epochs": str(spec.epochs),
        "device": spec.device,
        "lr": f"{spec.params['lr']:g}",
        "python": sys.executable,
    }


def _split_json(spec: TrialSpec) -> dict[str, Any]:
    return {
        "gamma": spec.gamma,
        "alpha": spec.alpha,
        "params": spec.params,
        "seed": spec.seed,
        "repeat": spec.repeat,
        "fold": spec.fold,
        "stage": spec.stage,
        "classes": list(spec.classes),
        "positive": spec.positive,
        "epochs": spec.epochs,
        "device": spec.device,
        "train_ids": spec.train_ids.tolist(),
        "val_ids": spec.val_ids.tolist(),
        "test_ids": spec.test_ids.tolist(),
    }
