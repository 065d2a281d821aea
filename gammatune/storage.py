"""Where a study and its trial records live: the Optuna storage (SQLite in the run folder by
default, or any URL, e.g. PostgreSQL), and per-sample scores beside it in the run folder.

This is the contract between tuning (which writes) and the report (which reads): a finished
trial's :class:`~gammatune.record.TrialRecord` is one user attribute, ``result``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from shutil import disk_usage
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # Windows: no lock around creating a SQLite file
    fcntl = None  # type: ignore[assignment]

import optuna

from gammatune import watchdog
from gammatune.config import Config
from gammatune.damage import damaged_value
from gammatune.errors import StudyError, redact, secret_of
from gammatune.journal import JOURNAL, journal_lock_file, open_journal
from gammatune.record import TrialRecord

Stage = Literal["baseline", "search", "refine", "confirm"]
STAGES: tuple[Stage, ...] = ("baseline", "search", "refine", "confirm")
RESULT = "result"  # the user attribute that holds a finished trial's record
# Top-level attributes: what ranks a multi-objective study's trials; an unmet constraint.
RANKED_BY, FEASIBLE = "ranked_by", "feasible"
FINGERPRINT = "fingerprint"  # the study attribute: what its trials were trained on


def study_name(config: Config, stage: Stage) -> str:
    """Return the Optuna study name of a stage, e.g. ``'fraud-demo.search'``."""
    return f"{config.name}.{stage}"


# Heartbeats (Optuna's, public): a process records one per running trial every interval; a
# trial without one for the grace period is failed by whoever opens the stage next, on any
# host, and its point is enqueued again. The grace period outlasts SQLite's 60 s lock timeout,
# so that a heartbeat waiting on a busy file does not look dead.
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 90
CONNECT_TIMEOUT_S = 10  # a server that accepts and never answers fails instead of hanging
SQLITE_TIMEOUT_S = 60  # how long a write waits for another process's lock on a SQLite file

# The driver module SQLAlchemy names in an ImportError -> the pip package that provides it.
_DRIVERS = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
}


def open_storage(config: Config) -> optuna.storages.BaseStorage:
    """Open (and create) the experiment's Optuna storage, with heartbeats where it has them.

    A plain ``postgresql://`` URL uses whichever PostgreSQL driver is installed (psycopg 3,
    else psycopg2); ``journal://`` is a JournalStorage file (:func:`open_journal`).

    Raises:
        StudyError: The storage URL is malformed, its driver is missing, or it cannot be
            reached (within ``CONNECT_TIMEOUT_S`` for a server).
    """
    import sqlalchemy.exc

    url = config.storage_url
    if url.startswith(JOURNAL):
        if not Path(url.removeprefix(JOURNAL)).is_absolute():
            make_run_dir(config)
        return open_journal(url, config.run_dir)
    if url.startswith("sqlite:///"):
        if config.storage is None:
            make_run_dir(config)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        url = _with_driver(_quote_at(url))
        engine_kwargs = {"pool_pre_ping": True}
        if url.startswith("postgresql"):  # bounded: connecting, locks, a frozen server
            engine_kwargs["connect_args"] = {
                "connect_timeout": CONNECT_TIMEOUT_S,
                **watchdog.server_options(),
            }
    try:
        storage = _create(url, engine_kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        missing = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
        if isinstance(missing, ModuleNotFoundError):  # Optuna re-raises it as an ImportError
            package = _DRIVERS.get((missing.name or "").split(".")[0], missing.name)
            raise StudyError(
                f"storage: cannot open {redact(url)}: its driver is not installed "
                f"(no module {missing.name!r}); pip install {package!r}."
            ) from None
        raise StudyError(_failed("cannot open", exc, url)) from None
    if url.startswith("sqlite:///"):
        _tune_sqlite(storage)
    elif url.startswith("postgresql"):
        watchdog.watch(storage.engine)
    # Close the pooled connections when the storage goes, or at exit: SQLite then folds its
    # write-ahead log into the .db file, so that the file alone holds the whole study.
    weakref.finalize(storage, storage.engine.dispose)
    return storage


def _create(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage, whose first opening creates the tables: two processes creating
    one fresh database at once failed with ``UNIQUE constraint failed: alembic_version``. A
    SQLite file is created under its lock file; a server's creation is tried again."""
    import sqlalchemy.exc

    for attempt in range(1, 4):
        try:
            with _sqlite_lock(url), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=GRACE_PERIOD_S,
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 3:
                raise
            time.sleep(0.2 * attempt)  # another process created it at this very moment
    raise AssertionError("unreachable")


@contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    """Hold ``<file>.lock`` (the claim lock's file) while a SQLite file's tables are made."""
    if not url.startswith("sqlite:///") or fcntl is None:
        yield
        return
    with open(f"{url.removeprefix('sqlite:///')}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_file(storage: optuna.storages.BaseStorage) -> str | None:
    """The lock file beside a SQLite or journal file (``study.db.lock``), else None."""
    url = str(getattr(storage, "url", ""))
    if url.startswith("sqlite:///"):
        return f"{url.removeprefix('sqlite:///')}.lock"
    return journal_lock_file(storage)


def _quote_at(url: str) -> str:
    """Percent-encode a raw ``@`` in the password (``me:p@ss@db`` -> ``me:p%40ss@db``), as a URL
    must: SQLAlchemy would end the password at the first ``@`` and send the rest of it to the
    server as part of the host name, which its error then shows."""
    scheme, sep, rest = url.partition("://")
    base, query_sep, query = rest.partition("?")
    userinfo, at, host = base.rpartition("@")  # the last @ ends the user's part, as in redact
    user, colon, password = userinfo.partition(":")
    if not (sep and at and colon and "@" in password):
        return url
    password = password.replace("@", "%40")
    return f"{scheme}{sep}{user}:{password}@{host}{query_sep}{query}"


def _with_driver(url: str) -> str:
    """``postgresql://`` -> the installed driver's dialect. SQLAlchemy 2.1 reads the plain
    scheme as psycopg 3; psycopg2 users (the older habit) keep working."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    for module, dialect in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{dialect}://{rest}"
    raise StudyError(
        f"storage: cannot open {redact(url)}: no PostgreSQL driver is installed; "
        "pip install 'gammatune[postgres]' (or 'psycopg[binary]')."
    )


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a storage lost after start-up (a server stopped, a locked or damaged SQLite file,
    a full disk) into one :class:`StudyError` line, password hidden.

    What was committed stays; trials in flight are failed and retried by the next run (see
    ``HEARTBEAT_INTERVAL_S``).
    """
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise StudyError(_failed("lost", exc, url)) from None
    except json.JSONDecodeError:  # Optuna reading a stored value that is not JSON
        found = None if url.startswith(JOURNAL) else damaged_value(_with_driver(url), redact(url))
        if found is None:
            raise
        raise StudyError(found) from None
    except OSError as exc:  # a full or read-only run folder, a journal file gone
        line = f"storage: cannot write {exc.filename or redact(url)}: {exc.strerror}; {_KEPT}"
        raise StudyError(f"{line}: {_FREE}") from None


_KEPT, _FREE = "the completed trials are kept", "free the disk and run the same command again."
_BACK = "run the same command again once it is back."


def _failed(what: str, exc: BaseException, url: str) -> str:
    """One line for a storage that failed: locked, full, or lost (``what``: how it failed)."""
    reason, shown = _reason(exc, url), redact(url)
    if reason.startswith("database is locked"):  # another process holds SQLite's write lock
        return (f"storage: {shown} is locked by another process (waited {SQLITE_TIMEOUT_S} s); "
                f"{_KEPT}: close that process (a sqlite3 shell, a backup) and run the same "
                "command again.")  # fmt: skip
    if reason.startswith("database or disk is full") or (
        reason.startswith("disk I/O error") and _disk_full(url)  # SQLite's WAL index, at open
    ):
        return f"storage: cannot write {shown}: the disk is full; {_KEPT}: {_FREE}"
    if what == "cannot open":
        return f"storage: cannot open {shown}: {reason}"
    if watchdog.waits_ended():
        return (f"storage: {shown} did not answer for {watchdog.WAIT_S} s (a frozen server, or "
                f"a lock held by another session); {_KEPT}: run the same command again once it "
                "answers.")  # fmt: skip
    if reason.startswith("database disk image is malformed"):
        return f"storage: {shown} is damaged: {reason.rstrip('.')}; restore it from a backup."
    return f"storage: lost {shown}: {reason.rstrip('.')}; {_KEPT}: {_BACK}"


def _disk_full(url: str) -> bool:  # less than 1 MiB free beside a SQLite file
    folder = Path(url.removeprefix("sqlite:///")).parent
    return url.startswith("sqlite:///") and folder.is_dir() and disk_usage(folder).free < 1 << 20


def _reason(exc: BaseException, url: str) -> str:
    """The driver's own first line (Optuna wraps it in a misleading "invalid data in the
    commit"), without SQLAlchemy's background link, and with the password hidden."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    inner = getattr(cause, "orig", None) or cause
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    reason = lines[0] if lines else type(inner).__name__
    secret = secret_of(url)
    if secret:  # as written, and as sent (a raw @ encoded)
        reason = reason.replace(secret, "***").replace(secret.replace("@", "%40"), "***")
    return reason.split(" (Background on this error")[0].rstrip(".") + "."


def make_run_dir(config: Config) -> None:
    """Create ``output_dir/name``.

    Raises:
        StudyError: It cannot be created (permissions, a file in the way).
    """
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"output_dir: cannot create {config.run_dir}: {exc.strerror}.") from None


def _tune_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """WAL lets several processes share the file; NORMAL sync avoids an fsync per attribute."""
    from sqlalchemy import event

    def on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect with the pragmas


def save_record(trial: optuna.Trial, record: TrialRecord) -> None:
    """Store a finished trial's record as one user attribute, and its :func:`key_figures` as
    their own (on SQLite each attribute is a transaction of about 1 ms). :func:`load_record`
    reads the record back."""
    trial.set_user_attr(RESULT, record.to_json())
    for key, value in key_figures(record).items():
        trial.set_user_attr(key, value)


# Validation figures as top-level attributes (optuna-dashboard sorts by them); never test's.
KEY_FIGURES = ("f1", "precision", "recall", "f1_macro", "pr_auc")


def key_figures(record: TrialRecord) -> dict[str, Any]:
    """The top-level attributes of a finished trial: ``val_<figure>`` for :data:`KEY_FIGURES`
    (finite ones), ``ranked_by`` for a multi-objective study, ``feasible`` when it is False."""
    figures: dict[str, Any] = {}
    if record.val is not None:
        for name in KEY_FIGURES:
            value = getattr(record.val, name)
            if value is not None and math.isfinite(value):
                figures[f"val_{name}"] = round(float(value), 6)
    if record.values is not None:
        figures[RANKED_BY] = record.value
    if not record.feasible:
        figures[FEASIBLE] = False
    return figures


def trial_value(trial: optuna.trial.FrozenTrial) -> float | None:
    """The metric that ranks a completed trial (``config.metric``), or None."""
    if RANKED_BY in trial.user_attrs:
        return float(trial.user_attrs[RANKED_BY])
    return None if not trial.values else float(trial.values[0])


def rank(trial: optuna.trial.FrozenTrial) -> tuple[bool, float, float]:
    """How trials rank: those meeting ``constraints`` first, then by :func:`trial_value`, a
    tie (every weighted baseline at F1 0) by validation PR-AUC, which needs no threshold."""
    value, pr_auc = trial_value(trial), trial.user_attrs.get("val_pr_auc")
    return (bool(trial.user_attrs.get(FEASIBLE, True)), -math.inf if value is None else value,
            -math.inf if pr_auc is None else float(pr_auc))  # fmt: skip


def load_record(trial: optuna.trial.FrozenTrial) -> TrialRecord | None:
    """A trial's record, or None for a trial that never finished (interrupted, running).

    Raises:
        StudyError: The record was written by a newer gammatune.
    """
    data = trial.user_attrs.get(RESULT)
    if data is None:
        return None
    try:
        return TrialRecord.from_json(data, params=trial.params)
    except (ValueError, TypeError, KeyError) as exc:
        raise StudyError(f"trial {trial.number}: cannot read its record: {exc}.") from None


def load_study(
    config: Config, stage: Stage, storage: optuna.storages.BaseStorage
) -> optuna.Study | None:
    """Return a stage's study, or None when it has not been run."""
    # Names only: study summaries would read (and copy) every trial of every study.
    name = study_name(config, stage)
    exists = name in optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage) if exists else None
