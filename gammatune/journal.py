"""A study in an Optuna JournalStorage file: an append-only log of JSON lines that many
processes on one host share without a server.

Writes take an ``fcntl`` lock, which the kernel lets go when its process dies. A last line cut
short (a kill -9 or a power loss in the middle of a write, a full disk) is set aside whole in
``<file>.torn-<UTC time>`` and cut off under that lock, with one warning: it is an operation
that never completed (Optuna's replay skips it), and a write appended behind it would make
the line before it unreadable for every later command. A damaged line elsewhere is refused.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: Optuna's own journal lock there
    fcntl = None  # type: ignore[assignment]

import optuna

from gammatune.errors import StudyError

logger = logging.getLogger(__name__)
JOURNAL = "journal://"  # an Optuna JournalStorage file: journal:///abs/path, or journal://rel
_BLOCK = 1 << 16


def open_journal(url: str, run_dir: Path) -> optuna.storages.JournalStorage:
    """Open (and create) a JournalStorage file: ``journal:///abs/path/study.log``, or
    ``journal://study.log`` in ``run_dir``.

    Optuna's default lock, a symlink for NFS, stays after a kill -9 and holds the others for
    30 s; this one is the kernel's. JournalStorage has no heartbeats: a dead process's trials
    are found by its pid (this host: a journal's only).

    Raises:
        StudyError: The file cannot be created or read, or a line before its last is damaged.
    """
    path = Path(url.removeprefix(JOURNAL))
    if not path.is_absolute():
        path = run_dir / path
    from optuna.storages.journal import JournalFileBackend

    lock = None if fcntl is None else FileLock(f"{path}.write.lock")
    try:
        if lock is not None:
            cut_torn_tail(path, lock)
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except OSError as exc:
        raise StudyError(f"storage: cannot open {url}: {exc.strerror}.") from None
    except ValueError:  # Optuna's replay: a line that is not JSON, followed by others
        raise StudyError(
            f"storage: {url} is damaged at line {_first_bad_line(path)} (not a whole JSON "
            "line); restore it from a backup."
        ) from None
    _LOCK_FILES[storage] = f"{path}.claim.lock"
    return storage


# Journal storages -> the file that serializes claiming trials (see tuning's claim_lock).
_LOCK_FILES = weakref.WeakKeyDictionary[optuna.storages.BaseStorage, str]()


def journal_lock_file(storage: optuna.storages.BaseStorage) -> str | None:
    """The claim lock file beside a journal file, else None."""
    return _LOCK_FILES.get(storage)


def cut_torn_tail(path: Path, lock: FileLock) -> Path | None:
    """Set aside and cut off a last line that is not a whole JSON line, holding the writers'
    ``lock`` (so that no write is in flight). Returns where the line was kept, or None.

    Raises:
        OSError: The file cannot be read or written.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return None
    lock.acquire()
    try:
        with open(path, "rb+") as handle:
            start = _last_line_start(handle)
            handle.seek(start)
            tail = handle.read()
            if tail.endswith(b"\n") and _is_json(tail):
                return None
            kept = path.with_name(
                f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            )
            kept.write_bytes(tail)
            handle.truncate(start)
            handle.flush()
    finally:
        lock.release()
    logger.warning(
        "storage: %s ended in a torn line (%d bytes: a write cut short); set it aside in %s "
        "and cut it off: it held no completed operation.",
        path, len(tail), kept,
    )  # fmt: skip
    return kept


def _last_line_start(handle: IO[bytes]) -> int:
    """The offset where the file's last line starts (after the newline before it)."""
    end = handle.seek(0, 2)
    position = end - 1  # a final newline ends the last line; it does not start one
    while position > 0:
        low = max(0, position - _BLOCK)
        handle.seek(low)
        found = handle.read(position - low).rfind(b"\n")
        if found >= 0:
            return low + found + 1
        position = low
    return 0


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _first_bad_line(path: Path) -> int:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n") or not _is_json(line):
                return number
    return 0


class FileLock(optuna.storages.journal.JournalFileOpenLock):
    """An exclusive ``fcntl`` lock on a file (Optuna's public lock class, methods replaced)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._path = path
        self._handle: IO[bytes] | None = None
        self._thread = threading.Lock()  # flock does not exclude the threads of one process

    def acquire(self) -> bool:
        self._thread.acquire()
        self._handle = open(self._path, "a+b")  # noqa: SIM115 - held until release()
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        self._thread.release()
