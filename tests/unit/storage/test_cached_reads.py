"""Reads memoised per database generation: reused while nothing changed, read again after any commit,
in this process or in another."""
from __future__ import annotations

import subprocess
import sys

from storage.db import Database, release_files


def _counting(db):
    db.migrate()
    calls = []

    def read(con):
        calls.append(1)
        return con.execute("SELECT count(*) FROM settings").fetchone()[0]

    return calls, lambda: db.cached("n", read)


def test_a_read_is_reused_until_a_write_commits(tmp_path):
    db = Database(tmp_path / "q.duckdb")
    calls, read = _counting(db)
    assert read() == 0 and read() == 0 and len(calls) == 1
    with db.session() as con:  # a read-only transaction changes nothing
        con.execute("SELECT * FROM settings").fetchall()
    assert read() == 0 and len(calls) == 1
    with db.session() as con:
        con.execute("INSERT INTO settings VALUES ('a', '1')")
    assert read() == 1 and len(calls) == 2
    release_files()  # closing the file checkpoints it: read again, same answer
    assert read() == 1


def test_a_write_by_another_process_is_seen(tmp_path):
    db = Database(tmp_path / "q.duckdb")
    calls, read = _counting(db)
    assert read() == 0
    release_files()
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
            "c.execute(\"INSERT INTO settings VALUES ('b', '2')\"); c.close()")
    subprocess.run([sys.executable, "-c", code, str(db.path)], check=True, timeout=60)
    assert read() == 1


def test_a_rolled_back_transaction_keeps_the_value(tmp_path):
    db = Database(tmp_path / "q.duckdb")
    calls, read = _counting(db)
    read()
    try:
        with db.session() as con:
            con.execute("INSERT INTO settings VALUES ('c', '3')")
            raise RuntimeError("abandon")
    except RuntimeError:
        pass
    assert read() == 0
