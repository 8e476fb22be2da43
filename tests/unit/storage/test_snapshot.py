"""The snapshot's current labels, brought up to date from the previous snapshot, equal a full read."""
from __future__ import annotations

import random

import pytest

from storage import classes_admin
from storage import items as items_q
from storage import labels as labels_q
from storage import snapshot
from storage.db import Database


@pytest.fixture
def db(tmp_path):
    return Database(tmp_path / "q.duckdb", timeout=5)


def _setup(db, n_items=12):
    with db.session() as con:
        ids = items_q.insert_items(con, [items_q.NewItem(f"img/{i}.png", f"h{i}", 8, 8, "ok") for i in range(n_items)])
        cls = labels_q.ensure_classes(con, ["cat", "dog", "owl"], user="ann")
    return ids, cls


def _full(con):
    return {int(r.item_id): r for r in labels_q.current_state(con)}


def _step(con, rng: random.Random, ids, cls, batches: list[str], k: int) -> None:
    """One random change, as the app makes them: labels, skips, adjudications, undos, merges."""
    op = rng.choice(["label", "label", "label", "skip", "adjudicate", "undo", "merge", "unmerge"])
    if op == "undo" and batches:
        batch = batches.pop(rng.randrange(len(batches)))
        try:
            labels_q.undo_batch(con, batch, user="ann", undo_batch_id=f"u{k}")
        except labels_q.UnknownBatch:
            pass
        return
    if op == "merge":
        a, b = rng.sample(sorted(cls.values()), 2)
        if not con.execute("SELECT merged_into FROM classes WHERE id = ?", [b]).fetchone()[0]:
            classes_admin.set_merged_into(con, a, b)
            items = classes_admin.items_labeled(con, a)
            classes_admin.append_relabel(con, items, b, user="ann", batch_id=f"m{k}")
        return
    if op == "unmerge":
        classes_admin.set_merged_into(con, rng.choice(sorted(cls.values())), None)
        return
    items = rng.sample(ids, rng.randint(1, 3))
    class_id = None if op == "skip" else rng.choice(sorted(cls.values()))
    kind = "label" if class_id is not None else "skip"
    batch = f"b{k}"
    labels_q.append_events(con, [labels_q.Event(i, class_id, kind) for i in items], user=rng.choice(["ann", "bob", "cy"]),
                           source="adjudication" if op == "adjudicate" else "manual", batch_id=batch, model_round=None)
    batches.append(batch)


@pytest.mark.parametrize("seed", range(6))
def test_an_updated_snapshot_equals_a_full_read_after_every_change(db, seed):
    ids, cls = _setup(db)
    rng = random.Random(seed)
    batches: list[str] = []
    previous = None
    updated = 0
    for k in range(60):
        with db.session() as con:
            _step(con, rng, ids, cls, batches, k)
        with db.session() as con:
            snap = snapshot.read(con, full_state_up_to=1_000, previous=previous)
            assert snap.state == _full(con), f"after step {k}"
            assert snap.labeled == sum(1 for r in snap.state.values() if r.kind == "label")
        if previous is not None and snap.state is not previous.state and snap.mark.classes == previous.mark.classes:
            updated += 1
        previous = snap
    assert updated > 10  # the incremental path ran, not only full reads


def test_fold_states_follows_the_view_rules():
    merged = {3: 2}
    rows = [  # (id, item, class, kind, user, source, batch, revokes)
        (1, 7, 1, "label", "ann", "manual", "b1", None),
        (2, 7, 2, "label", "bob", "manual", "b2", None),
        (3, 7, 3, "label", "cy", "manual", "b3", None),  # class 3 is merged into 2: two votes for 2
        (4, 8, None, "skip", "ann", "manual", "b4", None),
        (5, 9, 1, "label", "ann", "manual", "b5", None),
        (6, 9, None, "undo", "ann", "undo", "u1", "b5"),
        (7, 10, 1, "label", "ann", "manual", "b7", None),
        (8, 10, 2, "label", "rev", "adjudication", "b8", None),
    ]
    got = snapshot.fold_states(rows, merged)
    assert got[7] == labels_q.LabelState(7, 2, "label", "cy", "manual", 3)
    assert got[8] == labels_q.LabelState(8, None, "skip", "ann", "manual", 4)
    assert got[9] is None  # its only label undone
    assert got[10] == labels_q.LabelState(10, 2, "label", "rev", "adjudication", 8)


def test_an_event_committed_out_of_order_forces_a_full_read(db):
    ids, cls = _setup(db)
    with db.session() as con:
        labels_q.append_events(con, [labels_q.Event(ids[0], cls["cat"])], user="ann", source="manual", batch_id="a",
                               model_round=None)
        first = snapshot.read(con, full_state_up_to=1_000)
    # As if the first event (lower id) had committed just after this read: not in the state, not counted.
    fake = first._replace(state={}, mark=first.mark._replace(n_events=first.mark.n_events - 1))
    with db.session() as con:
        labels_q.append_events(con, [labels_q.Event(ids[1], cls["dog"])], user="ann", source="manual", batch_id="b",
                               model_round=None)
        again = snapshot.read(con, full_state_up_to=1_000, previous=fake)
        assert again.state == _full(con)
        assert ids[0] in again.state  # an update from the newer events alone would have missed it


def test_serve_lets_go_of_the_database_before_the_server_starts(tmp_path, monkeypatch):
    """``serve`` checks the project, then hands the file over: the server it starts would otherwise wait
    for this process to notice it is wanted and close it (about 0.1 s at every start)."""
    import signal
    import subprocess

    from labeling import cli
    from labeling.project import Project
    from storage import db as db_module

    Project(tmp_path / "p", create=True)
    db_module.release_files()
    open_at_start = []

    class Started:
        def __init__(self, *args, **kwargs):
            open_at_start.append(dict(db_module._INSTANCES._open))

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Started)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # serve forwards signals to its server
    assert cli.main(["serve", str(tmp_path / "p"), "--headless", "--port", "8599"]) == 0
    assert open_at_start == [{}]
