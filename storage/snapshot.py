"""What every page run reads, in one transaction: classes, the round in use, item counts and the
current label of every item (small projects), memoised per database generation by the caller
(:meth:`storage.db.Database.cached`)."""
from __future__ import annotations

from typing import NamedTuple

import duckdb

from storage import items as items_q
from storage import labels as labels_q
from storage import rounds as rounds_q


class Snapshot(NamedTuple):
    names: dict[int, str]
    """class id -> name of the active classes, by id."""
    latest: dict | None
    """The newest finished round (:func:`storage.rounds.latest_finished`)."""
    counts: dict[str, int]
    """Items by status."""
    state: dict[int, labels_q.LabelState] | None
    """item id -> current state of every item with a live event; None above ``full_state_up_to`` items."""
    labeled: int
    """Items whose current state is a label."""


def read(con: duckdb.DuckDBPyConnection, *, full_state_up_to: int) -> Snapshot:
    counts = items_q.counts(con)
    state = None
    if counts.get("ok", 0) <= full_state_up_to:
        state = {int(r.item_id): r for r in labels_q.current_state(con)}
    labeled = (sum(1 for r in state.values() if r.kind == "label") if state is not None
               else labels_q.count_labeled(con))
    return Snapshot(dict(labels_q.classes(con)), rounds_q.latest_finished(con), counts, state, labeled)
