"""The DuckDB event store: append-only events, derived labels, undo, migrations, locking."""
from __future__ import annotations

import pytest

from storage import items as items_q
from storage import labels as labels_q
from storage import rounds as rounds_q
from storage.db import Database
from storage.schema import MIGRATIONS


@pytest.fixture
def db(tmp_path):
    """A file-backed database: the locking behaviour under test does not exist in ':memory:'."""
    return Database(tmp_path / "q.duckdb", timeout=5)


def _items(db, n=5):
    with db.session() as con:
        return items_q.insert_items(con, [items_q.NewItem(f"img/{i}.png", f"h{i}", 8, 8, "ok") for i in range(n)])


def test_migrate_is_idempotent_and_versioned(db):
    assert db.migrate() == len(MIGRATIONS)
    assert db.migrate() == len(MIGRATIONS)
    with db.session() as con:
        assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)


def test_current_label_is_latest_live_event_and_undo_restores_previous(db):
    ids = _items(db)
    with db.session() as con:
        cls = labels_q.ensure_classes(con, ["cat", "dog"], user="ann")
        labels_q.append_events(con, [labels_q.Event(ids[0], cls["cat"])], user="ann", source="manual",
                               batch_id="b1", model_round=None)
        labels_q.append_events(con, [labels_q.Event(ids[0], cls["dog"]), labels_q.Event(ids[1], cls["dog"])],
                               user="ann", source="accept_neighbourhood", batch_id="b2", model_round=3)
        items, classes = labels_q.current_labels(con)
        assert dict(zip(items.tolist(), classes.tolist())) == {ids[0]: cls["dog"], ids[1]: cls["dog"]}
        assert labels_q.undo_batch(con, "b2", user="ann", undo_batch_id="u1") == [ids[0], ids[1]]
        items, classes = labels_q.current_labels(con)
        assert dict(zip(items.tolist(), classes.tolist())) == {ids[0]: cls["cat"]}
        # nothing was deleted: 1 + 2 label events + 2 undo events
        assert con.execute("SELECT count(*) FROM annotations").fetchone()[0] == 5
        with pytest.raises(labels_q.UnknownBatch):
            labels_q.undo_batch(con, "b2", user="ann", undo_batch_id="u2")


def test_skip_leaves_item_without_label(db):
    ids = _items(db, 2)
    with db.session() as con:
        cls = labels_q.ensure_classes(con, ["cat"], user="a")
        labels_q.append_events(con, [labels_q.Event(ids[0], cls["cat"])], user="a", source="manual", batch_id="b1",
                               model_round=None)
        labels_q.append_events(con, [labels_q.Event(ids[0], None, "skip")], user="a", source="manual", batch_id="b2",
                               model_round=None)
        assert labels_q.current_labels(con)[0].tolist() == []
        assert [r[2] for r in labels_q.current_state(con)] == ["skip"]


def test_failed_transaction_stores_nothing(db):
    _items(db, 1)
    with pytest.raises(RuntimeError):
        with db.session() as con:
            items_q.insert_items(con, [items_q.NewItem("new.png", "hx", 1, 1, "ok")])
            raise RuntimeError("boom")
    with db.session() as con:
        assert items_q.counts(con) == {"ok": 1}


def test_hostile_class_names_are_stored_verbatim(db):
    names = ["'; DROP TABLE items; --", "<script>alert(1)</script>", "ünïcode name"]
    with db.session() as con:
        got = labels_q.ensure_classes(con, names, user="x")
        assert sorted(n for _, n in labels_q.classes(con)) == sorted(names)
        assert set(got) == set(names)
        assert con.execute("SELECT count(*) FROM items").fetchone()[0] == 0  # table still there


def test_rounds_lifecycle_and_crash_discard(db):
    with db.session() as con:
        r1 = rounds_q.start_round(con, n_labels=3, last_event_id=9, backbone="b", vector_version="v", head_config={})
        rounds_q.finish_round(con, r1, metrics={"cv_accuracy": 0.5}, predictions_file="round-1.npz")
        r2 = rounds_q.start_round(con, n_labels=4, last_event_id=10, backbone="b", vector_version="v", head_config={})
    with db.session() as con:  # a restart after a crash mid-round
        assert rounds_q.discard_running(con) == 1
        assert rounds_q.latest_finished(con)["id"] == r1
        statuses = {r["id"]: r["status"] for r in rounds_q.list_rounds(con)}
    assert statuses == {r1: "finished", r2: "discarded"}








def test_concurrent_threads_lose_no_event(db):
    import threading

    ids = _items(db, 20)
    with db.session() as con:
        cls = labels_q.ensure_classes(con, ["a", "b"], user="x")

    def worker(w):
        for k in range(25):
            with db.session() as con:
                labels_q.append_events(con, [labels_q.Event(ids[(w + k) % 20], cls["a" if k % 2 else "b"])],
                                       user=f"u{w}", source="manual", batch_id=f"{w}-{k}", model_round=None)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.session() as con:
        events = labels_q.all_events(con)
    assert len(events) == 100
    assert len({e[0] for e in events}) == 100
    # derived labels equal a sequential replay of the log
    replay = {}
    for e in events:
        replay[e[1]] = e[2]
    with db.session() as con:
        items, classes = labels_q.current_labels(con)
    assert dict(zip(items.tolist(), classes.tolist())) == replay




