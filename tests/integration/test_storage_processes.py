"""Several processes on one database file: a writer waits for the lock, a clear error past the timeout, a busy process lets others in."""
from __future__ import annotations

import multiprocessing as mp
import time

import duckdb
import pytest

from storage import items as items_q
from storage.db import Database, DatabaseBusy, release_files


def _items(db, n=5):
    with db.session() as con:
        return items_q.insert_items(con, [items_q.NewItem(f"img/{i}.png", f"h{i}", 8, 8, "ok") for i in range(n)])


def _hold_lock(path, seconds, ready):
    con = duckdb.connect(path)
    ready.set()
    time.sleep(seconds)
    con.close()


def test_second_process_waits_for_the_lock_then_writes(tmp_path):
    path = tmp_path / "q.duckdb"
    db = Database(path, timeout=10)
    db.migrate()
    release_files()  # no linger: the other process must get the file at once
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), 1.5, ready))
    holder.start()
    assert ready.wait(30)
    _items(db, 1)  # retried with back-off until the other process let go
    holder.join()
    with db.session() as con:
        assert items_q.counts(con) == {"ok": 1}


def test_lock_held_too_long_gives_clear_error(tmp_path):
    path = tmp_path / "q.duckdb"
    Database(path).migrate()
    release_files()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), 3, ready))
    holder.start()
    assert ready.wait(30)
    with pytest.raises(DatabaseBusy, match="locked by another process"):
        with Database(path, timeout=0.5).session():
            pass
    holder.join()


def _poll_writes(path, seconds, out):
    db = Database(path, timeout=20)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        with db.session() as con:
            con.execute("SELECT count(*) FROM items").fetchone()
        n += 1
        time.sleep(0.02)  # polls far faster than the linger: the file never goes idle on its own
    out.put(n)


def test_a_busy_process_still_lets_another_one_in(tmp_path):
    """A process that never idles long enough still yields the file: the other side's write lands."""
    path = tmp_path / "q.duckdb"
    Database(path).migrate()
    release_files()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    busy = ctx.Process(target=_poll_writes, args=(str(path), 6, out))
    busy.start()
    time.sleep(2.5)  # the poller is up and holding the file
    db = Database(path, timeout=10)
    t0 = time.monotonic()
    _items(db, 1)
    waited = time.monotonic() - t0
    busy.join()
    assert out.get(timeout=5) > 10
    assert waited < 5
    with db.session() as con:
        assert items_q.counts(con) == {"ok": 1}
