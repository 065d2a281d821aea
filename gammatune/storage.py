"""Where a study and its trial records live: the Optuna storage (SQLite in the run folder by
default, or any URL, e.g. PostgreSQL), and per-sample scores beside it in the run folder.

This is the contract between tuning (which writes) and the report (which reads): a finished
trial's :class:`~gammatune.record.TrialRecord` is one user attribute, ``result``.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna

from gammatune.config import Config
from gammatune.errors import StudyError
from gammatune.record import SampleScores, TrialRecord

Stage = Literal["baseline", "search", "refine", "confirm"]
STAGES: tuple[Stage, ...] = ("baseline", "search", "refine", "confirm")
RESULT = "result"  # the user attribute that holds a finished trial's record


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


def save_record(trial: optuna.Trial, record: TrialRecord) -> None:
    """Store a finished trial's record as one user attribute (one write: on SQLite each
    attribute is a transaction of about 1 ms). :func:`load_record` reads it back."""
    trial.set_user_attr(RESULT, record.to_json())


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


def save_scores(config: Config, name: str, scores: SampleScores) -> str:
    """Write per-sample scores to ``runs/<name>/scores/<name>.npz``; return the path relative
    to the run folder (stored in the record)."""
    relative = Path("scores") / f"{name}.npz"
    path = config.run_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        val=scores.val.astype(np.float32),
        test=scores.test.astype(np.float32),
        val_labels=scores.val_labels.astype(np.int32),
        test_labels=scores.test_labels.astype(np.int32),
    )
    return relative.as_posix()


def load_scores_file(config: Config, scores_file: str) -> SampleScores | None:
    """The per-sample scores a record references (its ``scores_file``), or None where the file
    is not here (a study shared through a server whose trials ran on other machines)."""
    path = config.run_dir / scores_file
    if not path.is_file():
        return None
    with np.load(path) as data:
        return SampleScores(**{k: data[k] for k in ("val", "test", "val_labels", "test_labels")})


def load_study(
    config: Config, stage: Stage, storage: optuna.storages.BaseStorage
) -> optuna.Study | None:
    """Return a stage's study, or None when it has not been run."""
    # Names only: study summaries would read (and copy) every trial of every study.
    name = study_name(config, stage)
    exists = name in optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage) if exists else None
