"""What a user's trainer function receives (``TrialSpec``), and the process it runs in.

A user's ``run_trial(spec)`` runs in a process of its own, started for the trial (see
``gammatune.tuning._trainer``): a hang is bounded by ``trainer.timeout_s`` and a crash fails only
that trial. This module is what that process imports; it stays light (torch only when the user
asks for the loss).
"""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gammatune.errors import Pruned

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from gammatune.training import Gamma, Weight

Report = Callable[[int, float], bool]  # (step, value) -> whether to stop the trial


@dataclass(frozen=True)
class TrialSpec:
    """One trial, as gammatune hands it to a user's trainer function.

    Attributes:
        gamma: The focusing exponent; 0 is the cross-entropy twin.
        alpha: The minority-class weight, or None.
        params: Every parameter of the trial (``gamma``, ``alpha``, ``lr`` where searched, ...).
        seed: The training seed: seed everything from it (weights, batch order, augmentation).
            A setting and its cross-entropy twin share it.
        repeat: The repeat number (``seed = config.seed + repeat``).
        fold: 0 for the configured split, ``f > 0`` for confirm's re-splits of train+val.
        stage: ``baseline``, ``search``, ``refine`` or ``confirm``.
        train_ids, val_ids, test_ids: Row positions in ``table`` (``int64``, sorted).
        table: The data table (a pandas DataFrame), all its columns.
        classes: The class labels, in gammatune's order (binary: negative, positive).
        positive: The positive class (binary), else None.
        device: ``cpu``, ``cuda``, ``mps``: where gammatune would train (``train.device``).
        epochs: ``train.epochs``.
        workdir: A folder kept for this trial (checkpoints, logs, weights).
    """

    gamma: float
    alpha: float | None
    params: dict[str, Any]
    seed: int
    repeat: int
    fold: int
    stage: str
    train_ids: np.ndarray
    val_ids: np.ndarray
    test_ids: np.ndarray
    table: pd.DataFrame
    classes: tuple[str, ...]
    positive: str | None
    device: str
    epochs: int
    workdir: Path
    loss_terms: tuple[Gamma, Weight, int] = field(repr=False)  # gamma, alpha, minority
    _report: Report | None = field(default=None, repr=False)

    def loss(self) -> torch.nn.Module:
        """gammatune's focal loss for this setting, on logits: ``loss(logits, targets)``.

        Binary: logits ``(N,)`` or ``(N, 1)``, targets ``(N,)`` in {0, 1}. Multiclass: logits
        ``(N, C)`` in ``classes`` order, targets ``(N,)`` class indices. Mean over samples.
        With ``gamma`` 0 it is the twin's (alpha-weighted) cross-entropy.
        """
        from gammatune.training import make_loss

        gamma, alpha, minority = self.loss_terms
        function = make_loss(
            gamma=gamma, alpha=alpha, n_classes=len(self.classes), minority=minority
        )
        return _Loss(function, binary=len(self.classes) == 2)

    def report(self, step: int, value: float) -> None:
        """Report the validation value (higher is better) after ``step`` (an epoch).

        Raises:
            Pruned: The pruner stops this trial; let it propagate.
        """
        if self._report is not None and self._report(int(step), float(value)):
            raise Pruned(f"pruned at step {step}")


def _Loss(function: Callable[..., Any], *, binary: bool) -> torch.nn.Module:  # noqa: N802
    import torch

    class FocalLossOfTrial(torch.nn.Module):
        def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            if binary and logits.ndim == 1:
                logits = logits.unsqueeze(1)
            return function(logits, targets)

    return FocalLossOfTrial()


@dataclass(frozen=True, slots=True)
class Job:
    """Everything a trial's process needs, pickled to it: the function and the spec."""

    function: str  # 'module:function'
    base_dir: Path  # the experiment's folder, searched first for the module
    env: dict[str, str]
    spec: TrialSpec
    parent: int = 0  # gammatune's process: the trial stops when it is gone


def child_main(connection: Connection, job: Job) -> None:
    """Run ``job`` in this (fresh) process and send one message back: ``("done", payload)``,
    ``("failed", "TypeName: message")`` or ``("pruned", step, value)``; ``("report", step,
    value)`` messages ask the parent whether to stop."""
    die_with_parent()
    _watch(job.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
    os.environ.update(job.env)
    _log_to(job.spec.workdir)
    last: list[tuple[int, float]] = []

    def ask(step: int, value: float) -> bool:
        last[:] = [(step, value)]
        connection.send(("report", step, value))
        return bool(connection.recv())

    spec = _with_report(job.spec, ask)
    try:
        function = load_function(job.function, job.base_dir)
        payload = function(spec)
    except Pruned:
        step, value = last[0] if last else (0, math.nan)
        connection.send(("pruned", step, value))
        return
    except Exception as exc:  # noqa: BLE001 - the user's error fails this trial only
        connection.send(("failed", one_line(exc)))
        return
    try:
        connection.send(("done", _plain(payload)))
    except Exception as exc:  # noqa: BLE001 - e.g. a lambda in the payload
        connection.send(("failed", f"the payload cannot be sent back: {one_line(exc)}"))


def _watch(parent: int) -> None:
    """Exit when gammatune's process ``parent`` is gone (kill -9 too). Forked by a fork
    server, this process outlives gammatune otherwise: its parent is the server, which lives as
    long as its children do."""
    import threading
    import time

    def gone() -> bool:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        stat = Path(f"/proc/{parent}/stat")  # a zombie (killed, not yet reaped) is gone too
        try:
            return stat.read_text().rpartition(")")[2].split()[0] == "Z"
        except (OSError, IndexError):
            return False

    def watch() -> None:
        while not gone():
            time.sleep(0.5)
        os._exit(1)

    if parent > 0:
        threading.Thread(target=watch, name="gammatune-watch", daemon=True).start()


def _log_to(workdir: Path) -> None:
    """The trial's prints (and a framework's) to ``workdir/stdout.log`` and ``stderr.log``,
    not through gammatune's progress lines."""
    for stream, name in ((sys.stdout, "stdout.log"), (sys.stderr, "stderr.log")):
        stream.flush()
        with (workdir / name).open("ab") as log:
            os.dup2(log.fileno(), stream.fileno())


def _with_report(spec: TrialSpec, report: Report) -> TrialSpec:
    from dataclasses import replace

    return replace(spec, _report=report)


def load_function(ref: str, base_dir: Path) -> Callable[..., Any]:
    """Import ``'module:function'``, from the experiment's folder first, else installed.

    Raises:
        ImportError: The module cannot be imported.
        TypeError: It has no callable of that name.
    """
    import importlib

    module_name, _, name = ref.partition(":")
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    module = importlib.import_module(module_name)
    function = getattr(module, name, None)
    if not callable(function):
        raise TypeError(f"module {module_name!r} has no function {name!r}")
    return function


def module_file(ref: str, base_dir: Path) -> Path | None:
    """The source file of ``ref``'s module, found without importing it, or None."""
    import importlib.util

    module_name = ref.partition(":")[0]
    stem = base_dir.joinpath(*module_name.split("."))
    for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
        if candidate.is_file():
            return candidate
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    origin = None if found is None else found.origin
    return Path(origin) if origin and Path(origin).is_file() else None


def one_line(exc: BaseException) -> str:
    """``'TypeName: first line of the message'``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _plain(value: Any) -> Any:
    """The payload with tensors as NumPy arrays (a CUDA tensor cannot be unpickled on a CPU)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) and any(hasattr(v, "detach") for v in value):
        return [_plain(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return value


def die_with_parent() -> None:
    """On Linux, SIGTERM when the process that started this one dies (kill -9 too)."""
    if sys.platform != "linux":
        return
    import ctypes

    with_errno = ctypes.CDLL(None, use_errno=True)
    with_errno.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
