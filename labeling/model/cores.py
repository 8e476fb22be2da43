"""How many threads a round should use: the cores the rest of the machine leaves it, read from /proc.

A round runs torch's and the BLAS and OpenMP libraries' thread pools. Threads of one pool wait for
each other at every barrier, and while they wait they spin. When the machine's other work (several
browser pages on one person's two cores) keeps taking a core away, the thread left on a core spins
until its partner comes back, and a round that needs 2 s takes many times that. Measured on the demo
with five browser pages pressing keys on 2 cores: rounds of 12 to 26 s that took 2 to 3 s with the
machine to themselves. One thread has no partner to wait for.

:class:`CoreProbe` measures what the other processes used over the last few seconds (``/proc/stat``
less this process's own time); :func:`threads_for` turns that into a thread count: all threads while
the others leave the cores free, fewer as they take them. Where ``/proc`` cannot be read (not Linux),
nothing is measured and the thread count stays as it was.
"""
from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

WINDOW_S = 3.0
"""How far back the load is measured: long enough to smooth a key press's burst, short enough to see
that people started (or stopped) working."""
MIN_WINDOW_S = 0.3
"""A shorter window says too little; the count then stays as it was."""
SPARE = 0.75
"""Of a core the others may take before a thread is given up: one browser page labeling beside the
server (about 0.4 of a core on the demo) keeps both threads; five pages pressing at once (about 1.5)
leave one."""


class Sample(NamedTuple):
    t: float
    busy: float
    """CPU seconds all processes used since boot (user, nice, system, interrupts, steal)."""
    own: float
    """CPU seconds this process used (all its threads)."""


def read_sample(clock: Callable[[], float] = time.monotonic) -> Sample | None:
    """The machine's and this process's CPU seconds now; None where ``/proc`` cannot be read."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
        with open("/proc/self/stat") as fh:
            own = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    busy = (user + nice + system + irq + softirq + steal) / hz
    return Sample(clock(), busy, (int(own[11]) + int(own[12])) / hz)


class CoreProbe:
    """The cores the other processes kept busy, on average over about the last :data:`WINDOW_S` seconds.

    Call :meth:`tick` now and then while idle (it keeps the window recent) and :meth:`others` when a
    round starts. ``read`` is the sampler (tests give their own).
    """

    def __init__(self, read: Callable[[], Sample | None] = read_sample, *, window_s: float = WINDOW_S) -> None:
        self._read = read
        self._window = window_s
        self._samples: deque[Sample] = deque()
        self.tick()

    def tick(self) -> None:
        """Take a sample; drop those no longer needed to cover the window."""
        s = self._read()
        if s is None:
            return
        self._samples.append(s)
        while len(self._samples) > 1 and self._samples[1].t <= s.t - self._window:
            self._samples.popleft()

    def others(self) -> float | None:
        """Cores used by everything but this process since the oldest sample in the window (None: no
        sample, or too short a window to say)."""
        self.tick()
        if len(self._samples) < 2:
            return None
        first, last = self._samples[0], self._samples[-1]
        span = last.t - first.t
        if span < MIN_WINDOW_S:
            return None
        return max(0.0, (last.busy - first.busy) - (last.own - first.own)) / span


def threads_for(others: float | None, *, cores: int, most: int) -> int | None:
    """Threads for a round: ``most`` while the others use at most :data:`SPARE` of a core, one fewer for
    each further core they take or start to take, never fewer than one. None (leave the count as it
    is) without a measurement."""
    if others is None:
        return None
    return max(1, min(most, math.floor(cores - others + SPARE)))


class RoundThreads:
    """Sets the thread pools of this process (torch's, and BLAS and OpenMP through threadpoolctl) for each
    round from :class:`CoreProbe`; :meth:`tick` while idle keeps the measurement recent."""

    def __init__(self, probe: CoreProbe | None = None, *, cores: int | None = None) -> None:
        self.probe = probe or CoreProbe()
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.cores = cores
        self.most: int | None = None
        self.current: int | None = None
        self._controller = None

    def tick(self) -> None:
        self.probe.tick()

    def apply(self) -> int | None:
        """Choose and set the count for the round about to run; returns the count in use."""
        import torch

        if self.most is None:
            self.most = self.current = torch.get_num_threads()
        n = threads_for(self.probe.others(), cores=self.cores, most=self.most)
        if n is not None and n != self.current:
            torch.set_num_threads(n)
            if self._controller is None:
                from threadpoolctl import ThreadpoolController

                self._controller = ThreadpoolController()
            self._controller.limit(limits=n)
            self.current = n
        return self.current
