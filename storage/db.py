"""The project database: one DuckDB file shared by several processes.

DuckDB lets a single process hold a database file at a time. Quorum's server, its retrain worker
and the command line all reach the same project, so nothing keeps the file open: every
operation opens it, runs one short transaction and closes it (``Database.session``). When another
process holds the lock, the open is retried with exponential back-off until ``timeout`` seconds
have passed. Heavy outputs (vectors, a round's predictions) live in files beside the database and
are swapped in atomically, so no transaction ever waits on training.

Within one process, concurrent sessions (Streamlit sessions, the retrain worker) share one open
database instance per file and each takes its own cursor from it: DuckDB refuses to attach one
file twice in a process. The instance is closed when the last session of the process ends, so the
file is free for other processes between operations.
"""
from __future__ import annotations

import atexit
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from storage import schema

LOG = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
"""How long an operation waits for another process to release the database file."""


class DatabaseBusy(RuntimeError):
    """Another process kept the database locked for longer than the timeout."""


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "already open" in text


LINGER_S = 0.3
"""Seconds a process keeps a database file open after its last session ends.

One label action on a page runs about ten short transactions; opening the file costs ~20 ms each
time, so a short linger lets a burst share one open while other processes (the command line, a
second server) still get the file between bursts, retrying with back-off as usual."""


MAX_HOLD_S = 1.0
"""A process that has kept a file open this long closes it when idle and lets others in."""
YIELD_S = 0.1
"""How long it then stays away; waiting processes retry at least this often."""


class _SharedInstances:
    """Reference-counted open DuckDB instances, one per file, for the sessions of this process."""

    def __init__(self, linger_s: float = LINGER_S) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, list] = {}  # key -> [connection, users, generation, opened_at]
        self.linger_s = linger_s

    def acquire(self, key: str, opener) -> duckdb.DuckDBPyConnection:
        while True:
            with self._lock:
                entry = self._open.get(key)
                if entry is not None and entry[1] == 0 and time.monotonic() - entry[3] > MAX_HOLD_S:
                    del self._open[key]  # held long enough: give other processes a turn
                    entry[0].close()
                    entry = None
                    pause = True
                else:
                    pause = False
                if not pause:
                    if entry is None:
                        entry = self._open[key] = [opener(), 0, 0, time.monotonic()]
                    entry[1] += 1
                    entry[2] += 1
                    return entry[0].cursor()
            time.sleep(YIELD_S)

    def release(self, key: str, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            cursor.close()
            entry = self._open[key]
            entry[1] -= 1
            if entry[1] > 0:
                return
            if self.linger_s <= 0:
                del self._open[key]
                entry[0].close()
                return
            generation = entry[2]
        timer = threading.Timer(self.linger_s, self._close_if_idle, args=(key, generation))
        timer.daemon = True
        timer.start()

    def _close_if_idle(self, key: str, generation: int) -> None:
        with self._lock:
            entry = self._open.get(key)
            if entry is not None and entry[1] == 0 and entry[2] == generation:
                del self._open[key]
                entry[0].close()

    def close_idle(self) -> None:
        """Close every instance no session is using now (before handing the file to another process)."""
        with self._lock:
            for key in [k for k, e in self._open.items() if e[1] == 0]:
                self._open.pop(key)[0].close()


_INSTANCES = _SharedInstances()
"""The process's open database files; the one piece of process-wide state in storage."""


def release_files() -> None:
    """Close this process's idle database files now instead of after the linger."""
    _INSTANCES.close_idle()


atexit.register(release_files)  # a lingering file is closed cleanly when the process ends


class Database:
    """A DuckDB database file opened for one transaction at a time.

    Parameters
    ----------
    path
        The ``.duckdb`` file; created (with the current schema) when missing.
    timeout
        Seconds to keep retrying while another process holds the file.
    """

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._migrated = False
        self._lock = threading.Lock()

    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                return duckdb.connect(str(self.path))
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    if _is_lock_error(exc):
                        raise DatabaseBusy(
                            f"{self.path} stayed locked by another process for {self.timeout:.0f} s"
                        ) from exc
                    raise
                time.sleep(delay * (0.5 + random.random()))  # jitter: no lock-step retries
                delay = min(delay * 2, YIELD_S / 2)  # never sleep through another process's pause

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, yield a connection inside one transaction, commit and close.

        On an exception the transaction is rolled back and nothing of it is stored.
        """
        if not self._migrated:
            self.migrate()
        key = str(self.path.resolve())
        con = _INSTANCES.acquire(key, self._open)
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            _INSTANCES.release(key, con)

    def migrate(self) -> int:
        """Bring the schema up to date; returns the schema version."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            key = str(self.path.resolve())
            con = _INSTANCES.acquire(key, self._open)
            try:
                version = schema.migrate(con)
            finally:
                _INSTANCES.release(key, con)
            self._migrated = True
            return version
