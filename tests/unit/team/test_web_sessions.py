"""A signed-in browser stays signed in across reloads, and no longer than it should."""
from __future__ import annotations

import pytest

from labeling.project import Project
from labeling.team import auth, web_sessions
from labeling.team.auth import AuthError


@pytest.fixture
def team(small_project, monkeypatch) -> Project:
    clock = [1_000_000.0]
    monkeypatch.setattr(auth, "_clock", lambda: clock[0])
    small_project.clock = clock
    auth.add_user(small_project, "root", "admin-password", role="admin", by=None)
    auth.add_user(small_project, "alice", "alice-password", role="annotator", by=None)
    auth.set_mode(small_project, "team", by=auth.local_identity(small_project, "me"))
    return small_project


def test_a_token_resumes_its_user_with_the_current_role(team):
    alice = auth.sign_in(team, "alice", "alice-password")
    token = web_sessions.start(team, alice)
    assert web_sessions.is_token(token)
    assert web_sessions.resume(team, token) == alice
    auth.set_role(team, "alice", "reviewer", by=None)
    assert web_sessions.resume(team, token).role == "reviewer"  # a role change holds on the next run
    with team.db.session() as con:  # only the hash is stored
        stored = con.execute("SELECT token_hash FROM web_sessions").fetchall()
    assert stored and token not in str(stored)


def test_expired_revoked_unknown_and_malformed_tokens_stand_for_nobody(team):
    token = web_sessions.start(team, auth.sign_in(team, "alice", "alice-password"), hours=1)
    assert web_sessions.resume(team, token) is not None
    team.clock[0] += 3601
    assert web_sessions.resume(team, token) is None  # expired
    token = web_sessions.start(team, auth.sign_in(team, "alice", "alice-password"))
    assert web_sessions.end(team, token) and not web_sessions.end(team, token)
    assert web_sessions.resume(team, token) is None  # signed out
    for junk in (None, "", "x" * 43, "a" * 42, "<script>", 42):
        assert web_sessions.resume(team, junk) is None


def test_a_disabled_user_is_refused_and_local_mode_needs_no_token(team):
    token = web_sessions.start(team, auth.sign_in(team, "alice", "alice-password"))
    auth.set_disabled(team, "alice", True, by=None)
    with pytest.raises(AuthError, match="disabled"):
        web_sessions.resume(team, token)
    auth.set_disabled(team, "alice", False, by=None)
    assert web_sessions.end_all(team, "alice") == 1 and web_sessions.resume(team, token) is None
    token = web_sessions.start(team, auth.sign_in(team, "alice", "alice-password"))
    auth.set_mode(team, "local", by=auth.sign_in(team, "root", "admin-password"))
    assert web_sessions.resume(team, token) is None
    with pytest.raises(AuthError):
        web_sessions.start(team, auth.local_identity(team, "me"))


def test_the_scripts_carry_only_a_checked_token():
    token = "A" * 43
    script = web_sessions.set_cookie_script(token)
    assert token in script and web_sessions.ROUTE in script and web_sessions.HEADER in script
    with pytest.raises(ValueError):
        web_sessions.set_cookie_script("'); alert(1); ('" + "a" * 30)
    assert "DELETE" in web_sessions.CLEAR_COOKIE_SCRIPT
