"""Queries on ``items``: the images of a project."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import duckdb
import numpy as np


@dataclass(frozen=True)
class NewItem:
    uri: str
    sha256: str | None
    width: int | None
    height: int | None
    status: str  # ok | unreadable | duplicate
    reason: str | None = None


class KnownItem(NamedTuple):
    """A recorded item, as :func:`known_uris` maps its uri."""
    id: int
    sha256: str | None
    status: str  # ok | unreadable | duplicate


class SkippedItem(NamedTuple):
    """An item that is not usable (:func:`skipped_items`)."""
    uri: str
    status: str  # unreadable | duplicate
    reason: str | None


def known_uris(con: duckdb.DuckDBPyConnection) -> dict[str, KnownItem]:
    """uri -> (id, sha256, status) of every recorded item."""
    rows = con.execute("SELECT uri, id, sha256, status FROM items").fetchall()
    return {uri: KnownItem(int(i), sha, status) for uri, i, sha, status in rows}


def ids_by_hash(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """sha256 -> id of the readable items (for content de-duplication)."""
    rows = con.execute("SELECT sha256, min(id) FROM items WHERE status = 'ok' GROUP BY sha256").fetchall()
    return {sha: int(i) for sha, i in rows}


def insert_items(con: duckdb.DuckDBPyConnection, items: Sequence[NewItem]) -> list[int]:
    """Insert items with one statement (not one per row: 3,000 rows in 0.05 s instead of 1.4 s);
    returns their ids in order."""
    if not items:
        return []
    rows = con.execute(
        "INSERT INTO items (uri, sha256, width, height, status, reason)"
        " SELECT uri, sha256, width, height, status, reason FROM ("
        "  SELECT unnest(?::VARCHAR[]) AS uri, unnest(?::VARCHAR[]) AS sha256, unnest(?::INTEGER[]) AS width,"
        "   unnest(?::INTEGER[]) AS height, unnest(?::VARCHAR[]) AS status, unnest(?::VARCHAR[]) AS reason,"
        "   unnest(range(?)) AS k)"
        " ORDER BY k RETURNING id, uri",
        [[it.uri for it in items], [it.sha256 for it in items], [it.width for it in items],
         [it.height for it in items], [it.status for it in items], [it.reason for it in items], len(items)],
    ).fetchall()
    id_of = {uri: int(i) for i, uri in rows}
    return [id_of[it.uri] for it in items]


def ids_of_uris(con: duckdb.DuckDBPyConnection, uris: Sequence[str]) -> dict[str, int]:
    """uri -> id of those of ``uris`` already recorded (a hash join, not a scan per uri)."""
    if not uris:
        return {}
    rows = con.execute("SELECT i.uri, i.id FROM items AS i JOIN (SELECT unnest(?::VARCHAR[]) AS uri) AS q"
                       " ON i.uri = q.uri", [list(uris)]).fetchall()
    return {u: int(i) for u, i in rows}


def update_item(con: duckdb.DuckDBPyConnection, item_id: int, item: NewItem) -> None:
    con.execute(
        "UPDATE items SET sha256 = ?, width = ?, height = ?, status = ?, reason = ? WHERE id = ?",
        [item.sha256, item.width, item.height, item.status, item.reason, item_id],
    )


def ok_items(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, list[str]]:
    """(ids int64 (N,), uris) of readable items, ordered by id."""
    rows = con.execute("SELECT id, uri FROM items WHERE status = 'ok' ORDER BY id").fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]


def items_by_ids(con: duckdb.DuckDBPyConnection, ids: Iterable[int]) -> dict[int, dict]:
    ids = [int(i) for i in ids]
    if not ids:
        return {}
    rows = con.execute(
        "SELECT id, uri, sha256, width, height, status, reason, added_at FROM items WHERE list_contains(?, id)",
        [ids],
    ).fetchall()
    keys = ("id", "uri", "sha256", "width", "height", "status", "reason", "added_at")
    return {int(r[0]): dict(zip(keys, r)) for r in rows}


def id_for_uri(con: duckdb.DuckDBPyConnection, uris: Sequence[str]) -> dict[str, int]:
    if not uris:
        return {}
    rows = con.execute("SELECT uri, id FROM items WHERE list_contains(?, uri)", [list(uris)]).fetchall()
    return {u: int(i) for u, i in rows}


def ids_by_name(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> dict[str, list[int]]:
    """For each name, the ids of the readable items whose path in the project is that name, or else whose
    file name is (several when different folders hold the same file name)."""
    names = [str(n) for n in names]
    if not names:
        return {}
    rows = con.execute(
        "SELECT id, uri, string_split(uri, '/')[-1] AS base FROM items "
        "WHERE status = 'ok' AND (list_contains(?, uri) OR list_contains(?, string_split(uri, '/')[-1])) "
        "ORDER BY id", [names, names]).fetchall()
    out: dict[str, list[int]] = {}
    for name in names:
        exact = [int(i) for i, uri, _ in rows if uri == name]
        out[name] = exact or [int(i) for i, _, base in rows if base == name]
    return out


def search_uris(con: duckdb.DuckDBPyConnection, text: str, *, limit: int = 20) -> list[tuple[int, str]]:
    """``(id, uri)`` of readable items whose path contains ``text`` (any case), file-name matches first."""
    pattern = "%" + str(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = con.execute(
        "SELECT id, uri FROM items WHERE status = 'ok' AND uri ILIKE ? ESCAPE '\\' "
        "ORDER BY NOT (string_split(uri, '/')[-1] ILIKE ? ESCAPE '\\'), length(uri), id LIMIT ?",
        [pattern, pattern, int(limit)]).fetchall()
    return [(int(i), u) for i, u in rows]


def skipped_items(con: duckdb.DuckDBPyConnection) -> list[SkippedItem]:
    """(uri, status, reason) of every item that is not usable."""
    return list(map(SkippedItem._make, con.execute(
        "SELECT uri, status, reason FROM items WHERE status <> 'ok' ORDER BY id"
    ).fetchall()))


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall()
    return {s: int(n) for s, n in rows}
