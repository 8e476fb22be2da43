"""The background retrain loop: one worker per project, shared by every session of a server.

The worker wakes when ``min_new_events`` annotation events have arrived since the last round (one
event while the newest round has fewer than :data:`EARLY_LABELS` labels: the first rounds are when a
person decides whether the suggestions are worth trusting), or when ``max_wait_s`` has passed with
at least one new event, or when triggered; it trains a round on a snapshot and writes its
predictions. Only then, and only while no newer round is due, does it cross-validate that round
(the Model page's held-out figures, suspected errors and auto-accept read them when they land); new
labels interrupt the cross-validation between folds. Training runs in this thread and never holds
the database, so no page waits for it.

Its collaborators are handed in, so the loop can be driven and tested step by step:

- ``project``: the open project (the service's own, so both share one set of caches);
- ``train``: ``train(project) -> round id``; by default a
  :class:`~labeling.model.trainer_process.ProcessTrainer` (each round in a warm child process, away
  from the pages' threads and their GIL), or with ``process=False`` a :class:`RoundTrainer` in this
  thread; both use the worker's device and cross-validation setting;
- ``clock``: a monotonic clock in seconds (``time.monotonic``);
- ``lock``: who may train this project (:class:`FileLock` on ``.quorum/worker.lock``).

Across processes the file lock makes sure that only one worker trains a project: a second server,
or a ``train`` from the command line while the server runs, does not start a competing loop. The
lock holder also marks rounds left ``running`` by a crashed process as ``discarded`` when it starts.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from labeling.project import Project
from storage import external_models as models_q
from storage import labels as labels_q
from storage import rounds as rounds_q

LOG = logging.getLogger(__name__)

HISTORY_SIZE = 50
"""Errors the status keeps (newest last); older ones are dropped."""
EARLY_LABELS = 50
"""Below this many labels in the newest round, every new event makes a round due."""

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


class Lock(Protocol):
    def acquire(self) -> bool:
        """Take the lock without waiting; True when held (again) by this worker."""

    def release(self) -> None:
        ...


class FileLock:
    """An exclusive, non-blocking lock on a file, held until :meth:`release` (or the process ends)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh = None

    def acquire(self) -> bool:
        if self._fh is not None:
            return True
        fh = open(self.path, "a+")
        if not _try_lock(fh):
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RoundTrainer:
    """The worker's default ``train``: one round per call, its predictions written before anything
    else (:func:`labeling.model.rounds.train_round_deferred`); with ``cv`` its cross-validation is
    kept for :meth:`cross_validate`, which the worker runs while no newer round is due."""

    def __init__(self, *, device: str = "auto", cv: bool = True) -> None:
        self.device = device
        self.cv = cv
        self.pending = None

    def __call__(self, project: Project) -> int:
        from labeling.model.rounds import train_round_deferred

        self.pending = None  # an older round's figures are of no use once a newer round is in
        round_id, self.pending = train_round_deferred(project, device=self.device, cv=self.cv)
        return round_id

    def cross_validate(self, project: Project, should_stop: Callable[[], bool]) -> bool | None:
        """Cross-validate the newest round: True when stored, False when interrupted (kept for later),
        None when there is nothing to do."""
        if self.pending is None:
            return None
        if not self.pending.run(project, should_stop=should_stop):
            return False
        self.pending = None
        return True

    @staticmethod
    def warm_up() -> None:
        """Pay the first-call costs (torch's optimiser imports, its thread pool) before the first round."""
        import numpy as np

        from labeling.model.ensemble import EnsembleConfig, fit_ensemble

        rng = np.random.default_rng(0)
        fit_ensemble(rng.standard_normal((8, 4)).astype(np.float32), np.arange(8) % 2, 2,
                     config=EnsembleConfig(steps=2))

    def __repr__(self) -> str:
        return f"RoundTrainer(device={self.device!r}, cv={self.cv}, cross-validation after the predictions)"


@dataclass
class WorkerStatus:
    state: str = "stopped"  # stopped | starting | idle | training | paused | standby (another process owns it)
    rounds_trained: int = 0
    last_round: int | None = None
    last_error: str | None = None
    pending_events: int = 0
    last_started: float | None = None  # wall-clock seconds (time.time) of the newest round's start
    last_finished: float | None = None
    history: deque[str] = field(default_factory=lambda: deque(maxlen=HISTORY_SIZE))
    """The newest errors, at most :data:`HISTORY_SIZE`."""


class RetrainWorker:
    """A daemon thread that keeps a project's model round fresh; :meth:`step` is one turn of its loop."""

    def __init__(self, project: Project | str | Path, *, train: Callable[[Project], int] | None = None,
                 clock: Callable[[], float] = time.monotonic, lock: Lock | None = None,
                 min_new_events: int = 5, max_wait_s: float = 5.0, poll_s: float = 0.5,
                 device: str = "auto", cv: bool = True, early_labels: int = EARLY_LABELS,
                 process: bool = True) -> None:
        self.project = project if isinstance(project, Project) else Project(project)
        if train is None:
            from labeling.model.trainer_process import ProcessTrainer

            train = ProcessTrainer(device=device, cv=cv) if process else RoundTrainer(device=device, cv=cv)
        self.train = train
        self.clock = clock
        self.lock = lock if lock is not None else FileLock(self.project.data_dir / "worker.lock")
        self.min_new_events = min_new_events
        self.early_labels = early_labels
        self.max_wait_s = max_wait_s
        self.poll_s = poll_s
        self._pending_seen: tuple[tuple, tuple[int, int]] | None = None  # (database generation, _pending())
        self.status = WorkerStatus()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._forced = False
        self._owner = False
        # Rounds already running when this worker was made are a crashed process's (or a command line's
        # that started first); one that starts later, e.g. ``train`` from the command line while the
        # server runs, is never mistaken for one.
        with self.project.db.session() as con:
            self._rounds_before = rounds_q.newest_id(con)
        self._waiting_since: float | None = None
        self._thread: threading.Thread | None = None

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
        close = getattr(self.train, "close", None)
        if close is not None:
            close()
        self.lock.release()
        self._owner = False
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
        if not self.lock.acquire():
            return False
        if not self._owner:  # first time this worker holds the lock: clean up after a crash
            self._owner = True
            with self.project.db.session() as con:
                n = rounds_q.discard_running(con, up_to=self._rounds_before)
            if n:
                LOG.warning("discarded %d round(s) interrupted by an earlier crash", n)
        return True

    def pending_events(self) -> int:
        """Annotation events since the newest finished or failed round (all events before any)."""
        return self._pending()[0]

    def _pending(self) -> tuple[int, int]:
        """(events since the newest finished or failed round, labels of the newest finished round).

        Read again only when the database changed (:meth:`storage.db.Database.generation`, two ``stat``
        calls): the worker asks every half second, and every tenth of one while it cross-validates, in
        the server's process, where each query took the GIL from the pages' key presses."""
        gen = self.project.db.generation()
        if gen is not None and self._pending_seen is not None and self._pending_seen[0] == gen:
            return self._pending_seen[1]
        with self.project.db.session() as con:
            trained, n_labels = rounds_q.trained_through(con)
            last_event = labels_q.last_event_id(con)
            models_changed = models_q.changed_since_last_round(con)  # predictions imported or re-weighed
        if models_changed:  # a round is due without new labels
            self._forced = True
        got = (last_event + 1 if trained is None else last_event - trained), n_labels
        if gen is not None:  # taken before the read: a commit racing it makes the next call read again
            self._pending_seen = (gen, got)
        return got

    def _due(self, pending: int, n_labels: int, now: float) -> bool:
        threshold = 1 if n_labels < self.early_labels else self.min_new_events
        return pending >= threshold or (
            pending > 0 and self._waiting_since is not None and now - self._waiting_since >= self.max_wait_s)

    def _round_due(self) -> bool:
        """Whether a newer round is due now (asked between the folds of a cross-validation)."""
        if self._stop.is_set() or self._forced:
            return True
        pending, n_labels = self._pending()
        now = self.clock()
        if pending > 0 and self._waiting_since is None:
            self._waiting_since = now
        return self._due(pending, n_labels, now)

    def step(self) -> str:
        """One turn of the loop: what it did, ``standby``, ``paused``, ``idle``, ``trained``,
        ``cross-validated`` (the newest round's held-out figures stored), ``interrupted`` (that
        cross-validation stopped for a newer round) or ``failed``.

        Never raises: a failed round is recorded (``train_round`` marks it failed), shown in the status
        and its history, and the previous round stays in use.
        """
        try:
            if not self._acquire():
                self.status.state = "standby"
                return "standby"
            if self._paused.is_set() and not self._forced:
                self.status.state = "paused"
                return "paused"
            pending, n_labels = self._pending()
            self.status.pending_events = max(0, pending)
            now = self.clock()
            if pending > 0 and self._waiting_since is None:
                self._waiting_since = now
            if not (self._due(pending, n_labels, now) or self._forced):
                return self._cross_validate()
            self._forced = False
            self._waiting_since = None
            self._train_once()
            return "trained"
        except Exception as exc:  # noqa: BLE001 - the loop must survive any failure of one round
            self.status.last_error = f"{type(exc).__name__}: {exc}"
            self.status.history.append(self.status.last_error)
            self.status.state = "idle"
            LOG.exception("retrain loop error")
            return "failed"

    def _cross_validate(self) -> str:
        """Run the newest round's pending cross-validation, if any, until a newer round is due."""
        run = getattr(self.train, "cross_validate", None)
        self.status.state = "cross-validating"
        done = run(self.project, self._round_due) if run is not None else None
        self.status.state = "idle"
        return {True: "cross-validated", False: "interrupted"}.get(done, "idle")

    def _run(self) -> None:
        # No lower priority for this thread: it shares the pages' GIL, and a thread the scheduler
        # seldom runs while it holds the GIL stalls every page (rounds run niced in their own process).
        warm_up = getattr(self.train, "warm_up", None)
        self.status.state = "starting"  # the training process and torch load (a few seconds)
        if warm_up is not None:
            try:
                warm_up()
            except Exception:  # noqa: BLE001 - a failed warm-up only costs the first round its time
                LOG.exception("retrain worker warm-up failed")
        while not self._stop.is_set():
            did = self.step()
            if did in ("trained", "cross-validated", "interrupted"):
                continue
            wait = self.poll_s if did in ("idle", "paused") else max(self.poll_s, 2.0)
            self._wake.wait(wait)
            self._wake.clear()

    def _train_once(self) -> None:
        self.status.state = "training"
        self.status.last_started = time.time()
        try:
            round_id = self.train(self.project)
            self.status.last_round = round_id
            self.status.rounds_trained += 1
            self.status.last_error = None
        finally:
            self.status.last_finished = time.time()
            self.status.state = "idle"
