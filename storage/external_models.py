"""People's own models: the predictions they imported and how each joins a round's ensemble."""
from __future__ import annotations

COLUMNS = ("name", "file", "n_items", "n_classes", "source", "imported_by", "imported_at", "weight", "enabled",
           "changed_at")


def _row(r) -> dict:
    return dict(zip(COLUMNS, r))


def record(con, *, name: str, file: str, n_items: int, n_classes: int, source: str, user: str) -> None:
    """Store a model's newest predictions (a re-import replaces the file and keeps its weight setting)."""
    con.execute(
        "INSERT INTO external_models (name, file, n_items, n_classes, source, imported_by) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET file = excluded.file, n_items = excluded.n_items,"
        " n_classes = excluded.n_classes, source = excluded.source, imported_by = excluded.imported_by,"
        " imported_at = now()::TIMESTAMP, changed_at = now()::TIMESTAMP",
        [name, file, int(n_items), int(n_classes), source, user])


def list_models(con) -> list[dict]:
    """Every imported model, oldest first."""
    return [_row(r) for r in con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM external_models ORDER BY imported_at, name").fetchall()]


def get(con, name: str) -> dict | None:
    r = con.execute(f"SELECT {', '.join(COLUMNS)} FROM external_models WHERE name = ?", [name]).fetchone()
    return _row(r) if r else None


def set_weight(con, name: str, *, weight: float | None, enabled: bool) -> None:
    """``weight`` None: learned each round; a share in [0, 1]: fixed. ``enabled`` False: left out."""
    con.execute("UPDATE external_models SET weight = ?, enabled = ?, changed_at = current_timestamp WHERE name = ?",
                [weight, bool(enabled), name])


def changed_since_last_round(con) -> bool:
    """Whether a model was imported or re-weighed after the newest finished or failed round started: a
    round is due even without new labels."""
    row = con.execute(
        "SELECT (SELECT max(changed_at) FROM external_models),"
        " (SELECT max(started_at) FROM rounds WHERE status IN ('finished', 'failed'))").fetchone()
    return row[0] is not None and (row[1] is None or row[0] > row[1])
