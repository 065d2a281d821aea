"""The Optuna storage: SQLite in the run folder by default, or any URL (e.g. PostgreSQL)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # Windows: one process per study there
    fcntl = None  # type: ignore[assignment]

import optuna

from gammatune.config import Config
from gammatune.errors import StudyError

Stage = Literal["baseline", "search", "refine"]
STAGES: tuple[Stage, ...] = ("baseline", "search", "refine")
RESULT = "result"  # the user attribute that holds a finished trial's attributes


def study_name(config: Config, stage: Stage) -> str:
    """Return the Optuna study name of a stage, e.g. ``'fraud-demo.search'``."""
    return f"{config.name}.{stage}"


def open_storage(config: Config) -> optuna.storages.BaseStorage:
    """Open (and create) the experiment's Optuna storage.

    Raises:
        StudyError: The storage URL is malformed or cannot be reached.
    """
    import sqlalchemy.exc

    url = config.storage_url
    if url.startswith("sqlite:///"):
        if config.storage is None:
            make_run_dir(config)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise StudyError(f"storage: cannot open {_redact(url)}: {reason}") from None
    if url.startswith("sqlite:///"):
        _tune_sqlite(storage)
    # Close the pooled connections when the storage goes, or at exit: SQLite then folds its
    # write-ahead log into the .db file, so that the file alone holds the whole study.
    weakref.finalize(storage, storage.engine.dispose)
    return storage


@contextmanager
def claim_lock(storage: optuna.storages.BaseStorage) -> Iterator[None]:
    """Serialize claiming trials between processes that share a SQLite file.

    SQLite ignores ``SELECT ... FOR UPDATE``, so two workers could both see a waiting trial
    and both start it; a file lock beside the database makes the claim atomic. Server
    databases (PostgreSQL, MySQL) lock the row themselves, and need nothing here.
    """
    backend = getattr(storage, "_backend", storage)  # Study wraps the RDB storage in a cache
    engine = getattr(backend, "engine", None)
    if engine is None or engine.url.get_backend_name() != "sqlite" or fcntl is None:
        yield
        return
    with open(f"{engine.url.database}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def _redact(url: str) -> str:
    """Hide a password in a storage URL."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url


def save_result(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Store a finished trial's attributes (metrics, curves, settings) as one user attribute.

    One write: on SQLite each user attribute is a transaction of about 1 ms, and a trial has
    about twenty. :func:`trial_attrs` reads them back.
    """
    trial.set_user_attr(RESULT, attrs)


def trial_attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's user attributes, with those :func:`save_result` stored spread out."""
    attrs = dict(trial.user_attrs)
    attrs.update(attrs.pop(RESULT, {}))
    return attrs


def load_study(
    config: Config, stage: Stage, storage: optuna.storages.BaseStorage
) -> optuna.Study | None:
    """Return a stage's study, or None when it has not been run."""
    # Names only: study summaries would read (and copy) every trial of every study.
    name = study_name(config, stage)
    exists = name in optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage) if exists else None
