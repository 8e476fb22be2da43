"""The rows of a label table (CSV, JSON, an exporter's file) as the targets they name: which item, which label.

Pure parsing, with no image library: the server's facade (:meth:`labeling.service.LabelingService.label_table`)
calls it; resolving uris to items is the database's job there.
"""
from __future__ import annotations

from collections.abc import Sequence

from storage import labels as labels_q


def time_of(row: dict):
    """A row's ``created_at`` when the importer parsed it into a time; text is never trusted as one."""
    from datetime import datetime

    when = row.get("created_at")
    return when if isinstance(when, datetime) else None


def table_targets(rows: Sequence[dict]) -> tuple[list[tuple], list[str]]:
    """(item_id or None, uri or None, label, line, time) for each row of a label table, and its problems so far;
    ``created_at``, when a row has it, is a UTC time without zone (the importers parse it)."""
    by_uri, problems = [], []
    for k, row in enumerate(rows, start=2):
        if row.get("item_id") not in (None, ""):
            try:
                by_uri.append((int(row["item_id"]), None, row.get("label"), k, time_of(row)))
            except ValueError:
                problems.append(f"line {k}: item_id {row['item_id']!r} is not a number")
        elif row.get("uri"):
            by_uri.append((None, str(row["uri"]), row.get("label"), k, time_of(row)))
        else:
            problems.append(f"line {k}: needs a uri or an item_id")
            continue
        text = "" if row.get("label") is None else str(row["label"]).strip()
        problem = labels_q.name_problem(text) if text else None
        if problem is not None:
            raise labels_q.InvalidName(f"line {k}: {problem}; nothing labeled")
    return by_uri, problems
