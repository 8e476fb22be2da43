"""Sign-in throttling (per name and per client, persisted in the project), lockout and unlock, and the
scrypt cost: the real one, and re-hashing an older, cheaper hash on sign-in."""
from __future__ import annotations

import json

import pytest

from labeling.cli import main
from labeling.project import Project
from labeling.team import auth

REAL_N = auth.SCRYPT_N  # read at collection, before the suite's fixture lowers it for speed
PW = "correct horse battery"





@pytest.fixture
def project(small_project) -> Project:
    auth.add_user(small_project, "root", "admin-password", role="admin", by=None)
    auth.add_user(small_project, "bob", PW, role="annotator", by=None)
    return small_project


def _fail(project, name="bob", client=None, n=1):
    for _ in range(n):
        with pytest.raises(auth.AuthError, match="wrong name or password"):
            auth.sign_in(project, name, "wrong-password", client=client)


def _stored_hash(project, name):
    with project.db.session() as con:
        return con.execute("SELECT password_hash FROM users WHERE name = ?", [name]).fetchone()[0]


def test_real_cost_is_owasps_scrypt_n_2_17(monkeypatch):
    assert REAL_N == 2 ** 17 == 131072 and (auth.SCRYPT_R, auth.SCRYPT_P) == (8, 1)
    monkeypatch.setattr(auth, "SCRYPT_N", REAL_N)
    stored = auth.hash_password(PW)
    assert stored.startswith("scrypt$131072$8$1$")
    assert auth.verify_password(PW, stored) and not auth.verify_password(PW + "!", stored)
    assert not auth.needs_rehash(stored)


def test_back_off_after_failures_without_checking_the_password(project, clock):
    _fail(project, n=auth.FREE_FAILURES)  # the first failures cost no wait
    _fail(project)  # the 4th: now 1 s to wait
    with pytest.raises(auth.AuthError, match=r"too many failed sign-ins for 'bob': try again in 1 s"):
        auth.sign_in(project, "bob", PW)  # refused even with the right password
    clock.t += 1
    _fail(project)  # 5 failures: 2 s
    clock.t += 1.5
    with pytest.raises(auth.AuthError, match="try again in 1 s"):
        auth.sign_in(project, "bob", PW)
    clock.t += 0.5
    _fail(project)  # 6 failures: 4 s
    with pytest.raises(auth.AuthError, match="try again in 4 s"):
        auth.sign_in(project, "bob", "wrong-password")
    assert [auth.backoff_s(n) for n in range(1, 12)] == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
    # the count lives in the project database: another Project object (a restarted server) sees it
    with pytest.raises(auth.AuthError, match="too many failed sign-ins for 'bob'"):
        auth.sign_in(Project(project.root), "bob", PW)
    clock.t += 4
    assert auth.sign_in(project, "bob", PW).name == "bob"


def test_success_clears_the_counters(project, clock):
    _fail(project, client="10.0.0.1", n=auth.FREE_FAILURES)
    assert auth.sign_in(project, "bob", PW, client="10.0.0.1").role == "annotator"
    assert {u["name"]: u["failed_sign_ins"] for u in auth.list_users(project)}["bob"] == 0
    _fail(project, client="10.0.0.1", n=auth.FREE_FAILURES)  # a fresh allowance, no wait
    assert auth.sign_in(project, "bob", PW, client="10.0.0.1").name == "bob"


def test_a_client_is_throttled_across_names(project, clock):
    for name in ("alice", "carol", "dave", "erin"):  # one wrong try per name, all from one address
        _fail(project, name=name, client="10.0.0.9")
    with pytest.raises(auth.AuthError, match="too many failed sign-ins from this address: try again in 1 s"):
        auth.sign_in(project, "bob", PW, client="10.0.0.9")
    assert auth.sign_in(project, "bob", PW, client="10.0.0.10").name == "bob"  # another client may
    clock.t += 1
    assert auth.sign_in(project, "bob", PW, client="10.0.0.9").name == "bob"


def test_lockout_after_ten_failures_until_an_admin_unlocks(project, clock):
    for _ in range(auth.LOCKOUT_AFTER):
        _fail(project)
        clock.t += auth.BACKOFF_CAP_S
    clock.t += 3600  # waiting does not help
    with pytest.raises(auth.AuthError, match=r"'bob' is locked after 10 failed sign-ins: an admin can unlock it "
                                             r"with `python -m labeling user DIR unlock bob` or from Data → Team"):
        auth.sign_in(project, "bob", PW)
    assert {u["name"]: u["locked"] for u in auth.list_users(project)} == {"bob": True, "root": False}
    auth.add_user(project, "ann", "annotator-pw", role="annotator", by=None)
    ann = auth.sign_in(project, "ann", "annotator-pw")
    with pytest.raises(auth.AuthError, match="needs the admin role"):
        auth.unlock(project, "bob", by=ann)
    with pytest.raises(auth.AuthError, match="locked"):
        auth.sign_in(project, "bob", PW)
    admin = auth.sign_in(project, "root", "admin-password")
    assert auth.unlock(project, "bob", by=admin) is True
    assert auth.sign_in(project, "bob", PW).name == "bob"
    with pytest.raises(LookupError):
        auth.unlock(project, "nobody", by=admin)


def test_unknown_names_are_throttled_alike(project, clock):
    for name in ("bob", "ghost"):
        for _ in range(auth.LOCKOUT_AFTER):
            with pytest.raises(auth.AuthError) as exc:
                auth.sign_in(project, name, "wrong-password")
            assert str(exc.value) == "wrong name or password"
            clock.t += auth.BACKOFF_CAP_S
    messages = []
    for name in ("bob", "ghost"):
        with pytest.raises(auth.AuthError) as exc:
            auth.sign_in(project, name, "wrong-password")
        messages.append(str(exc.value).replace(name, "NAME"))
    assert messages[0] == messages[1] and "locked" in messages[0]


def test_an_older_cheaper_hash_is_redone_on_sign_in(project, monkeypatch, clock):
    assert _stored_hash(project, "bob").startswith("scrypt$16384$8$1$")  # made at N=2^14
    monkeypatch.setattr(auth, "SCRYPT_N", REAL_N)
    assert auth.sign_in(project, "bob", PW).name == "bob"
    stored = _stored_hash(project, "bob")
    assert stored.startswith("scrypt$131072$8$1$")
    assert auth.sign_in(project, "bob", PW).name == "bob"
    assert _stored_hash(project, "bob") == stored  # current already: left alone


def test_unlock_command(project, clock, capsys):
    for _ in range(auth.LOCKOUT_AFTER):
        _fail(project)
        clock.t += auth.BACKOFF_CAP_S
    capsys.readouterr()
    assert main(["user", str(project.root), "list"]) == 0
    assert "bob" in (line := next(ln for ln in capsys.readouterr().out.splitlines() if "bob" in ln)) \
        and "locked" in line
    assert main(["user", str(project.root), "unlock", "bob", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == {"name": "bob", "unlocked": True}
    assert auth.sign_in(project, "bob", PW).name == "bob"
    assert main(["user", str(project.root), "unlock", "nobody"]) == 2
    assert "no user 'nobody'" in capsys.readouterr().err
