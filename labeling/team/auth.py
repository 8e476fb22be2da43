"""People and roles: sign-in with scrypt-hashed passwords, and the checks every action passes.

Roles, each including the ones before it: ``annotator`` (label, skip, undo own batches),
``reviewer`` (adjudicate, undo anyone's batch, review pages), ``admin`` (manage users and the
project). A project runs in one of two modes, stored in its settings:

- ``local``: single-user mode for a laptop or the demo, chosen explicitly; no password, the person
  types a name and acts as an admin.
- ``team``: every session must sign in; what a session may do follows the signed-in user's role.

The checks live here, in the engine: a page hiding a button is a convenience, not the protection.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from labeling.project import Project
from storage import users as users_q

ROLES = users_q.ROLES
RANK = {role: k for k, role in enumerate(ROLES)}

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
"""scrypt cost (16 MiB of memory per hash): memory-hard, about 50 ms on a laptop core."""
MIN_PASSWORD = 8


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
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(got, base64.b64decode(digest))


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


def sign_in(project: Project, name: str, password: str) -> Identity:
    with project.db.session() as con:
        user = users_q.get_user(con, name)
    # same work whether or not the user exists: no timing oracle for user names
    ok = verify_password(password, user["password_hash"] if user and user["password_hash"] else _DUMMY)
    if user is None or not ok or user["password_hash"] is None:
        raise AuthError("wrong name or password")
    if user["disabled"]:
        raise AuthError(f"user {name!r} is disabled")
    return Identity(user["name"], user["role"])


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


_DUMMY = hash_password("not-a-real-password", salt=b"\0" * 16)
