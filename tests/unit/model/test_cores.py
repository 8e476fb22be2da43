"""The training process's thread count follows the cores the rest of the machine leaves it."""
from __future__ import annotations

import sys

import pytest

from labeling.model.cores import CoreProbe, Sample, read_sample, threads_for


def test_threads_for_gives_up_a_thread_per_core_the_others_take():
    assert threads_for(None, cores=2, most=2) is None  # nothing measured: leave it
    assert threads_for(0.0, cores=2, most=2) == 2
    assert threads_for(0.4, cores=2, most=2) == 2  # one browser page labeling
    assert threads_for(0.75, cores=2, most=2) == 2
    assert threads_for(0.9, cores=2, most=2) == 1
    assert threads_for(1.5, cores=2, most=2) == 1  # five pages pressing
    assert threads_for(7.0, cores=2, most=2) == 1  # never none
    assert threads_for(1.0, cores=8, most=8) == 7
    assert threads_for(0.0, cores=8, most=4) == 4  # never more than the pool has


class FakeProc:
    """Samples from a script: each read advances the clock by ``step`` seconds."""

    def __init__(self, others_cores: list[float], own_cores: float = 1.0, step: float = 1.0) -> None:
        self.t, self.busy, self.own = 0.0, 0.0, 0.0
        self.plan = list(others_cores)
        self.own_cores, self.step = own_cores, step

    def __call__(self) -> Sample:
        s = Sample(self.t, self.busy, self.own)
        others = self.plan.pop(0) if self.plan else 0.0
        self.t += self.step
        self.busy += (others + self.own_cores) * self.step
        self.own += self.own_cores * self.step
        return s


def test_probe_measures_the_others_not_itself_over_the_recent_window():
    # the process itself keeps a core busy throughout; the others use 1.5 cores for 5 s, then nothing
    proc = FakeProc([1.5] * 5 + [0.0] * 10)
    probe = CoreProbe(proc, window_s=3.0)
    for _ in range(4):
        probe.tick()
    assert probe.others() == pytest.approx(1.5)  # samples at t = 0..5: all busy seconds
    for _ in range(6):
        probe.tick()
    assert probe.others() == pytest.approx(0.0)  # the busy seconds fell out of the window


def test_probe_says_nothing_from_a_window_too_short_or_without_proc():
    assert CoreProbe(FakeProc([1.0], step=0.1)).others() is None  # 0.1 s apart
    assert CoreProbe(lambda: None).others() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_read_sample_counts_this_process_in_the_machine():
    before = read_sample()
    sum(i * i for i in range(2_000_000))
    after = read_sample()
    assert before is not None and after is not None
    assert after.own > before.own  # this process's time went up
    assert after.busy - before.busy >= after.own - before.own - 0.02  # and the machine's with it


def test_round_threads_drop_to_one_under_load_and_come_back():
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from labeling.model.cores import RoundThreads

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a 2-core machine's pool, whatever this one has
    proc = FakeProc([1.5] * 4 + [0.0] * 8)
    threads = RoundThreads(CoreProbe(proc), cores=2)
    with threadpool_limits(limits=None):  # puts the BLAS and OpenMP pools back as they were
        try:
            for _ in range(3):
                threads.tick()
            assert threads.apply() == 1  # five browser pages' worth of load on 2 cores
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
            for _ in range(6):
                threads.tick()
            assert threads.apply() == 2 == torch.get_num_threads()  # the machine is free again
        finally:
            torch.set_num_threads(before)
