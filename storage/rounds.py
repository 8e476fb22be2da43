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
        " WHERE id = ?",
        [json.dumps(metrics), predictions_file, round_id],
    )


def fail_round(con, round_id: int, *, error: str, status: str = "failed") -> None:
    con.execute(
        "UPDATE rounds SET status = ?, finished_at = current_timestamp, error = ? WHERE id = ?",
        [status, error[:2000], round_id],
    )


def discard_running(con) -> int:
    """Mark rounds left 'running' by a crashed process as discarded; returns how many."""
    rows = con.execute(
        "UPDATE rounds SET status = 'discarded', error = 'interrupted', finished_at = current_timestamp"
        " WHERE status = 'running' RETURNING id").fetchall()
    return len(rows)


def list_rounds(con) -> list[dict]:
    return [_row(r) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM rounds ORDER BY id").fetchall()]


def latest_finished(con) -> dict | None:
    r = con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM rounds WHERE status = 'finished' ORDER BY id DESC LIMIT 1").fetchone()
    return _row(r) if r else None


def get_setting(con, key: str, default: str | None = None) -> str | None:
    row = con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def set_setting(con, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", [key, value])
