"""Classes and the append-only annotation event log.

Nothing here updates or deletes an event: an undo is a new ``undo`` event that names the batch it
revokes, and an item's current label is derived by the ``current_labels`` view.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import unicodedata

import duckdb
import numpy as np

from storage.schema import current_labels_of, over_items

SOURCES = frozenset(
    {"manual", "accept_suggestion", "accept_neighbourhood", "grid", "lasso", "import", "adjudication", "auto_accept", "undo"}
)


@dataclass(frozen=True)
class Event:
    item_id: int
    class_id: int | None  # None: skip / unsure
    kind: str = "label"
    created_at: datetime | None = None
    """When the decision was made (UTC, no zone), for labels imported with their time; None: now."""


MAX_CLASS_NAME = 100
"""The longest class name, in characters (a class name becomes a folder name in an export)."""


class InvalidName(ValueError):
    """A class or user name that cannot be stored: empty, too long, or with control characters."""


def preview(text: str, limit: int = 40) -> str:
    """A short printable quotation of ``text`` for a one-line message."""
    shown = "".join(c if c.isprintable() else " " for c in text[:limit])
    return repr(shown) + (f"... ({len(text)} characters)" if len(text) > limit else "")


def name_problem(name: object, *, what: str = "class name", limit: int = MAX_CLASS_NAME) -> str | None:
    """Why ``name`` (already stripped) cannot be a class (or user) name; None when it can.

    Path characters ('/', '..') are allowed: exports make folder names with ``export.safe_name``."""
    if not isinstance(name, str):
        return f"a {what} must be text, not {type(name).__name__}"
    if not name:
        return f"a {what} cannot be empty"
    if len(name) > limit:
        return f"the {what} {preview(name)} is longer than {limit} characters"
    if any(ord(c) < 32 or ord(c) == 127 or unicodedata.category(c) in ("Cc", "Cf") for c in name):
        return f"the {what} {preview(name)} contains a control character (a newline, a tab, ...)"
    return None


def check_class_name(name: str, *, what: str = "class name") -> str:
    """``name`` stripped of surrounding white space; raises :class:`InvalidName` when it cannot be a class."""
    cleaned = name.strip() if isinstance(name, str) else name
    problem = name_problem(cleaned, what=what)
    if problem is not None:
        raise InvalidName(problem)
    return cleaned


class ClassRow(NamedTuple):
    """An active class (:func:`classes`)."""
    id: int
    name: str


class LabelState(NamedTuple):
    """An item's current state (:func:`current_state`): the live event that decides it."""
    item_id: int
    class_id: int | None  # None for a skip
    kind: str  # "label" or "skip"
    user_name: str
    source: str
    event_id: int


class EventRow(NamedTuple):
    """One event of the log (:func:`all_events`), undone or not."""
    id: int
    item_id: int
    class_id: int | None
    kind: str  # "label", "skip" or "undo"
    user_name: str
    source: str
    batch_id: str
    revokes: str | None  # the batch an undo revokes
    model_round: int | None  # the round the person saw
    created_at: datetime


class HistoryRow(NamedTuple):
    """One event on an item (:func:`item_history`), with its class by name."""
    id: int
    kind: str
    class_name: str | None
    user_name: str
    source: str
    batch_id: str
    revokes: str | None
    model_round: int | None
    created_at: datetime


class Vote(NamedTuple):
    """A person's newest live event on an item (:func:`votes`)."""
    item_id: int
    user_name: str
    class_id: int | None
    kind: str
    source: str
    model_round: int | None
    created_at: datetime
    event_id: int


class Adjudication(NamedTuple):
    """A live adjudication (:func:`adjudications`)."""
    item_id: int
    class_id: int | None
    kind: str
    user_name: str
    event_id: int


class Provenance(NamedTuple):
    """The event deciding an item's current label, with its vote counts (:func:`current_provenance`)."""
    item_id: int
    class_id: int | None
    kind: str
    user_name: str
    source: str
    event_id: int
    n_votes: int
    n_agree: int
    created_at: datetime
    model_round: int | None


class BatchLabel(NamedTuple):
    """A live label event of a batch (:func:`batch_labels`); ``class_id`` follows merges."""
    batch_id: str
    item_id: int
    class_id: int


class UnknownBatch(LookupError):
    """No live batch with that id (already undone, or never written)."""


def classes(con: duckdb.DuckDBPyConnection) -> list[ClassRow]:
    """(id, name) of the active classes, ordered by id."""
    return [ClassRow(int(i), n) for i, n in con.execute(
        "SELECT id, name FROM classes WHERE merged_into IS NULL ORDER BY id").fetchall()]


def ensure_classes(con: duckdb.DuckDBPyConnection, names: Sequence[str], *, user: str) -> dict[str, int]:
    """Create missing classes; returns name -> id for every name asked."""
    out: dict[str, int] = {}
    for name in names:
        cleaned = check_class_name(name)
        row = con.execute("SELECT id, merged_into FROM classes WHERE name = ?", [cleaned]).fetchone()
        if row is None:
            row = con.execute(
                "INSERT INTO classes (name, created_by) VALUES (?, ?) RETURNING id, merged_into", [cleaned, user]
            ).fetchone()
        out[name] = int(row[1] if row[1] is not None else row[0])
    return out


def rename_class(con: duckdb.DuckDBPyConnection, class_id: int, new_name: str) -> None:
    new_name = check_class_name(new_name, what="new class name")
    con.execute("UPDATE classes SET name = ? WHERE id = ?", [new_name, class_id])


def append_events(
    con: duckdb.DuckDBPyConnection,
    events: Sequence[Event],
    *,
    user: str,
    source: str,
    batch_id: str,
    model_round: int | None,
) -> list[int]:
    """Append one batch of events; returns their ids."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid: {sorted(SOURCES)}")
    if not events:
        return []
    rows = con.execute(
        "INSERT INTO annotations (item_id, class_id, kind, user_name, source, batch_id, model_round, created_at)"
        " SELECT i, c, k, ?, ?, ?, ?, coalesce(t, current_timestamp::TIMESTAMP) FROM (SELECT unnest(?::BIGINT[]) AS i,"
        " unnest(?::INTEGER[]) AS c, unnest(?::VARCHAR[]) AS k, unnest(?::TIMESTAMP[]) AS t) RETURNING id",
        [user, source, batch_id, model_round, [int(e.item_id) for e in events],
         [None if e.class_id is None else int(e.class_id) for e in events], [e.kind for e in events],
         [e.created_at for e in events]],
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def batch_items(con: duckdb.DuckDBPyConnection, batch_id: str) -> list[int]:
    return [int(r[0]) for r in con.execute(
        "SELECT item_id FROM live_events WHERE batch_id = ? ORDER BY id", [batch_id]).fetchall()]


def undo_batch(con: duckdb.DuckDBPyConnection, batch_id: str, *, user: str, undo_batch_id: str) -> list[int]:
    """Revoke a live batch with one undo event per item; returns the affected item ids."""
    items = batch_items(con, batch_id)
    if not items:
        raise UnknownBatch(f"no live batch {batch_id!r} to undo")
    con.execute(
        "INSERT INTO annotations (item_id, class_id, kind, user_name, source, batch_id, revokes)"
        " SELECT unnest(?::BIGINT[]), NULL, 'undo', ?, 'undo', ?, ?",
        [items, user, undo_batch_id, batch_id],
    )
    return items


def last_live_batch(con: duckdb.DuckDBPyConnection, *, user: str | None) -> str | None:
    """The newest live batch, of one user or of anyone."""
    row = con.execute(
        "SELECT batch_id FROM live_events WHERE (? IS NULL OR user_name = ?) ORDER BY id DESC LIMIT 1",
        [user, user],
    ).fetchone()
    return row[0] if row else None


def current_labels(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids, class_ids) of every item whose current state is a label (skips excluded)."""
    rows = con.execute(
        "SELECT item_id, class_id FROM current_labels WHERE kind = 'label' ORDER BY item_id").fetchall()
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def count_labeled(con: duckdb.DuckDBPyConnection) -> int:
    """How many items have a label as their current state (skips excluded): ``count(*) FROM
    current_labels WHERE kind = 'label'`` without deciding every item's majority (about 4x faster).
    An adjudicated item counts when its adjudication is a label; any other item when at least one
    person's live vote on it is a label (the majority of those votes is then a label)."""
    return int(con.execute(
        "SELECT (SELECT count(*) FROM adjudications WHERE kind = 'label')"
        " + (SELECT count(DISTINCT item_id) FROM user_votes WHERE kind = 'label'"
        "    AND item_id NOT IN (SELECT item_id FROM adjudications))").fetchone()[0])


def current_state(con: duckdb.DuckDBPyConnection, item_ids: Sequence[int] | None = None) -> list[LabelState]:
    """(item_id, class_id, kind, user_name, source, event_id) of every item with a live event, or of
    those among ``item_ids`` (a neighbourhood's dozen: the query then reads only their events)."""
    columns = "SELECT item_id, class_id, kind, user_name, source, event_id FROM "
    if item_ids is None:
        return list(map(LabelState._make, con.execute(columns + "current_labels ORDER BY item_id").fetchall()))
    ids = [int(i) for i in item_ids]
    if not ids:
        return []
    return list(map(LabelState._make, con.execute(f"{columns}({current_labels_of()}) ORDER BY item_id",
                                                  [ids]).fetchall()))


def last_event_id(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT coalesce(max(id), 0) FROM annotations").fetchone()
    return int(row[0])


def all_events(con: duckdb.DuckDBPyConnection) -> list[EventRow]:
    """Every event in order: (id, item_id, class_id, kind, user_name, source, batch_id, revokes, model_round, created_at)."""
    return list(map(EventRow._make, con.execute(
        "SELECT id, item_id, class_id, kind, user_name, source, batch_id, revokes, model_round, created_at"
        " FROM annotations ORDER BY id"
    ).fetchall()))


def item_history(con: duckdb.DuckDBPyConnection, item_id: int) -> list[HistoryRow]:
    """Every event on one item, oldest first, its class by name (None for skips and undos)."""
    return list(map(HistoryRow._make, con.execute(
        "SELECT a.id, a.kind, c.name, a.user_name, a.source, a.batch_id, a.revokes, a.model_round, a.created_at"
        " FROM annotations a LEFT JOIN classes c ON c.id = a.class_id WHERE a.item_id = ? ORDER BY a.id",
        [item_id],
    ).fetchall()))


def has_live_event(con: duckdb.DuckDBPyConnection, item_id: int) -> bool:
    """Whether the item currently has a label or a skip."""
    row = con.execute("SELECT 1 FROM current_labels WHERE item_id = ? LIMIT 1", [int(item_id)]).fetchone()
    return row is not None


def batch_owners(con: duckdb.DuckDBPyConnection, batch_id: str) -> set[str]:
    """The users who wrote the live events of a batch."""
    return {r[0] for r in con.execute(
        "SELECT DISTINCT user_name FROM live_events WHERE batch_id = ?", [batch_id]).fetchall()}


def votes(con: duckdb.DuckDBPyConnection, *, labels_only: bool = True) -> list[Vote]:
    """Each person's vote on each item (their newest live event; adjudications excluded).

    Rows: (item_id, user_name, class_id, kind, source, model_round, created_at, event_id), ordered by item
    then event. ``labels_only`` drops skips.
    """
    return list(map(Vote._make, con.execute(
        "SELECT item_id, user_name, class_id, kind, source, model_round, created_at, event_id FROM user_votes"
        " WHERE (NOT ? OR kind = 'label') ORDER BY item_id, event_id", [labels_only]).fetchall()))


def adjudications(con: duckdb.DuckDBPyConnection) -> list[Adjudication]:
    """(item_id, class_id, kind, user_name, event_id) of every live adjudication."""
    return list(map(Adjudication._make, con.execute(
        "SELECT item_id, class_id, kind, user_name, event_id FROM adjudications ORDER BY item_id").fetchall()))


def voters(con: duckdb.DuckDBPyConnection, item_ids: Sequence[int] | None = None) -> dict[int, set[str]]:
    """item_id -> the people whose vote on it is a label (or a skip) and is live."""
    if item_ids is None:
        rows = con.execute("SELECT item_id, user_name FROM user_votes").fetchall()
    else:
        rows = con.execute(over_items("SELECT item_id, user_name FROM user_votes"),
                           [[int(i) for i in item_ids]]).fetchall()
    out: dict[int, set[str]] = {}
    for item, user in rows:
        out.setdefault(int(item), set()).add(user)
    return out


def recent_batches(con: duckdb.DuckDBPyConnection, *, limit: int = 200, user: str | None = None) -> list[dict]:
    """The newest label batches, live or undone: who, when, source, how many items, which classes."""
    rows = con.execute(
        """SELECT a.batch_id, any_value(a.user_name), any_value(a.source), count(*), min(a.created_at),
                  string_agg(DISTINCT coalesce(c.name, '(skip)'), ', '),
                  a.batch_id IN (SELECT revokes FROM annotations WHERE kind = 'undo') AS undone, max(a.id)
           FROM annotations a LEFT JOIN classes c ON c.id = a.class_id
           WHERE a.kind IN ('label', 'skip') AND (? IS NULL OR a.user_name = ?)
           GROUP BY a.batch_id ORDER BY max(a.id) DESC LIMIT ?""", [user, user, int(limit)]).fetchall()
    return [{"batch_id": r[0], "user": r[1], "source": r[2], "items": int(r[3]), "created_at": r[4],
             "classes": r[5], "undone": bool(r[6])} for r in rows]


def current_provenance(con: duckdb.DuckDBPyConnection) -> list[Provenance]:
    """Per item with a live event: (item_id, class_id, kind, user_name, source, event_id, n_votes, n_agree,
    created_at, model_round) of the event that decides its current label."""
    return list(map(Provenance._make, con.execute(
        "SELECT c.item_id, c.class_id, c.kind, c.user_name, c.source, c.event_id, c.n_votes, c.n_agree,"
        " a.created_at, a.model_round FROM current_labels c JOIN annotations a ON a.id = c.event_id"
        " ORDER BY c.item_id").fetchall()))


def batch_labels(con: duckdb.DuckDBPyConnection, batch_ids: Sequence[str]) -> list[BatchLabel]:
    """(batch_id, item_id, class_id) of the live label events of these batches; a merged class is named by
    the class it was merged into."""
    return list(map(BatchLabel._make, con.execute(
        "SELECT e.batch_id, e.item_id, coalesce(c.merged_into, e.class_id) FROM live_events e"
        " LEFT JOIN classes c ON c.id = e.class_id WHERE e.kind = 'label' AND list_contains(?, e.batch_id)",
        [list(batch_ids)]).fetchall()))


def undone_batches_of_item(con: duckdb.DuckDBPyConnection, item_id: int) -> set[str]:
    """The batches with an event on this item that an undo revoked."""
    return {r[0] for r in con.execute(
        "SELECT DISTINCT revokes FROM annotations WHERE kind = 'undo' AND item_id = ?", [int(item_id)]).fetchall()}
