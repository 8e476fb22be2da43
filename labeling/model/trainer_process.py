"""Rounds trained in a child process of their own, kept warm between rounds.

Why a process: a round is a few hundred short torch and numpy calls, and each one takes Python's GIL
back when it returns. Inside the server every browser session runs its page scripts in threads of the
same process, and a thread that wants the GIL back waits for the others' switch interval: measured on
the demo (2 cores), one busy Python thread beside it made a round four to five times slower (6.5 s
alone, 27 to 30 s beside it), which is how rounds of minutes came about in a server with a few
sessions open. In its own process a round competes for cores only, and at a lower priority
(:data:`NICE`), so a key press never waits for a round either. Each round uses as many threads as
the rest of the machine leaves cores (:mod:`labeling.model.cores`): threads that wait for a partner
taken off its core spin, so on a busy machine one thread finishes sooner than two.

:class:`ProcessTrainer` has the worker's trainer interface (``trainer(project) -> round id``,
``cross_validate(project, should_stop)``, ``warm_up()``). The worker's process keeps every database
read and write (:func:`~labeling.model.rounds.start_round` snapshots the labels and records the round,
:func:`~labeling.model.rounds.finish_round` marks it finished): the child only computes
(:func:`~labeling.model.rounds.compute_round` on :meth:`Project.files <labeling.project.Project.files>`,
which has no database), writes the predictions file, and keeps the round's pending cross-validation,
which it runs when asked and abandons when the worker says a newer round is due. So a project's
database is used by the same processes as before, with the same durability. The child is
spawned on first use (a clean interpreter: no forked threads or locks), loads torch once, and ends
on :meth:`ProcessTrainer.close` or the moment its parent dies (Linux: even a SIGKILLed server takes
its round with it, which the next server then discards, as after any crash).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable

from labeling.project import Project

LOG = logging.getLogger(__name__)

NICE = 10
"""How much lower the training process's CPU priority is than the server's (where allowed)."""
IDLE_TICK_S = 1.0
"""How often the idle training process samples the machine's load (:mod:`labeling.model.cores`)."""
POLL_S = 0.1
"""How often the worker asks ``should_stop`` while the child cross-validates."""


class TrainerDied(RuntimeError):
    """The training process ended without an answer (it is started again for the next round)."""


def _die_with(parent: int) -> None:
    """Ask Linux to kill this process the moment its parent dies (even by SIGKILL): a round must not
    outlive the server that asked for it (the next server discards it, as after any crash)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _lower_priority() -> None:
    """Run at :data:`NICE` below the server, also where Linux schedules by autogroup.

    With autogroups (``/proc/sys/kernel/sched_autogroup_enabled``, on by default on desktops) the
    kernel first shares the cores evenly between sessions, and a process's nice value counts only
    inside its own session. A server started from a terminal and a browser started from the desktop
    are two sessions; the training process, in the server's, would take the server's half from a
    browser that needs it to draw the next card, whatever its nice value. So the training process
    becomes a session of its own and gives that session the same lower priority."""
    try:
        os.nice(NICE)
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as fh:
            if fh.read().strip() != "1":
                return
        os.setsid()
        with open("/proc/self/autogroup", "w") as fh:
            fh.write(str(NICE))
    except (AttributeError, OSError):
        pass


def _child_main(conn, stop_cv, device: str, cv: bool, parent: int) -> None:  # pragma: no cover - in the child
    _die_with(parent)
    _lower_priority()
    from labeling.model.cores import RoundThreads
    from labeling.model.rounds import compute_round
    from labeling.model.worker import RoundTrainer

    projects: dict[str, Project] = {}
    pending = None
    threads = RoundThreads()
    while True:
        try:
            while not conn.poll(IDLE_TICK_S):
                threads.tick()
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        kind = msg[0]
        if kind == "quit":
            return
        try:
            if kind == "warm":
                RoundTrainer.warm_up()
                conn.send(("ok", None))
            elif kind == "train":
                root, start = msg[1], msg[2]
                project = projects.get(root) or projects.setdefault(root, Project.files(root))
                pending = None
                used = threads.apply()
                metrics, pending = compute_round(project, start, device=device, cv=cv)
                if used is not None:
                    metrics["threads"] = used
                conn.send(("ok", metrics))
            elif kind == "cv":
                if pending is None:
                    conn.send(("ok", None))
                    continue
                threads.apply()
                metrics = pending.compute(projects[msg[1]], should_stop=stop_cv.is_set)
                if metrics is not None:
                    pending = None
                conn.send(("ok", {"metrics": metrics}))
            else:
                conn.send(("error", f"unknown request {kind!r}"))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the worker as its error
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ProcessTrainer:
    """The worker's trainer, running each round in a warm child process (see the module docstring)."""

    def __init__(self, *, device: str = "auto", cv: bool = True) -> None:
        self.device = device
        self.cv = cv
        self._ctx = mp.get_context("spawn")
        self._stop_cv = self._ctx.Event()
        self._proc = None
        self._conn = None
        self._lock = threading.Lock()  # one request at a time
        self._cv_round: int | None = None  # the round whose cross-validation the child holds

    # ---- the child -----------------------------------------------------------------------
    def _ensure(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        self._drop()
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_child_main,
                                       args=(child, self._stop_cv, self.device, self.cv, os.getpid()),
                                       name="quorum-trainer", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._proc = None

    def _ask(self, *msg, while_waiting: Callable[[], None] | None = None):
        with self._lock:
            self._ensure()
            try:
                self._conn.send(msg)
                while not self._conn.poll(POLL_S):
                    if not self._proc.is_alive():
                        raise EOFError
                    if while_waiting is not None:
                        while_waiting()
                kind, value = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                code = self._proc.exitcode if self._proc is not None else None
                self._drop()
                raise TrainerDied(f"the training process ended (exit code {code}); it restarts for the next round") \
                    from exc
        if kind == "error":
            raise RuntimeError(value)
        return value

    @property
    def pid(self) -> int | None:
        """The training process's id, once started."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    # ---- the worker's trainer interface --------------------------------------------------
    def __call__(self, project: Project) -> int:
        """One round: recorded and snapshotted here, trained in the child, finished here."""
        from labeling.model.ensemble import EnsembleConfig
        from labeling.model.learner import LearnerConfig
        from labeling.model.rounds import fail_round, finish_round, start_round

        start = start_round(project, LearnerConfig(ensemble=EnsembleConfig(seed=0)))
        try:
            metrics = self._ask("train", str(project.root), start)
        except BaseException as exc:
            fail_round(project, start.round_id, f"{type(exc).__name__}: {exc}")
            self._cv_round = None
            raise
        finish_round(project, start.round_id, metrics)
        self._cv_round = start.round_id if metrics.get("cv_status") == "pending" else None
        return start.round_id

    def cross_validate(self, project: Project, should_stop: Callable[[], bool]) -> bool | None:
        """Cross-validate the newest round in the child; ``should_stop`` is asked every :data:`POLL_S`
        and interrupts it between folds. The figures are stored here."""
        from labeling.model.rounds import store_metrics

        if self._cv_round is None:
            return None
        self._stop_cv.clear()

        def watch() -> None:
            if not self._stop_cv.is_set() and should_stop():
                self._stop_cv.set()

        got = self._ask("cv", str(project.root), while_waiting=watch)
        if got is None:  # the child has none (it restarted): nothing to do
            self._cv_round = None
            return None
        if got["metrics"] is None:
            return False
        store_metrics(project, self._cv_round, got["metrics"])
        self._cv_round = None
        return True

    def warm_up(self) -> None:
        """Start the child and pay torch's first-call costs there before the first round."""
        self._ask("warm")

    def close(self) -> None:
        """End the child (the worker's stop does this)."""
        with self._lock:
            if self._proc is None:
                return
            try:
                self._conn.send(("quit",))
            except (OSError, BrokenPipeError):
                pass
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
            self._drop()

    def __repr__(self) -> str:
        return f"ProcessTrainer(device={self.device!r}, cv={self.cv}, in a child process at nice +{NICE})"
