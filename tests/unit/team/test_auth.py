"""People and roles: hashed passwords, sign-in, role checks in the engine, the user command."""
from __future__ import annotations

import io

import pytest

from labeling.team import auth
from labeling.cli import main
from labeling.project import Project


def test_password_is_stored_as_a_memory_hard_hash(demo_project):
    project = Project(demo_project)
    auth.add_user(project, "ada", "correct horse battery", role="reviewer", by=None)
    with project.db.session() as con:
        stored = con.execute("SELECT password_hash FROM users WHERE name = 'ada'").fetchone()[0]
        dump = " ".join(str(r) for r in con.execute("SELECT * FROM users").fetchall())
    assert stored.startswith("scrypt$16384$8$1$") and "correct horse" not in dump
    assert auth.verify_password("correct horse battery", stored)
    assert not auth.verify_password("correct horse batterY", stored)
    assert auth.hash_password("correct horse battery") != stored  # salted


def test_sign_in_roles_and_disable(demo_project):
    project = Project(demo_project)
    auth.add_user(project, "root", "admin-password", role="admin", by=None)
    admin = auth.sign_in(project, "root", "admin-password")
    auth.add_user(project, "ann", "annotator-pw", role="annotator", by=admin)
    ann = auth.sign_in(project, "ann", "annotator-pw")
    assert ann.role == "annotator" and ann.allows("annotator") and not ann.allows("reviewer")
    with pytest.raises(auth.AuthError):
        auth.add_user(project, "mallory", "mallory-pw", role="admin", by=ann)  # annotators manage nobody
    with pytest.raises(auth.AuthError):
        auth.set_role(project, "ann", "admin", by=ann)  # nor promote themselves
    with pytest.raises(auth.AuthError, match="wrong name or password"):
        auth.sign_in(project, "ann", "nope-nope")
    with pytest.raises(auth.AuthError, match="wrong name or password"):
        auth.sign_in(project, "ghost", "whatever-pw")
    auth.set_disabled(project, "ann", True, by=admin)
    with pytest.raises(auth.AuthError, match="disabled"):
        auth.sign_in(project, "ann", "annotator-pw")
    with pytest.raises(ValueError, match="at least"):
        auth.add_user(project, "shorty", "short", by=admin)


def test_team_mode_refuses_local_identities(demo_project):
    project = Project(demo_project)
    assert auth.mode(project) == "local" and auth.local_identity(project, "me").role == "admin"
    local = auth.local_identity(project, "me")
    with pytest.raises(ValueError, match="needs an admin"):
        auth.set_mode(project, "team", by=local)
    auth.add_user(project, "root", "admin-password", role="admin", by=None)
    auth.set_mode(project, "team", by=local)
    with pytest.raises(auth.AuthError, match="team mode"):
        auth.local_identity(project, "me")


def test_user_command(demo_project, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main(["user", str(demo_project), "add", "bob", "reviewer", "--password-stdin"]) == 0
    assert main(["user", str(demo_project), "set-role", "bob", "admin"]) == 0
    assert main(["user", str(demo_project), "disable", "bob"]) == 0
    capsys.readouterr()
    assert main(["user", str(demo_project), "list", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"role": "admin"' in out and '"disabled": true' in out and "a-long-password" not in out
    assert main(["user", str(demo_project), "mode", "team"]) == 2  # the only admin is disabled


def test_annotators_undo_only_their_own_batches(demo_project):
    from labeling.service import LabelingService

    service = LabelingService(demo_project)
    ids = [q.item_id for q in service.queue(2)]
    alices = service.label([ids[0]], "cat", user="alice")
    with pytest.raises(auth.AuthError, match="only their own"):
        service.undo(alices, user="bob", role="annotator")
    assert ids[0] in service.current_labels()
    assert service.undo(alices, user="rita", role="reviewer") == [ids[0]]  # reviewers may
    bobs = service.label([ids[1]], "dog", user="bob")
    assert service.undo(bobs, user="bob", role="annotator") == [ids[1]]  # one's own: always


def test_user_command_takes_the_role_as_the_readme_prints_it(demo_project, monkeypatch, capsys):
    """``user DIR add alice --role annotator`` (the README's form) and the positional form agree."""
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\nanother-password\n"))
    assert main(["user", str(demo_project), "add", "alice", "--role", "reviewer", "--password-stdin"]) == 0
    assert main(["user", str(demo_project), "add", "carl", "--password-stdin"]) == 0  # annotator by default
    assert main(["user", str(demo_project), "set-role", "carl", "--role", "admin"]) == 0
    assert main(["user", str(demo_project), "set-role", "carl", "reviewer", "--role", "admin"]) == 2  # two roles
    roles = {u["name"]: u["role"] for u in auth.list_users(Project(demo_project))}
    assert roles == {"alice": "reviewer", "carl": "admin"}


def test_the_command_line_undoes_another_persons_batch_as_the_owner_and_says_so(demo_project, capsys):
    """``undo DIR --user alice --batch <bob's batch>`` is the owner's act: the history records the
    owner, not alice, and the output says whose batch it undid."""
    from labeling.service import LabelingService

    service = LabelingService(demo_project)
    item = service.queue(1)[0].item_id
    bobs = service.label([item], "cat", user="bob")
    capsys.readouterr()
    assert main(["undo", str(demo_project), "--user", "alice", "--batch", bobs]) == 0
    out = capsys.readouterr().out
    assert "undid 1 label of bob's batch as the project owner (recorded as 'owner')" in out
    undo_events = [e for e in service.history(item) if e["kind"] == "undo"]
    assert [e["user"] for e in undo_events] == ["owner"]
    mine = service.label([item], "dog", user="alice")
    assert main(["undo", str(demo_project), "--user", "alice", "--format", "json"]) == 0
    assert '"recorded_as": "alice"' in capsys.readouterr().out  # one's own batch: recorded as oneself
    assert item not in service.current_labels() and mine
