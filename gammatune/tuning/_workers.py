"""Several processes on one study: this process prepares each round, workers run it.

Baseline and search points are enqueued once, here, and each worker pops waiting trials, so no
point runs twice; refine starts only once every search trial has ended, and its workers share
TPE through the storage (constant liar marks the trials in flight; each worker seeds TPE
with its own index). With several GPUs, worker
``i`` sees only GPU ``i mod n``; on a CPU the cores are shared out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gammatune.config import Config
from gammatune.data import load_data
from gammatune.device import visible_gpus
from gammatune.errors import StudyError
from gammatune.fingerprint import IfChanged, check_studies, fingerprint
from gammatune.storage import Stage, open_storage, storage_errors
from gammatune.tuning._optuna import COORDINATOR, sigterm_interrupts
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
    if_changed: IfChanged = "refuse",
    on_set_aside: Callable[[str], None] | None = None,
) -> None:
    """Run ``stages`` with ``n_workers`` processes of ``gammatune worker`` on one storage.

    The stored studies' fingerprints are checked here, before anything is enqueued (or with
    ``if_changed="replace"`` the studies that differ are set aside, see
    :func:`check_studies`). The storage URL goes to the workers through their environment
    (``WORKER_STORAGE``), never on their command lines, where ``ps`` would show its password
    to every user. The workers stop when this process does, however it ends (kill -9 too):
    their trials in flight are failed, to be retried by the next run.

    Raises:
        StudyError: A worker failed, the storage was lost, or a study was run on a different
            experiment; rerunning the same command resumes.
        KeyboardInterrupt: Ctrl-C or SIGTERM; the workers record their trials as failed and
            stop.
    """
    with storage_errors(config.storage_url):
        facts = fingerprint(config, load_data(config))  # bad data: before the storage exists
        storage = open_storage(config)
        if (kept := check_studies(config, storage, facts, if_changed=if_changed)) and on_set_aside:
            on_set_aside(kept)
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
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with sigterm_interrupts():
            for i in range(n_workers):
                # A session of their own: a signal reaches each worker once, from here.
                processes.append(
                    subprocess.Popen([*command, "--index", str(i + 1)],
                                     env=_environment(config, i, n_workers),
                                     start_new_session=True, preexec_fn=_die_with(os.getpid()))
                )  # fmt: skip
            codes = [process.wait() for process in processes]
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM here: the workers fail their trials and stop
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait()
        raise
    if 130 in codes:
        raise KeyboardInterrupt
    failed = [(i + 1, code) for i, code in enumerate(codes) if code != 0]
    if failed:
        which = ", ".join(f"worker {i} exited with {code}" for i, code in failed)
        raise StudyError(f"workers: {which}; run the same command again to resume.")


def _die_with(coordinator: int) -> Callable[[], None] | None:
    """What a worker runs before it starts, on Linux: SIGTERM when its coordinator dies."""
    if sys.platform != "linux":
        return None  # the worker's own watch (see sigterm_interrupts) stops it
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != coordinator:  # it died before the line above
            os._exit(1)

    return preexec


def _environment(config: Config, index: int, n_workers: int) -> dict[str, str]:
    env = {**os.environ, WORKER_STORAGE: config.storage_url, COORDINATOR: str(os.getpid())}
    gpus = visible_gpus()
    if len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    threads = config.train.threads
    if isinstance(threads, int):  # the file's (or --threads') choice, in every worker
        env["OMP_NUM_THREADS"] = str(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n_workers))
    return env
