"""The background retrain loop: one worker per project, shared by every session of a server.

The worker wakes when ``min_new_events`` annotation events have arrived since the last round, or
when ``max_wait_s`` has passed with at least one new event, or when triggered; it trains a round on
a snapshot (``labeling.model.rounds.train_round``) and goes back to sleep. Training runs in this thread
and never holds the database, so no page waits for it.

Across processes a file lock (``.quorum/worker.lock``) makes sure that only one worker trains a
project: a second server, or a ``train`` from the command line while the server runs, does not
start a competing loop. The lock holder also marks rounds left ``running`` by a crashed process as
``discarded`` when it starts.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from labeling.project import Project
from labeling.model.rounds import train_round
from storage import labels as labels_q
from storage import rounds as rounds_q

LOG = logging.getLogger(__name__)

try:  # POSIX
    import fcntl

    def _try_lock(fh) -> bool:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fh) -> bool:
        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False


@dataclass
class WorkerStatus:
    state: str = "stopped"  # stopped | idle | training | paused | standby (another process owns it)
    rounds_trained: int = 0
    last_round: int | None = None
    last_error: str | None = None
    pending_events: int = 0
    last_started: float | None = None
    last_finished: float | None = None
    history: list[str] = field(default_factory=list)


class RetrainWorker:
    """A daemon thread that keeps a project's model round fresh."""

    def __init__(self, root: str | Path, *, min_new_events: int = 5, max_wait_s: float = 20.0,
                 poll_s: float = 1.0, device: str = "auto", cv: bool = True) -> None:
        self.project = Project(root)
        self.min_new_events = min_new_events
        self.max_wait_s = max_wait_s
        self.poll_s = poll_s
        self.device = device
        self.cv = cv
        self.status = WorkerStatus()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._forced = False
        self._thread: threading.Thread | None = None
        self._lock_file = None

    # ---- control -------------------------------------------------------------------------
    def start(self) -> "RetrainWorker":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"retrain:{self.project.root.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 30) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self.status.state = "stopped"

    def pause(self) -> None:
        self._paused.set()
        self.status.state = "paused"

    def resume(self) -> None:
        self._paused.clear()
        self._wake.set()

    def trigger(self) -> None:
        """Train a round as soon as possible, even without new events."""
        self._forced = True
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    # ---- loop ----------------------------------------------------------------------------
    def _acquire(self) -> bool:
        if self._lock_file is None:
            path = self.project.data_dir / "worker.lock"
            fh = open(path, "a+")
            if not _try_lock(fh):
                fh.close()
                return False
            self._lock_file = fh
            with self.project.db.session() as con:
                n = rounds_q.discard_running(con)
            if n:
                LOG.warning("discarded %d round(s) interrupted by an earlier crash", n)
        return True

    def _last_trained_event(self) -> int:
        with self.project.db.session() as con:
            rounds = rounds_q.list_rounds(con)
            last_event = labels_q.last_event_id(con)
        done = [r["last_event_id"] for r in rounds if r["status"] in ("finished", "failed")]
        trained = max(done) if done else -1
        return last_event - trained if trained >= 0 else last_event + 1

    def _run(self) -> None:
        waiting_since: float | None = None
        while not self._stop.is_set():
            try:
                if not self._acquire():
                    self.status.state = "standby"
                    self._wake.wait(max(self.poll_s, 2.0))
                    self._wake.clear()
                    continue
                if self._paused.is_set() and not self._forced:
                    self.status.state = "paused"
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
                    continue
                pending = self._last_trained_event()
                self.status.pending_events = max(0, pending)
                now = time.monotonic()
                if pending > 0 and waiting_since is None:
                    waiting_since = now
                due = pending >= self.min_new_events or (
                    pending > 0 and waiting_since is not None and now - waiting_since >= self.max_wait_s)
                if due or self._forced:
                    self._forced = False
                    waiting_since = None
                    self._train_once()
                else:
                    self.status.state = "idle"
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
            except Exception as exc:  # noqa: BLE001 - the loop must survive any failure of one round
                # A failed round is recorded (rounds.train_round marks it failed) and shown; the
                # previous round stays in use and the loop goes on.
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                self.status.history.append(self.status.last_error)
                LOG.exception("retrain loop error")
                self._wake.wait(max(self.poll_s, 2.0))
                self._wake.clear()

    def _train_once(self) -> None:
        self.status.state = "training"
        self.status.last_started = time.time()
        try:
            round_id = train_round(self.project, device=self.device, cv=self.cv)
            self.status.last_round = round_id
            self.status.rounds_trained += 1
            self.status.last_error = None
        finally:
            self.status.last_finished = time.time()
            self.status.state = "idle"
