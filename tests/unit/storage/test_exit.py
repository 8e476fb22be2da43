"""Leaving a process: no database thread survives into the interpreter's shutdown, and the exit code
is the command's."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from storage import db as db_mod
from storage.db import Database

ROOT = Path(__file__).resolve().parents[3]


def _linger_timers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def test_stopping_at_exit_cancels_and_joins_every_linger_timer(tmp_path, monkeypatch):
    monkeypatch.setattr(db_mod._INSTANCES, "linger_s", 30.0)  # a timer that would outlive the process
    database = Database(tmp_path / "x.duckdb")
    with database.session() as con:
        con.execute("SELECT 1")
    waiting = [t for t in db_mod._INSTANCES._timers if t.is_alive()]
    assert waiting and set(waiting) <= set(_linger_timers())  # the linger timer is waiting
    db_mod.release_files(stop_timers=True)
    assert not [t for t in waiting if t.is_alive()]  # stopped and joined, not left to the shutdown
    assert not db_mod._INSTANCES._timers and not db_mod._INSTANCES._open


def test_one_pending_timer_closes_every_idle_file_after_its_linger(tmp_path, monkeypatch):
    """A key press runs dozens of short sessions: they share one pending timer, not one thread each, and
    a file used again before its linger ends stays open."""
    monkeypatch.setattr(db_mod._INSTANCES, "linger_s", 0.3)
    monkeypatch.setattr(db_mod._INSTANCES, "keep_until_wanted", False)  # close after the linger, asked or not
    db_mod.release_files(stop_timers=True)
    a, b = Database(tmp_path / "a.duckdb"), Database(tmp_path / "b.duckdb")
    for _ in range(20):
        for database in (a, b):
            with database.session() as con:
                con.execute("SELECT 1")
    assert len(db_mod._INSTANCES._timers) == 1
    deadline = time.monotonic() + 10
    while db_mod._INSTANCES._open and time.monotonic() < deadline:
        with b.session() as con:  # b stays busy for a while: only a closes
            con.execute("SELECT 1")
        if time.monotonic() > deadline - 9.0:
            break
        time.sleep(0.05)
    keys = set(db_mod._INSTANCES._open)
    assert str((tmp_path / "b.duckdb").resolve()) in keys and str((tmp_path / "a.duckdb").resolve()) not in keys
    while db_mod._INSTANCES._open and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not db_mod._INSTANCES._open and not db_mod._INSTANCES._timers


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


def test_an_idle_file_stays_open_until_another_process_asks_for_it(tmp_path, monkeypatch):
    monkeypatch.setattr(db_mod._INSTANCES, "linger_s", 0.1)
    db_mod.release_files(stop_timers=True)
    database = Database(tmp_path / "a.duckdb")
    with database.session() as con:
        con.execute("SELECT 1")
    key = str(database.path.resolve())
    time.sleep(0.6)  # well past the linger: nobody asked, so it stays open (no reopen on the next press)
    assert key in db_mod._INSTANCES._open
    db_mod._ask_for(key)  # what a process that finds the file locked does on every retry
    deadline = time.monotonic() + 5
    while key in db_mod._INSTANCES._open and time.monotonic() < deadline:
        time.sleep(0.02)
    assert key not in db_mod._INSTANCES._open
    with database.session() as con:  # this process's next session opens it again
        con.execute("SELECT 1")
    db_mod.release_files(stop_timers=True)
