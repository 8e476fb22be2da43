"""Queries behind the Data page: class administration (add, rename, merge) and project statistics.

Merging never touches an event: it appends relabel events as one batch and marks the source class
``merged_into`` the target, so ``labels.classes`` hides it and ``labels.ensure_classes`` maps its
name to the target from then on.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import duckdb

from storage.labels import check_class_name

MERGE_SOURCE = "merge"
"""The ``source`` of the relabel events a merge appends (not a person's decision about an image)."""


class ClassInfo(NamedTuple):
    """A class, active or merged (:func:`class_rows`)."""
    id: int
    name: str
    merged_into: int | None  # the class it was merged into; None while active
    created_by: str
    created_at: datetime


class ClassRef(NamedTuple):
    """A class found by name (:func:`class_by_name`)."""
    id: int
    merged_into: int | None


class ClassCount(NamedTuple):
    """How many items are currently labeled with a class (:func:`label_counts`)."""
    class_id: int
    n: int


class KeyCount(NamedTuple):
    """How many current labels have this annotator or source (:func:`counts_by`)."""
    key: str
    n: int


def class_rows(con: duckdb.DuckDBPyConnection) -> list[ClassInfo]:
    """(id, name, merged_into, created_by, created_at) of every class, active or merged, by id."""
    return [ClassInfo(int(i), n, None if m is None else int(m), u, t) for i, n, m, u, t in con.execute(
        "SELECT id, name, merged_into, created_by, created_at FROM classes ORDER BY id").fetchall()]


def class_by_name(con: duckdb.DuckDBPyConnection, name: str) -> ClassRef | None:
    """(id, merged_into) of the class called ``name`` (active or merged), or None."""
    row = con.execute("SELECT id, merged_into FROM classes WHERE name = ?", [name]).fetchone()
    return None if row is None else ClassRef(int(row[0]), None if row[1] is None else int(row[1]))


def insert_class(con: duckdb.DuckDBPyConnection, name: str, *, user: str) -> int:
    """Create one class; returns its id (the caller checks the name is new).

    Raises :class:`storage.labels.InvalidName` for a name that cannot be a class."""
    name = check_class_name(name)
    row = con.execute("INSERT INTO classes (name, created_by) VALUES (?, ?) RETURNING id", [name, user]).fetchone()
    return int(row[0])


def set_merged_into(con: duckdb.DuckDBPyConnection, class_id: int, target_id: int | None) -> None:
    """Mark a class merged into ``target_id`` (None: active again)."""
    con.execute("UPDATE classes SET merged_into = ? WHERE id = ?", [target_id, class_id])


def repoint_merged(con: duckdb.DuckDBPyConnection, old_target: int, new_target: int) -> list[int]:
    """Classes merged into ``old_target`` now point at ``new_target`` (one level of indirection)."""
    rows = con.execute("SELECT id FROM classes WHERE merged_into = ? ORDER BY id", [old_target]).fetchall()
    ids = [int(r[0]) for r in rows]
    for class_id in ids:
        set_merged_into(con, class_id, new_target)
    return ids


def items_labeled(con: duckdb.DuckDBPyConnection, class_id: int) -> list[int]:
    """Items whose current state is a label of ``class_id``, by id."""
    return [int(r[0]) for r in con.execute(
        "SELECT item_id FROM current_labels WHERE kind = 'label' AND class_id = ? ORDER BY item_id",
        [class_id]).fetchall()]


def append_relabel(con: duckdb.DuckDBPyConnection, item_ids: Sequence[int], class_id: int, *, user: str,
                   batch_id: str) -> int:
    """Append one ``label`` event per item with source ``merge`` as one batch; returns how many."""
    if not item_ids:
        return 0
    con.execute(
        "INSERT INTO annotations (item_id, class_id, kind, user_name, source, batch_id, model_round)"
        " SELECT unnest(?::BIGINT[]), ?, 'label', ?, ?, ?, NULL",
        [[int(i) for i in item_ids], int(class_id), user, MERGE_SOURCE, batch_id],
    )
    return len(item_ids)


def live_batches_like(con: duckdb.DuckDBPyConnection, prefix: str) -> list[str]:
    """Live batch ids starting with ``prefix``, newest first."""
    rows = con.execute(
        "SELECT batch_id, max(id) AS newest FROM live_events WHERE starts_with(batch_id, ?)"
        " GROUP BY batch_id ORDER BY newest DESC", [prefix]).fetchall()
    return [r[0] for r in rows]


def label_counts(con: duckdb.DuckDBPyConnection) -> list[ClassCount]:
    """(class_id, items currently labeled with it) for every class with at least one."""
    return [ClassCount(int(c), int(n)) for c, n in con.execute(
        "SELECT class_id, count(*) FROM current_labels WHERE kind = 'label' GROUP BY class_id ORDER BY class_id"
    ).fetchall()]


def state_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Items per current state kind: ``label`` and ``skip``."""
    return {k: int(n) for k, n in con.execute("SELECT kind, count(*) FROM current_labels GROUP BY kind").fetchall()}


def counts_by(con: duckdb.DuckDBPyConnection, column: str) -> list[KeyCount]:
    """Current labels counted by ``user_name`` or ``source``, most first."""
    if column not in ("user_name", "source"):
        raise ValueError(f"cannot count labels by {column!r}; valid: user_name, source")
    return [KeyCount(k, int(n)) for k, n in con.execute(
        f"SELECT {column}, count(*) AS n FROM current_labels WHERE kind = 'label'"
        f" GROUP BY {column} ORDER BY n DESC, {column}").fetchall()]


def round_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rounds per status."""
    return {s: int(n) for s, n in con.execute("SELECT status, count(*) FROM rounds GROUP BY status").fetchall()}
