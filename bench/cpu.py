"""CPU time by process group during a phase of the session benchmark (Linux ``/proc``; empty elsewhere).

The session benchmark runs the browsers on the same cores as the server, as a person trying the app on
one machine would; this says how the cores were shared while a phase ran: the browsers, the server, its
training process, the benchmark itself and everything else."""
from __future__ import annotations

import os

GROUPS = ("browsers", "server", "training process", "benchmark", "other")


def _group(cmdline: str, pid: int) -> str:
    if pid == os.getpid():
        return "benchmark"
    if "chrom" in cmdline:
        return "browsers"
    if "multiprocessing" in cmdline:  # the retrain worker's training process (a spawned interpreter)
        return "training process"
    if "streamlit" in cmdline:
        return "server"
    return "other"


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU seconds so far, user and system) of every process now."""
    out: dict[int, tuple[str, float]] = {}
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return out
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        out[pid] = (_group(cmdline, pid), (int(fields[11]) + int(fields[12])) / tick)
    return out


def used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each group used between two snapshots (processes that ended meanwhile are not counted)."""
    total = dict.fromkeys(GROUPS, 0.0)
    for pid, (group, seconds) in after.items():
        total[group] += seconds - before.get(pid, (group, 0.0))[1]
    return total
