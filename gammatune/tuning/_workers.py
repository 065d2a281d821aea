"""Several processes on one study: this process prepares each round, workers run it.

Baseline and search points are enqueued once, here, and each worker pops waiting trials, so no
point runs twice; refine starts only once every search trial has ended, and its workers share
TPE through the storage (constant liar marks the trials in flight; each worker seeds TPE
with its own index). With several GPUs, worker
``i`` sees only GPU ``i mod n``; on a CPU the cores are shared out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from gammatune.config import Config
from gammatune.device import visible_gpus
from gammatune.errors import StudyError
from gammatune.storage import Stage, open_storage, storage_errors
from gammatune.tuning._runner import prepare_stages
from gammatune.tuning._stages import rounds
from gammatune.tuning._workflow import WORKER_STORAGE


def run_with_workers(
    config: Config,
    config_path: Path,
    stages: Sequence[Stage],
    *,
    n_workers: int,
    tensorboard: Path | None = None,
) -> None:
    """Run ``stages`` with ``n_workers`` processes of ``gammatune worker`` on one storage.

    The storage URL goes to the workers through their environment (``WORKER_STORAGE``), never
    on their command lines, where ``ps`` would show its password to every user.

    Raises:
        StudyError: A worker failed, or the storage was lost; rerunning the same command
            resumes.
        KeyboardInterrupt: Ctrl-C; the workers record their trials as failed and stop.
    """
    with storage_errors(config.storage_url):
        storage = open_storage(config)
        for group in rounds(stages):
            prepare_stages(config, group, storage)
            _run_round(config, config_path, group, n_workers=n_workers, tensorboard=tensorboard)


def _run_round(
    config: Config,
    config_path: Path,
    group: list[Stage],
    *,
    n_workers: int,
    tensorboard: Path | None,
) -> None:
    command = [
        sys.executable, "-m", "gammatune", "worker", "--config", str(config_path),
        "--stages", ",".join(group),
    ]  # fmt: skip
    # TPE seeds and progress lines differ per worker: its index is an option, not a global.
    if tensorboard is not None:
        command += ["--tensorboard", str(tensorboard)]
    processes = [
        subprocess.Popen([*command, "--index", str(i + 1)], env=_environment(config, i, n_workers))
        for i in range(n_workers)
    ]
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        for process in processes:  # they got the Ctrl-C too: let them record it
            process.wait()
        raise
    if 130 in codes:
        raise KeyboardInterrupt
    failed = [(i + 1, code) for i, code in enumerate(codes) if code != 0]
    if failed:
        which = ", ".join(f"worker {i} exited with {code}" for i, code in failed)
        raise StudyError(f"workers: {which}; run the same command again to resume.")


def _environment(config: Config, index: int, n_workers: int) -> dict[str, str]:
    env = {**os.environ, WORKER_STORAGE: config.storage_url}
    gpus = visible_gpus()
    if len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n_workers))
    return env
