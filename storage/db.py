"""The project database: one DuckDB file shared by several processes.

DuckDB lets a single process hold a database file at a time. Quorum's server, its retrain worker
and the command line all reach the same project, so nothing keeps the file open: every
operation opens it, runs one short transaction and closes it (``Database.session``). When another
process holds the lock, the open is retried with exponential back-off until ``timeout`` seconds
have passed. Heavy outputs (vectors, a round's predictions) live in files beside the database and
are swapped in atomically, so no transaction ever waits on training.

Within one process DuckDB shares one database instance between connections to the same path, so
threads (Streamlit sessions, the retrain worker) each get their own connection and never block on
the file lock.
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
        con = self._open()
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def migrate(self) -> int:
        """Bring the schema up to date; returns the schema version."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._open()
            try:
                version = schema.migrate(con)
            finally:
                con.close()
            self._migrated = True
            return version
