"""Model rounds: one trained ensemble and the file holding its predictions."""
from __future__ import annotations

import json



COLUMNS = ("id", "started_at", "finished_at", "status", "n_labels", "last_event_id", "backbone",
           "vector_version", "head_config", "metrics", "predictions_file", "error")


def _row(r) -> dict:
    d = dict(zip(COLUMNS, r))
    d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
    d["head_config"] = json.loads(d["head_config"]) if d["head_config"] else {}
    return d


def start_round(con, *, n_labels: int, last_event_id: int, backbone: str, vector_version: str, head_config: dict) -> int:
    row = con.execute(
        "INSERT INTO rounds (status, n_labels, last_event_id, backbone, vector_version, head_config)"
        " VALUES ('running', ?, ?, ?, ?, ?) RETURNING id",
        [n_labels, last_event_id, backbone, vector_version, json.dumps(head_config)],
    ).fetchone()
    return int(row[0])


def finish_round(con, round_id: int, *, metrics: dict, predictions_file: str) -> None:
    con.execute(
        "UPDATE rounds SET status = 'finished', finished_at = current_timestamp, metrics = ?, predictions_file = ?"
        " WHERE id = ? AND status = 'running'",  # a round discarded meanwhile (its server died) stays discarded
        [json.dumps(metrics), predictions_file, round_id],
    )


def update_metrics(con, round_id: int, extra: dict) -> None:
    """Merge ``extra`` into a finished round's metrics (figures computed after the round, e.g. its CV)."""
    row = con.execute("SELECT metrics FROM rounds WHERE id = ?", [round_id]).fetchone()
    if row is None:
        raise LookupError(f"no round {round_id}")
    metrics = {**(json.loads(row[0]) if row[0] else {}), **extra}
    con.execute("UPDATE rounds SET metrics = ? WHERE id = ?", [json.dumps(metrics), round_id])


def fail_round(con, round_id: int, *, error: str, status: str = "failed") -> None:
    con.execute(
        "UPDATE rounds SET status = ?, finished_at = current_timestamp, error = ? WHERE id = ?",
        [status, error[:2000], round_id],
    )


def discard_running(con, *, up_to: int | None = None) -> int:
    """Mark rounds left 'running' by a crashed process as discarded (``up_to``: only those with an id up
    to it, i.e. started before the caller existed); returns how many."""
    rows = con.execute(
        "UPDATE rounds SET status = 'discarded', error = 'interrupted', finished_at = current_timestamp"
        " WHERE status = 'running' AND (? IS NULL OR id <= ?) RETURNING id", [up_to, up_to]).fetchall()
    return len(rows)


def newest_id(con) -> int:
    """The id of the newest round of any status (0 before any)."""
    return int(con.execute("SELECT coalesce(max(id), 0) FROM rounds").fetchone()[0])


def list_rounds(con, *, newest: int | None = None) -> list[dict]:
    """Rounds oldest first; only the ``newest`` few when given."""
    if newest is None:
        return [_row(r) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM rounds ORDER BY id").fetchall()]
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM rounds ORDER BY id DESC LIMIT ?", [int(newest)]).fetchall()
    return [_row(r) for r in reversed(rows)]


def trained_through(con) -> tuple[int | None, int]:
    """(the newest event id a finished or failed round covered, None before any; the labels of the
    newest finished round, 0 before any): what the retrain worker polls, in one small query."""
    row = con.execute(
        "SELECT (SELECT max(last_event_id) FROM rounds WHERE status IN ('finished', 'failed')),"
        " (SELECT n_labels FROM rounds WHERE status = 'finished' ORDER BY id DESC LIMIT 1)").fetchone()
    return (None if row[0] is None else int(row[0])), int(row[1] or 0)


def latest_finished(con) -> dict | None:
    r = con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM rounds WHERE status = 'finished' ORDER BY id DESC LIMIT 1").fetchone()
    return _row(r) if r else None


def get_setting(con, key: str, default: str | None = None) -> str | None:
    row = con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def all_settings(con) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM settings").fetchall())


def set_setting(con, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", [key, value])
