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


class _SharedInstances:
    """Reference-counted open DuckDB instances, one per file, for the sessions of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[duckdb.DuckDBPyConnection, int]] = {}

    def acquire(self, key: str, opener) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if key in self._open:
                base, count = self._open[key]
            else:
                base, count = opener(), 0
            self._open[key] = (base, count + 1)
            return base.cursor()

    def release(self, key: str, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            cursor.close()
            base, count = self._open[key]
            if count <= 1:
                del self._open[key]
                base.close()
            else:
                self._open[key] = (base, count - 1)


_INSTANCES = _SharedInstances()
"""The process's open database files; the one piece of process-wide state in storage."""


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
                delay = min(delay * 2, 0.25)

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
