"""Queries on ``users``: people, roles and password hashes (never passwords)."""
from __future__ import annotations

import duckdb

ROLES = ("annotator", "reviewer", "admin")


def get_user(con: duckdb.DuckDBPyConnection, name: str) -> dict | None:
    row = con.execute("SELECT name, role, password_hash, disabled, created_at FROM users WHERE name = ?",
                      [name]).fetchone()
    if row is None:
        return None
    return dict(zip(("name", "role", "password_hash", "disabled", "created_at"), row))


def add_user(con: duckdb.DuckDBPyConnection, name: str, role: str, password_hash: str | None) -> None:
    con.execute("INSERT INTO users (name, role, password_hash) VALUES (?, ?, ?)", [name, role, password_hash])


def list_users(con: duckdb.DuckDBPyConnection) -> list[dict]:
    rows = con.execute("SELECT name, role, disabled, created_at FROM users ORDER BY name").fetchall()
    return [dict(zip(("name", "role", "disabled", "created_at"), r)) for r in rows]


def set_role(con: duckdb.DuckDBPyConnection, name: str, role: str) -> None:
    con.execute("UPDATE users SET role = ? WHERE name = ?", [role, name])


def set_disabled(con: duckdb.DuckDBPyConnection, name: str, disabled: bool) -> None:
    con.execute("UPDATE users SET disabled = ? WHERE name = ?", [disabled, name])
