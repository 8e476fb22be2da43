"""Leaving a process: no database thread survives into the interpreter's shutdown, and the exit code
is the command's."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from storage import db as db_mod
from storage.db import Database

ROOT = Path(__file__).resolve().parents[3]


def _linger_timers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def test_stopping_at_exit_cancels_and_joins_every_linger_timer(tmp_path, monkeypatch):
    monkeypatch.setattr(db_mod._INSTANCES, "linger_s", 30.0)  # a timer that would outlive the process
    before = set(_linger_timers())
    database = Database(tmp_path / "x.duckdb")
    with database.session() as con:
        con.execute("SELECT 1")
    assert set(_linger_timers()) - before  # the linger timer is waiting
    db_mod.release_files(stop_timers=True)
    assert not set(_linger_timers()) - before  # stopped and joined, not left to the shutdown
    assert not db_mod._INSTANCES._open


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "labeling", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_the_exit_code_is_the_commands(small_project, tmp_path):
    ok = _cli("user", str(small_project.root), "list")
    assert ok.returncode == 0, ok.stderr
    bad = _cli("queue", str(tmp_path / "missing"), "--n", "3")
    assert bad.returncode == 2 and bad.stderr.startswith("error:")
    usage = _cli("no-such-command")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    assert _cli("--help").returncode == 0
