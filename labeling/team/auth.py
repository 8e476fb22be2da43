"""People and roles: sign-in with scrypt-hashed passwords, and the checks every action passes.

Roles, each including the ones before it: ``annotator`` (label, skip, undo own batches),
``reviewer`` (adjudicate, undo anyone's batch, review pages), ``admin`` (manage users and the
project). A project runs in one of two modes, stored in its settings:

- ``local``: single-user mode for a laptop or the demo, chosen explicitly; no password, the person
  types a name and acts as an admin.
- ``team``: every session must sign in; what a session may do follows the signed-in user's role.

The checks live here, in the engine: a page hiding a button is a convenience, not the protection.

Sign-in is throttled in the project database, so the limits hold across sessions and restarts: every
name and every client address counts its consecutive failures; past :data:`FREE_FAILURES` the next
attempt waits a doubling delay (capped at :data:`BACKOFF_CAP_S`), and a name is locked after
:data:`LOCKOUT_AFTER` failures until an admin unlocks it (:func:`unlock`). A success clears both.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import threading
import time
from dataclasses import dataclass

from labeling.project import Project
from storage import users as users_q

ROLES = users_q.ROLES
RANK = {role: k for k, role in enumerate(ROLES)}

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 17, 8, 1
"""scrypt cost, OWASP's recommendation (128 MiB of memory per hash, about 0.3 s on a laptop core). A hash
made with a lower cost is redone at this one on its user's next sign-in. The test suite lowers
``SCRYPT_N`` (this module attribute, nothing else) to keep its many sign-ins fast."""
MIN_PASSWORD = 8

FREE_FAILURES = 3
"""Failed sign-ins of a name or a client that cost no wait; each one after them doubles the wait."""
BACKOFF_BASE_S, BACKOFF_CAP_S = 1.0, 60.0
LOCKOUT_AFTER = 10
"""Consecutive failed sign-ins after which a name is locked until an admin unlocks it."""
_clock = time.time
"""The time sign-in throttling reads (tests replace it instead of sleeping)."""
_THROTTLE = threading.Lock()
"""Serialises this process's check-and-count of an attempt (Streamlit sessions are threads)."""


class AuthError(PermissionError):
    """Sign-in failed, or the signed-in user may not do this."""


@dataclass(frozen=True)
class Identity:
    """Who a session acts as. Only :func:`sign_in` and :func:`local_identity` make one."""

    name: str
    role: str
    local: bool = False
    """Made by :func:`local_identity` (single-user mode), not by a sign-in."""

    def allows(self, role: str) -> bool:
        return RANK.get(self.role, -1) >= RANK[role]


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64); the password itself is never stored."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    salt = salt or os.urandom(16)
    n, r, p = SCRYPT_N, SCRYPT_R, SCRYPT_P
    digest = _scrypt(password, salt, n, r, p)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # OpenSSL refuses past 32 MiB unless told: allow what these parameters need (128·r·(N + p + 2) bytes)
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32,
                          maxmem=128 * r * (n + p + 2) + 2 ** 20)


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    return hmac.compare_digest(got, base64.b64decode(digest))


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with a lower cost than the current one."""
    try:
        scheme, n, r, p, _salt, _digest = stored.split("$")
        return scheme != "scrypt" or int(n) < SCRYPT_N or int(r) < SCRYPT_R or int(p) < SCRYPT_P
    except ValueError:
        return True


_DUMMIES: dict[tuple[int, int, int], str] = {}


def _dummy_hash() -> str:
    """A hash at the current cost to check unknown names against (made on first use, not at import)."""
    cost = (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    if cost not in _DUMMIES:
        _DUMMIES[cost] = hash_password("not-a-real-password", salt=b"\0" * 16)
    return _DUMMIES[cost]


def mode(project: Project) -> str:
    """``local`` (default for a new project) or ``team``."""
    return project.setting("auth_mode", "local") or "local"


def set_mode(project: Project, value: str, *, by: Identity) -> None:
    require(by, "admin")
    if value not in ("local", "team"):
        raise ValueError("mode must be 'local' or 'team'")
    if value == "team":
        with project.db.session() as con:
            admins = [u for u in users_q.list_users(con) if u["role"] == "admin" and not u["disabled"]]
        if not admins:
            raise ValueError("team mode needs an admin with a password first: python -m labeling user add NAME --role admin")
    project.set_setting("auth_mode", value)


def local_identity(project: Project, name: str) -> Identity:
    """The identity of single-user local mode; refused when the project is in team mode."""
    if mode(project) != "local":
        raise AuthError("this project is in team mode: sign in with your name and password")
    if not name.strip():
        raise ValueError("a name is required")
    return Identity(name.strip(), "admin", local=True)


def backoff_s(failures: int) -> float:
    """The wait after ``failures`` consecutive failed sign-ins of one name or client."""
    if failures <= FREE_FAILURES:
        return 0.0
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - FREE_FAILURES - 1))


def sign_in(project: Project, name: str, password: str, client: str | None = None) -> Identity:
    """The identity of ``name`` when ``password`` is theirs. ``client`` (the browser's address, when the
    caller knows it) is throttled as well as the name, so one client cannot try many names quickly.

    A refused attempt (waiting, locked) checks no password. Unknown names are counted and locked like
    known ones and get the same messages: nothing tells whether a name exists."""
    keys = [f"name:{name}"] + ([f"client:{client}"] if client else [])
    now = _clock()
    with _THROTTLE, project.db.session() as con:
        rows = [users_q.get_failures(con, k) for k in keys]
        if rows[0] and rows[0]["locked"]:
            raise AuthError(f"{name!r} is locked after {LOCKOUT_AFTER} failed sign-ins: an admin can unlock it "
                            f"with `python -m labeling user DIR unlock {name}` or from Data → Team")
        waits = [r["last_failure"] + backoff_s(r["failures"]) - now if r else 0.0 for r in rows]
        if max(waits) > 0:
            who = f"for {name!r}" if waits[0] >= max(waits) else "from this address"
            raise AuthError(f"too many failed sign-ins {who}: try again in {math.ceil(max(waits))} s")
        user = users_q.get_user(con, name)
        # counted as a failure until the password is checked: parallel attempts cannot pass the wait
        # (a read-only project cannot count: its sign-ins go unthrottled)
        for key in keys if not getattr(project.db, "read_only", False) else ():
            users_q.add_failure(con, key, now, LOCKOUT_AFTER if key.startswith("name:") else None)
    stored = user["password_hash"] if user and user["password_hash"] else None
    # same work whether or not the user exists: no timing oracle for user names
    ok = verify_password(password, stored or _dummy_hash())
    if user is None or not ok or stored is None:
        raise AuthError("wrong name or password")
    if not getattr(project.db, "read_only", False):
        rehashed = hash_password(password) if needs_rehash(stored) and len(password) >= MIN_PASSWORD else None
        with _THROTTLE, project.db.session() as con:
            users_q.clear_failures(con, *keys)
            if rehashed:
                users_q.set_password_hash(con, user["name"], rehashed)
    if user["disabled"]:
        raise AuthError(f"user {name!r} is disabled")
    return Identity(user["name"], user["role"])


def unlock(project: Project, name: str, *, by: Identity | None) -> bool:
    """Clear ``name``'s failed sign-ins and lock. ``by`` None is the command line run by whoever owns the
    project files. Returns whether there was anything to clear."""
    if by is not None:
        require(by, "admin", "unlock a user")
    with _THROTTLE, project.db.session() as con:
        if users_q.get_user(con, name) is None and users_q.get_failures(con, f"name:{name}") is None:
            raise LookupError(f"no user {name!r}")
        return users_q.clear_failures(con, f"name:{name}") > 0


def refresh(project: Project, identity: Identity) -> Identity:
    """``identity`` as the project knows it now: an open session's role follows an admin's change on its
    next action, and a disabled or removed user's next action is refused (one small query)."""
    if mode(project) == "local":
        return identity
    if identity.local:
        raise AuthError("this project is in team mode now: sign in with your name and password")
    with project.db.session() as con:
        user = users_q.get_user(con, identity.name)
    if user is None or user["password_hash"] is None:
        raise AuthError(f"{identity.name} is not a user of this project any more: sign in again")
    if user["disabled"]:
        raise AuthError(f"user {identity.name!r} is disabled")
    return identity if user["role"] == identity.role else Identity(user["name"], user["role"])


def require(identity: Identity, role: str, action: str | None = None) -> None:
    """The one role check of every entry point (pages, command line, Python API): refuse with
    :class:`AuthError` unless ``identity`` has ``role`` or a higher one."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    if identity.role not in RANK or not identity.allows(role):
        what = f"may not {action}" if action else "may not do this"
        raise AuthError(f"{identity.name} ({identity.role}) {what}: that needs the {role} role")


def add_user(project: Project, name: str, password: str, *, role: str = "annotator", by: Identity | None) -> None:
    """Create a user. ``by`` None is the command line run by whoever owns the project files."""
    if by is not None:
        require(by, "admin")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    if not name.strip():
        raise ValueError("a user name is required")
    digest = hash_password(password)
    with project.db.session() as con:
        if users_q.get_user(con, name.strip()) is not None:
            raise ValueError(f"user {name!r} exists")
        users_q.add_user(con, name.strip(), role, digest)


def set_role(project: Project, name: str, role: str, *, by: Identity | None) -> None:
    if by is not None:
        require(by, "admin")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    with project.db.session() as con:
        if users_q.get_user(con, name) is None:
            raise LookupError(f"no user {name!r}")
        users_q.set_role(con, name, role)


def set_disabled(project: Project, name: str, disabled: bool, *, by: Identity | None) -> None:
    if by is not None:
        require(by, "admin")
    with project.db.session() as con:
        if users_q.get_user(con, name) is None:
            raise LookupError(f"no user {name!r}")
        users_q.set_disabled(con, name, disabled)


def list_users(project: Project) -> list[dict]:
    with project.db.session() as con:
        return users_q.list_users(con)

