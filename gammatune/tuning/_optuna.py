"""The one boundary to Optuna's private API, and how processes share a study safely: the lock
that makes claiming trials atomic, heartbeats, and failing the trials of dead processes.

gammatune enqueues every fixed point itself and must claim exactly those (``Study.ask`` would
invent new points when none is waiting). Optuna has no public call for that, so this module
holds the private names it needs (``Study._pop_waiting_trial_id``, ``Trial._trial_id``), each
checked: a missing one is a clear error naming the
Optuna versions gammatune is tested with, never a silent change of behaviour. The tests in
``tests/test_optuna_boundary.py`` pin what each must do.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: one process per study there
    fcntl = None  # type: ignore[assignment]

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from gammatune.errors import StudyError
from gammatune.storage import GRACE_PERIOD_S, lock_file

logger = logging.getLogger(__name__)

TESTED = "optuna>=5,<6"


def pop_waiting_trial(
    study: optuna.Study, storage: optuna.storages.BaseStorage
) -> tuple[optuna.Trial, dict[str, Any]] | None:
    """Claim the oldest enqueued (WAITING) trial; return it, running, with its enqueued
    parameters; None when none waits.

    Calls ``Study._pop_waiting_trial_id``, the first step of ``Study.ask``, which claims the
    trial in the storage (a row lock on a server database; callers hold :func:`claim_lock`).
    The parameters come from the trial's ``fixed_params`` system attribute, through the
    storage's public ``get_trial_system_attrs``.

    Raises:
        StudyError: This Optuna has no such method.
    """
    pop = getattr(study, "_pop_waiting_trial_id", None)
    if pop is None:
        raise StudyError(
            f"optuna {optuna.__version__} has no Study._pop_waiting_trial_id, which gammatune "
            f"needs to claim enqueued trials; install {TESTED}."
        )
    trial_id = pop()
    if trial_id is None:
        return None
    fixed = storage.get_trial_system_attrs(trial_id).get("fixed_params", {})
    return optuna.Trial(study, trial_id), dict(fixed)


def heartbeat_interval(storage: optuna.storages.BaseStorage) -> int | None:
    """The storage's heartbeat interval in seconds, or None where it records none."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage.get_heartbeat_interval()
    return None


def record_heartbeat(storage: optuna.storages.BaseStorage, trial: optuna.Trial) -> None:
    """Record that ``trial``'s process is alive (``RDBStorage.record_heartbeat``, public; the
    trial's storage id is the private ``Trial._trial_id``, which Optuna exposes no other way).

    Raises:
        StudyError: This Optuna's trials have no ``_trial_id``.
    """
    if heartbeat_interval(storage) is None:
        return
    trial_id = getattr(trial, "_trial_id", None)
    if not isinstance(trial_id, int):
        raise StudyError(
            f"optuna {optuna.__version__} has no Trial._trial_id, which gammatune needs to "
            f"record heartbeats; install {TESTED}."
        )
    assert isinstance(storage, optuna.storages.RDBStorage)
    storage.record_heartbeat(trial_id)


def running_trial(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """A live handle on ``trial`` (running, perhaps claimed by a process now dead), to set
    what it lacks before it is failed. Uses the private ``FrozenTrial._trial_id``."""
    trial_id = getattr(trial, "_trial_id", None)
    if not isinstance(trial_id, int):
        raise StudyError(
            f"optuna {optuna.__version__} has no FrozenTrial._trial_id; install {TESTED}."
        )
    return optuna.Trial(study, trial_id)


def waiting_params(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters; an enqueued trial keeps them in its ``fixed_params`` system
    attribute until it starts (``FrozenTrial.params`` is empty then)."""
    if trial.params:
        return dict(trial.params)
    fixed = trial.system_attrs.get("fixed_params")
    if fixed is None and trial.state == optuna.trial.TrialState.WAITING:
        raise StudyError(
            f"optuna {optuna.__version__}: enqueued trial {trial.number} has no "
            f"'fixed_params'; install {TESTED}."
        )
    return dict(fixed or {})


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is one of ``distribution``'s values (public attributes only)."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if not isinstance(distribution, FloatDistribution) or value is None:
        return False
    low, high, step = distribution.low, distribution.high, distribution.step
    if not low - 1e-9 <= value <= high + 1e-9:
        return False
    return step is None or abs((value - low) / step - round((value - low) / step)) < 1e-6


@contextmanager
def claim_lock(storage: optuna.storages.BaseStorage, key: str) -> Iterator[None]:
    """Serialize preparing a stage and claiming its trials between processes on one storage.

    Two processes that open one stage at the same moment would otherwise both see a point
    missing and both enqueue it (so it trains twice), or both count refine's budget as open.
    On SQLite, which ignores ``SELECT ... FOR UPDATE``, and on a journal file, a file lock
    beside it (released by the kernel if this process dies); on PostgreSQL, a session advisory
    lock named after ``key`` (the study), held on a connection of its own and released by the
    server if this process dies. Other storages get no lock.
    """
    url = str(getattr(storage, "url", ""))
    if (path := lock_file(storage)) is not None and fcntl is not None:
        with open(path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif url.startswith("postgresql") and isinstance(storage, optuna.storages.RDBStorage):
        from sqlalchemy import text

        with storage.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": key})
                connection.commit()
    else:
        yield


COORDINATOR = "GAMMATUNE_COORDINATOR"  # a worker's environment: its coordinator's pid
_SIGTERM_SEEN = threading.Event()


def raise_if_terminated() -> None:
    """Raise the KeyboardInterrupt of a SIGTERM that Python lost.

    The handler's exception is swallowed ("Exception ignored in ...") when the signal lands
    while a garbage-collection callback runs (SQLAlchemy's, seen under load); the runner calls
    this between training and storing, so such a stop still fails the trials in flight.
    """
    if _SIGTERM_SEEN.is_set():
        raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``) stops like Ctrl-C: the trials in flight are failed, to
    be retried, instead of left RUNNING.

    A worker (``COORDINATOR`` in its environment) also stops so once its coordinator is gone:
    on Linux the kernel sends it SIGTERM then (``PR_SET_PDEATHSIG``, set by ``workers``);
    elsewhere, and as a fallback, a thread sees it re-parented within a second.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        _SIGTERM_SEEN.set()
        raise KeyboardInterrupt

    _SIGTERM_SEEN.clear()
    previous = signal.signal(signal.SIGTERM, interrupt)
    stop = threading.Event()
    if COORDINATOR in os.environ:
        coordinator = int(os.environ[COORDINATOR])
        threading.Thread(
            target=_watch_parent, args=(coordinator, stop), name="gammatune-watch", daemon=True
        ).start()
    try:
        yield
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, previous)


def _watch_parent(coordinator: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        if os.getppid() != coordinator:
            logger.warning("the coordinating process %d is gone; stopping", coordinator)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, FloatDistribution):
        # Round off the step's binary noise (0.8500000000000001).
        value = trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
        return round(value, 10)
    assert isinstance(dist, IntDistribution)
    return trial.suggest_int(name, dist.low, dist.high)


def fail_dead(study: optuna.Study, distributions: dict[str, BaseDistribution]) -> None:
    """Fail RUNNING trials whose process is gone, so that their points are enqueued again.

    Three ways to know: on any host, no heartbeat for ``GRACE_PERIOD_S`` (Optuna's
    ``fail_stale_trials``); on this host, at once, its pid has ended; and a trial never
    tagged with host and heartbeat (its process died between claiming and tagging it) once it
    is older than the grace period; such a trial gets its enqueued parameters first, so that
    every failed trial says which point it was.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    untagged_before = datetime.now() - timedelta(seconds=GRACE_PERIOD_S)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") == host and not alive(int(attrs.get("pid", -1))):
            why = "its process ended"
        elif "host" not in attrs and (trial.datetime_start or datetime.now()) < untagged_before:
            why = "its process stopped before tagging it"
        else:
            continue
        with suppress(optuna.exceptions.UpdateFinishedTrialError):  # another process was first
            if not trial.params and (fixed := waiting_params(trial)):
                live = running_trial(study, trial)
                for name in fixed:
                    suggest(live, name, distributions[name])
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        logger.info("trial %d of %s: %s; marked failed", trial.number, study.study_name, why)


def running_elsewhere(study: optuna.Study) -> list[str]:
    """The hosts of RUNNING trials of other processes (one entry a trial): alive, or gone
    with a heartbeat younger than ``GRACE_PERIOD_S`` (another machine killed a moment ago)."""
    me = (socket.gethostname(), os.getpid())
    return [
        str(t.user_attrs.get("host", "an unknown host"))
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if (t.user_attrs.get("host"), t.user_attrs.get("pid")) != me
    ]


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs. A zombie (it ended, and nothing has
    reaped it yet: a killed coordinator's workers in a container whose init reaps late) does
    not: ``kill(pid, 0)`` alone would call it alive and leave its trial RUNNING."""
    if pid <= 0 or pid == os.getpid():  # a trial of this very process cannot be running yet
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Linux's ``/proc/<pid>/stat`` state Z (zombie) or X (dead); False where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def tag(storage: optuna.storages.BaseStorage, trial: optuna.Trial) -> None:
    """Mark a trial as this process's: its host and pid, and its first heartbeat."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    record_heartbeat(storage, trial)


def fail_trials(trials: Sequence[tuple[optuna.Study, optuna.Trial]]) -> None:
    for study, trial in trials:
        # Another process may have failed it first (its heartbeat looked stale).
        with suppress(optuna.exceptions.UpdateFinishedTrialError):
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


@contextmanager
def heartbeats(
    storage: optuna.storages.BaseStorage, trials: Sequence[optuna.Trial]
) -> Iterator[None]:
    """Record a heartbeat for each trial in flight every ``heartbeat_interval`` seconds, from a
    thread, while the main thread trains them."""
    interval = heartbeat_interval(storage)
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial in trials:
                try:
                    record_heartbeat(storage, trial)
                except Exception as exc:  # the main thread reports a lost storage
                    logger.debug("heartbeat of trial %d: %s", trial.number, exc)

    thread = threading.Thread(target=beat, name="gammatune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
