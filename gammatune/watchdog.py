"""A bounded wait on a database server: no statement waits past ``WAIT_S``.

Two ways a server stops answering after the connection is made. Another session holds a lock
on the study's tables: the server itself cancels the wait (``lock_timeout`` and
``statement_timeout``, set on each connection by :func:`server_options`). The server's process
is frozen (stopped, swapped out, a VM paused): nothing on its side runs, and its kernel still
acknowledges every packet, so neither TCP keepalives nor a cancel request reach an end. For
that one, this process cuts the connection's socket once a statement (or a commit, or the pool's
ping) has waited ``WAIT_S`` plus a margin: the driver then fails the statement, and the storage
error is one line (see ``storage.storage_errors``).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from typing import Any

WAIT_S = 60  # the longest a statement may wait on a server (a lock, a frozen process)
_MARGIN_S = 5  # past the server's own timeouts, which say more when they can fire
_TICK_S = 0.5


def server_options() -> dict[str, Any]:
    """libpq connection arguments: the server cancels a statement, or a wait for a lock,
    after ``WAIT_S``; TCP keepalives find a server whose machine is gone."""
    limit_ms = WAIT_S * 1000
    return {
        "options": f"-c lock_timeout={limit_ms} -c statement_timeout={limit_ms}",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def watch(engine: Any) -> None:
    """Cut any connection of ``engine`` (a SQLAlchemy engine on a server) whose statement,
    commit, rollback or ping has waited past ``WAIT_S`` plus a margin."""
    from sqlalchemy import event

    def arm(connection: Any, *_: Any) -> None:
        _WATCHDOG.arm(connection.connection.dbapi_connection)

    def disarm(connection: Any, *_: Any) -> None:
        _WATCHDOG.disarm(connection.connection.dbapi_connection)

    for name in ("before_cursor_execute", "commit", "rollback"):
        event.listen(engine, name, arm)
    event.listen(engine, "after_cursor_execute", disarm)

    def on_error(context: Any) -> None:  # the server's own timeouts: Optuna retries, then fails
        if re.search("due to (lock|statement) timeout", str(context.original_exception)):
            _WATCHDOG.n_ended += 1

    event.listen(engine, "handle_error", on_error)
    event.listen(engine.pool, "checkin", lambda dbapi, _: _WATCHDOG.disarm(dbapi))
    ping = engine.dialect.do_ping

    def watched_ping(dbapi_connection: Any) -> bool:
        _WATCHDOG.arm(dbapi_connection)
        try:
            return bool(ping(dbapi_connection))
        finally:
            _WATCHDOG.disarm(dbapi_connection)

    engine.dialect.do_ping = watched_ping


def waits_ended() -> int:
    """How many statements of this process have been ended for waiting past ``WAIT_S``: by
    the server's timeouts, or by cutting their connection."""
    return _WATCHDOG.n_ended


class _Watchdog:
    """One daemon thread per process, started at the first statement it watches."""

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.n_ended = 0

    def arm(self, dbapi_connection: Any) -> None:
        deadline = time.monotonic() + WAIT_S + _MARGIN_S
        with self._lock:
            self._armed[id(dbapi_connection)] = (deadline, dbapi_connection)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gammatune-watchdog")
                self._thread.daemon = True
                self._thread.start()

    def disarm(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._armed.pop(id(dbapi_connection), None)

    def _run(self) -> None:
        while True:
            time.sleep(_TICK_S)
            now = time.monotonic()
            with self._lock:
                late = [(k, c) for k, (deadline, c) in self._armed.items() if deadline < now]
                for key, _ in late:
                    del self._armed[key]
            for _, connection in late:
                self.n_ended += 1
                _cut(connection)


def _cut(dbapi_connection: Any) -> None:
    """Shut the connection's socket down: the blocked driver call returns with an error."""
    try:
        duplicate = socket.socket(fileno=os.dup(dbapi_connection.fileno()))
    except (OSError, AttributeError, ValueError):
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        duplicate.close()


_WATCHDOG = _Watchdog()
