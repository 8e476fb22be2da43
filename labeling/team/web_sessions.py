"""Signed-in browser sessions that survive a reload (team mode).

After a sign-in the browser keeps a random token in an HttpOnly cookie (:data:`COOKIE`); the project
stores only the token's SHA-256 with its user and expiry. Every script run of that browser presents the
cookie and :func:`resume` checks it again: an expired or revoked token, a disabled user or a project back
in local mode is refused at once, and the user's current role is what the session gets. Signing out
revokes the token (:func:`end`), so a copied cookie is worthless afterwards.

The two scripts the browser runs to set and to clear the cookie are built here from a checked token
(letters, digits, ``-`` and ``_`` only), never from anything a person typed.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets

from labeling.project import Project
from labeling.team import auth
from labeling.team.auth import AuthError, Identity
from storage import users as users_q

COOKIE = "quorum_session"
"""The cookie's name: HttpOnly, SameSite=Strict, Path=/, Secure on HTTPS."""
ROUTE = "/quorum/session"
"""The server route that sets (POST) and clears (DELETE) the cookie."""
HEADER = "X-Quorum-Session"
"""A header the route requires: a page of another site cannot send it without the server's consent."""
SESSION_HOURS = float(os.environ.get("QUORUM_SESSION_HOURS", "12"))
"""How long a signed-in browser stays signed in without signing in again."""
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def is_token(value: object) -> bool:
    """Whether ``value`` has the shape of a token :func:`start` makes (32 random bytes, URL-safe base64)."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def start(project: Project, who: Identity, *, hours: float | None = None) -> str | None:
    """A new token for a signed-in identity; only its hash is stored. None on a read-only project (it
    cannot store one: its sessions end with the browser tab)."""
    if who.local:
        raise AuthError("a local session has no sign-in to keep")
    if getattr(project.db, "read_only", False):
        return None
    token = secrets.token_urlsafe(32)
    now = auth._clock()
    with project.db.session() as con:
        users_q.add_web_session(con, _hash(token), who.name, now, now + 3600 * (hours or SESSION_HOURS))
    return token


def resume(project: Project, token: object) -> Identity | None:
    """The identity a browser's token stands for now, or None when it stands for nobody (malformed,
    unknown, expired or revoked, or the project is in local mode).

    Raises
    ------
    AuthError
        When the token's user is disabled or removed (the message says so).
    """
    if not is_token(token) or auth.mode(project) != "team":
        return None
    with project.db.session() as con:
        row = users_q.get_web_session(con, _hash(token))
        user = users_q.get_user(con, row["user_name"]) if row else None
    if row is None or row["revoked"] or row["expires_at"] <= auth._clock():
        return None
    if user is None or user["password_hash"] is None:
        raise AuthError(f"{row['user_name']} is not a user of this project any more: sign in again")
    if user["disabled"]:
        raise AuthError(f"user {row['user_name']!r} is disabled")
    return Identity(user["name"], user["role"])


def end(project: Project, token: object) -> bool:
    """Sign a browser out: its token is revoked. Returns whether it was live."""
    if not is_token(token):
        return False
    with project.db.session() as con:
        return users_q.revoke_web_sessions(con, auth._clock(), token_hash=_hash(token)) > 0


def end_all(project: Project, name: str) -> int:
    """Sign every browser of ``name`` out (a disabled user, a changed password); returns how many."""
    with project.db.session() as con:
        return users_q.revoke_web_sessions(con, auth._clock(), name=name)


def set_cookie_script(token: str) -> str:
    """The script a page runs once after a sign-in: it hands the token to :data:`ROUTE`, which answers
    with the HttpOnly cookie (the page's own scripts can never read it back)."""
    if not is_token(token):
        raise ValueError("not a session token")
    return ("<script>fetch(" + repr(ROUTE) + ", {method: 'POST', credentials: 'same-origin', headers: "
            "{'Content-Type': 'application/json', '" + HEADER + "': '1'}, body: JSON.stringify({token: '"
            + token + "'})});</script>")


CLEAR_COOKIE_SCRIPT = ("<script>fetch(" + repr(ROUTE) + ", {method: 'DELETE', credentials: 'same-origin', "
                       "headers: {'" + HEADER + "': '1'}});</script>")
"""The script a page runs after a sign-out, or when the browser's cookie stands for nobody any more."""
