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
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from storage import schema

T = TypeVar("T")

LOG = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
"""How long an operation waits for another process to release the database file."""


class DatabaseBusy(RuntimeError):
    """Another process kept the database locked for longer than the timeout."""


class SchemaTooNew(ValueError):
    """The database was written by a newer Quorum (a one-line refusal, not a crash)."""


class ReadOnlyDatabase(PermissionError):
    """A write to a database file (or folder) this process may not write."""


def _stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version stored in the file, without writing; None for a file without a schema."""
    try:
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    except duckdb.CatalogException:
        return None
    return int(row[0]) if row and row[0] is not None else 0


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "already open" in text


LINGER_S = 0.3
"""Seconds a process keeps a database file open after its last session ends, once another process
has asked for the file (see :data:`WANT_SUFFIX`).

One label action on a page runs about ten short transactions; opening the file costs ~20 ms each
time, so a short linger lets a burst share one open while other processes (the command line, a
second server) still get the file between bursts, retrying with back-off as usual."""


MAX_HOLD_S = 1.0
"""A process that has kept a file open this long, and is asked for it, closes it when idle and lets
others in."""
YIELD_S = 0.1
"""How long it then stays away; waiting processes retry at least this often."""

WANT_SUFFIX = ".want"
"""A process that finds the file locked touches ``<file>.want`` on every retry. The holder keeps the
file open while nobody asks (no reopening, no checkpoint between two key presses, the cached reads
stay valid) and lets go, as above, while the signal is fresh."""
WANT_FRESH_S = 1.0
"""A signal older than this is stale (its process got the file, gave up or died)."""
WANT_POLL_S = 0.1
"""How often an idle holder looks for a signal."""


def _want_file(key: str) -> str:
    return key + WANT_SUFFIX


def _wanted(key: str) -> bool:
    """Whether another process asked for the file within the last :data:`WANT_FRESH_S`."""
    try:
        return time.time() - os.stat(_want_file(key)).st_mtime < WANT_FRESH_S
    except OSError:
        return False


def _ask_for(key: str) -> None:
    try:
        with open(_want_file(key), "a"):
            pass
        os.utime(_want_file(key))
    except OSError:  # a read-only folder: the holder still lets go after MAX_HOLD_S of idling
        pass


class _SharedInstances:
    """Reference-counted open DuckDB instances, one per file, for the sessions of this process."""

    def __init__(self, linger_s: float = LINGER_S) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, list] = {}  # key -> [connection, users, opened_at, close_at]
        self._timers: set[threading.Timer] = set()  # at most one pending: the next idle file due to close
        self._stopping = False
        self.linger_s = linger_s
        self.keep_until_wanted = True
        """Keep an idle file open until another process asks for it (False: close after the linger)."""

    def acquire(self, key: str, opener) -> duckdb.DuckDBPyConnection:
        while True:
            with self._lock:
                entry = self._open.get(key)
                if (entry is not None and entry[1] == 0 and time.monotonic() - entry[2] > MAX_HOLD_S
                        and _wanted(key)):
                    del self._open[key]  # held long enough: give other processes a turn
                    entry[0].close()
                    entry = None
                    pause = True
                else:
                    pause = False
                if not pause:
                    if entry is None:
                        entry = self._open[key] = [opener(), 0, time.monotonic(), 0.0]
                    entry[1] += 1
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
            entry[3] = time.monotonic() + self.linger_s  # close at this time unless used again
            if self._timers:  # the one pending timer will find it (a key press runs dozens of sessions)
                return
            timer = threading.Timer(self.linger_s, self._close_idle_due)
            timer.args = (timer,)
            timer.daemon = True
            self._timers.add(timer)
        timer.start()

    def _close_idle_due(self, timer: threading.Timer | None = None) -> None:
        """Close the files idle past their linger that another process asks for; while any idle file
        stays open, look again (for the next one due, or for a signal)."""
        with self._lock:
            self._timers.discard(timer)
            now = time.monotonic()
            due = []
            for key, entry in list(self._open.items()):
                if entry[1] == 0 and entry[3] <= now and (self.keep_until_wanted is False or _wanted(key)):
                    del self._open[key]
                    entry[0].close()
                elif entry[1] == 0:
                    due.append(max(entry[3], now + WANT_POLL_S))
            if not due or self._stopping:
                return
            nxt = threading.Timer(max(min(due) - now, 0.01), self._close_idle_due)
            nxt.args = (nxt,)
            nxt.daemon = True
            self._timers.add(nxt)
        nxt.start()

    def close_idle(self, *, stop_timers: bool = False) -> None:
        """Close every instance no session is using now (before handing the file to another process).

        ``stop_timers`` also cancels and joins the pending linger timers: at process exit no thread may
        still be inside DuckDB while the interpreter shuts down (a thread the interpreter stops inside
        native code aborts the whole process after it has finished its work).
        """
        with self._lock:
            timers = list(self._timers) if stop_timers else []
            self._stopping = self._stopping or stop_timers
            for key in [k for k, e in self._open.items() if e[1] == 0]:
                self._open.pop(key)[0].close()
        for timer in timers:
            timer.cancel()
            timer.join()
        with self._lock:
            self._timers.difference_update(timers)
            self._stopping = False


_INSTANCES = _SharedInstances()
"""The process's open database files; the one piece of process-wide state in storage."""


def release_files(*, stop_timers: bool = False) -> None:
    """Close this process's idle database files now instead of after the linger (``stop_timers``: and
    stop every linger timer, as at exit)."""
    _INSTANCES.close_idle(stop_timers=stop_timers)


def _at_exit() -> None:
    release_files(stop_timers=True)


atexit.register(_at_exit)  # a lingering file is closed cleanly when the process ends, its timers stopped


class Database:
    """A DuckDB database file opened for one transaction at a time.

    Parameters
    ----------
    path
        The ``.duckdb`` file; created (with the current schema) when missing.
    timeout
        Seconds to keep retrying while another process holds the file.
    read_only
        Open the file read-only; by default when the file exists and it, or its folder, is not
        writable. Reads work then; a write raises :class:`ReadOnlyDatabase`.
    """

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT_S,
                 read_only: bool | None = None) -> None:
        self.path = Path(path)
        self.timeout = timeout
        if read_only is None:
            read_only = self.path.exists() and not (os.access(self.path, os.W_OK)
                                                    and os.access(self.path.parent, os.W_OK))
        self.read_only = bool(read_only)
        self._migrated = False
        self._lock = threading.Lock()
        self._reads: dict[str, tuple[tuple, object]] = {}  # key -> (generation, value): see cached()

    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        asked = False
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                if _is_lock_error(exc):
                    _ask_for(str(self.path.resolve()))  # the holder lets go once idle
                    asked = True
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    if _is_lock_error(exc):
                        raise DatabaseBusy(
                            f"{self.path} stayed locked by another process for {self.timeout:.0f} s"
                        ) from exc
                    raise
                time.sleep(delay * (0.5 + random.random()))  # jitter: no lock-step retries
                delay = min(delay * 2, YIELD_S / 2)  # never sleep through another process's pause
            else:
                if asked:  # got it: the signal is spent (another waiter renews its own)
                    try:
                        os.unlink(_want_file(str(self.path.resolve())))
                    except OSError:
                        pass
                return con

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
        except duckdb.Error as exc:
            if self.read_only and "read-only" in str(exc).lower():
                raise ReadOnlyDatabase(self._read_only_reason("it cannot be changed")) from exc
            raise
        finally:
            _INSTANCES.release(key, con)

    def generation(self) -> tuple | None:
        """A token that changes whenever a transaction commits a change to the file, in this process or in
        another: the size and modification time of the file and of its write-ahead log (each commit
        appends to the log; a checkpoint rewrites the file and removes the log). Costs two ``stat``
        calls and no connection; None while the file does not exist."""
        out = []
        for path in (self.path, self._wal):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                if path is self.path:
                    return None
                out.append(None)
            else:
                out.append((st.st_size, st.st_mtime_ns))
        return tuple(out)

    @property
    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + ".wal")

    def cached(self, key: str, read: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``read(con)`` in one transaction, memoised until the database changes (:meth:`generation`).

        For the small reads every page run repeats (settings, classes, the newest round, the current
        labels): a key press re-reads them once, not once per call. The generation is taken before the
        read, so a commit racing the read leaves the value under the older token and it is read again.
        The value is shared: callers must not change it.
        """
        gen = self.generation()
        hit = self._reads.get(key)
        if gen is not None and hit is not None and hit[0] == gen:
            return hit[1]  # type: ignore[return-value]
        with self.session() as con:
            value = read(con)
        if gen is not None:
            self._reads[key] = (gen, value)
        return value

    def _read_only_reason(self, what: str) -> str:
        return (f"this project is read-only: {self.path} (or its folder) is not writable, so {what}; "
                "read-only commands (rounds, stats, export elsewhere, check) still work")

    def _check_version(self, version: int | None) -> None:
        """Refuse a file written by a newer Quorum, and (read-only) one that would need migrating."""
        latest = len(schema.MIGRATIONS)
        if version is not None and version > latest:
            raise SchemaTooNew(f"{self.path} has schema version {version}, newer than this Quorum's ({latest}); "
                               "upgrade Quorum to open this project")
        if self.read_only and (version or 0) < latest:
            raise ReadOnlyDatabase(self._read_only_reason(
                f"its schema (version {version or 0}) cannot be upgraded to version {latest}"))

    def migrate(self) -> int:
        """Bring the schema up to date; returns the schema version."""
        with self._lock:
            if not self.read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            key = str(self.path.resolve())
            con = _INSTANCES.acquire(key, self._open)
            try:
                version = _stored_version(con)
                self._check_version(version)
                if not self.read_only:
                    version = schema.migrate(con)
            finally:
                _INSTANCES.release(key, con)
            self._migrated = True
            return version
