"""Queries on ``users``: people, roles and password hashes (never passwords)."""
from __future__ import annotations

from datetime import datetime, timezone

import duckdb

from storage.labels import InvalidName, name_problem

ROLES = ("annotator", "reviewer", "admin")
MAX_USER_NAME = 64
"""The longest user name, in characters."""


def get_user(con: duckdb.DuckDBPyConnection, name: str) -> dict | None:
    row = con.execute("SELECT name, role, password_hash, disabled, created_at FROM users WHERE name = ?",
                      [name]).fetchone()
    if row is None:
        return None
    return dict(zip(("name", "role", "password_hash", "disabled", "created_at"), row))


def check_user_name(name: str) -> str:
    """``name`` stripped; raises :class:`storage.labels.InvalidName` when it is empty, longer than
    :data:`MAX_USER_NAME` characters or has a control character."""
    cleaned = name.strip() if isinstance(name, str) else name
    problem = name_problem(cleaned, what="user name", limit=MAX_USER_NAME)
    if problem is not None:
        raise InvalidName(problem)
    return cleaned


def add_user(con: duckdb.DuckDBPyConnection, name: str, role: str, password_hash: str | None) -> None:
    """Add a person; raises :class:`storage.labels.InvalidName` for a name that cannot be stored."""
    if check_user_name(name) != name:
        raise InvalidName(f"the user name {name!r} has white space around it")
    con.execute("INSERT INTO users (name, role, password_hash) VALUES (?, ?, ?)", [name, role, password_hash])


def list_users(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every user, with ``locked`` (too many failed sign-ins, until an admin unlocks) and ``failed_sign_ins``."""
    rows = con.execute("""SELECT u.name, u.role, u.disabled, u.created_at, coalesce(f.locked, false),
                                 coalesce(f.failures, 0)
                          FROM users u LEFT JOIN sign_in_failures f ON f.key = 'name:' || u.name
                          ORDER BY u.name""").fetchall()
    return [dict(zip(("name", "role", "disabled", "created_at", "locked", "failed_sign_ins"), r)) for r in rows]


def set_role(con: duckdb.DuckDBPyConnection, name: str, role: str) -> None:
    con.execute("UPDATE users SET role = ? WHERE name = ?", [role, name])


def set_disabled(con: duckdb.DuckDBPyConnection, name: str, disabled: bool) -> None:
    con.execute("UPDATE users SET disabled = ? WHERE name = ?", [disabled, name])


def set_password_hash(con: duckdb.DuckDBPyConnection, name: str, password_hash: str) -> None:
    con.execute("UPDATE users SET password_hash = ? WHERE name = ?", [password_hash, name])


# ---- sign-in throttling: consecutive failures per key (``name:<name>`` or ``client:<address>``) ----------
# Times are seconds since the epoch at this API, stored as UTC timestamps.

def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def get_failures(con: duckdb.DuckDBPyConnection, key: str) -> dict | None:
    """``{"failures", "last_failure" (epoch seconds), "locked"}`` of ``key``, or None when it has none."""
    row = con.execute("SELECT failures, last_failure, locked FROM sign_in_failures WHERE key = ?", [key]).fetchone()
    if row is None:
        return None
    return {"failures": row[0], "last_failure": row[1].replace(tzinfo=timezone.utc).timestamp(), "locked": row[2]}


def add_failure(con: duckdb.DuckDBPyConnection, key: str, at: float, lock_after: int | None) -> int:
    """Count one more failure of ``key`` at ``at``; lock it when it reaches ``lock_after`` (None: never).
    Returns the new count."""
    limit = lock_after if lock_after is not None else 2 ** 31 - 1
    con.execute(
        """INSERT INTO sign_in_failures AS f (key, failures, last_failure, locked) VALUES (?, 1, ?, ?)
           ON CONFLICT (key) DO UPDATE SET failures = f.failures + 1, last_failure = excluded.last_failure,
               locked = f.locked OR f.failures + 1 >= ?""",
        [key, _utc(at), limit <= 1, limit])
    return con.execute("SELECT failures FROM sign_in_failures WHERE key = ?", [key]).fetchone()[0]


def clear_failures(con: duckdb.DuckDBPyConnection, *keys: str) -> int:
    """Forget the failures (and lock) of ``keys``; returns how many keys had any."""
    if not keys:
        return 0
    n = con.execute("SELECT count(*) FROM sign_in_failures WHERE key IN (SELECT unnest(?::VARCHAR[]))",
                    [list(keys)]).fetchone()[0]
    con.execute("DELETE FROM sign_in_failures WHERE key IN (SELECT unnest(?::VARCHAR[]))", [list(keys)])
    return n


# ---- signed-in browser sessions (a token's SHA-256, its user, expiry and revocation) --------------------

def add_web_session(con: duckdb.DuckDBPyConnection, token_hash: str, name: str, at: float, expires: float) -> None:
    con.execute("INSERT INTO web_sessions VALUES (?, ?, ?, ?, NULL)", [token_hash, name, _utc(at), _utc(expires)])


def get_web_session(con: duckdb.DuckDBPyConnection, token_hash: str) -> dict | None:
    """``{"user_name", "expires_at" (epoch seconds), "revoked"}`` of a stored token, or None."""
    row = con.execute("SELECT user_name, expires_at, revoked_at IS NOT NULL FROM web_sessions WHERE token_hash = ?",
                      [token_hash]).fetchone()
    if row is None:
        return None
    return {"user_name": row[0], "expires_at": row[1].replace(tzinfo=timezone.utc).timestamp(), "revoked": row[2]}


def revoke_web_sessions(con: duckdb.DuckDBPyConnection, at: float, *, token_hash: str | None = None,
                        name: str | None = None) -> int:
    """End one token, or every live token of ``name``; returns how many were live. Expired rows are
    dropped on the way (nothing reads them again)."""
    where, args = ("token_hash = ?", [token_hash]) if token_hash is not None else ("user_name = ?", [name])
    n = con.execute(f"SELECT count(*) FROM web_sessions WHERE {where} AND revoked_at IS NULL", args).fetchone()[0]
    con.execute(f"UPDATE web_sessions SET revoked_at = ? WHERE {where} AND revoked_at IS NULL", [_utc(at), *args])
    con.execute("DELETE FROM web_sessions WHERE expires_at < ?", [_utc(at)])
    return n
