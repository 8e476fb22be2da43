"""The pages' facade: one person's session, re-checked against the project on every action."""
from __future__ import annotations

import pytest

from labeling.results import ItemCard, Neighbour
from labeling.service import LabelingService
from labeling.session import AuthError, Session, local_identity, sign_in
from labeling.team import auth

PASSWORD = "correct horse"


@pytest.fixture
def team(demo_project):
    service = LabelingService(demo_project)
    for name, role in (("root", "admin"), ("eve", "admin"), ("ann", "annotator")):
        auth.add_user(service.project, name, PASSWORD, role=role, by=None)
    auth.set_mode(service.project, "team", by=auth.Identity("root", "admin"))
    return service


def test_a_demoted_admin_cannot_act_as_admin_in_an_open_session(team):
    eve = Session(team, sign_in(team, "eve", PASSWORD))
    root = Session(team, sign_in(team, "root", PASSWORD))
    eve.add_user("carl", PASSWORD, role="annotator")  # still an admin
    root.set_role("eve", "annotator")
    with pytest.raises(AuthError, match="admin"):
        eve.add_user("mallory", PASSWORD, role="admin")
    assert eve.who.role == "annotator"
    assert "mallory" not in {u["name"] for u in root.users()}


def test_a_disabled_users_open_session_stores_nothing(team):
    ann = Session(team, sign_in(team, "ann", PASSWORD))
    item = ann.queue(1)[0].item_id
    ann.label([item], "cat")
    Session(team, sign_in(team, "root", PASSWORD)).set_disabled("ann", True)
    before = team.current_labels()
    with pytest.raises(AuthError, match="disabled"):
        ann.label([ann.queue(1)[0].item_id], "dog")
    with pytest.raises(AuthError, match="disabled"):
        ann.undo()
    assert team.current_labels() == before


def test_a_local_session_ends_when_the_project_switches_to_team_mode(demo_project):
    service = LabelingService(demo_project)
    me = Session(service, local_identity(service, "me"))
    me.label([me.queue(1)[0].item_id], "cat")
    auth.add_user(service.project, "root", PASSWORD, role="admin", by=None)
    auth.set_mode(service.project, "team", by=auth.Identity("root", "admin"))
    with pytest.raises(AuthError, match="sign in"):
        me.label([me.queue(1)[0].item_id], "dog")


def test_annotators_may_not_adjudicate_or_manage_through_the_session(team):
    ann = Session(team, sign_in(team, "ann", PASSWORD))
    item = ann.queue(1)[0].item_id
    with pytest.raises(AuthError, match="reviewer"):
        ann.adjudicate([item], "cat")
    for action in (lambda: ann.set_overlap(0.2), ann.users, lambda: ann.set_role("ann", "admin")):
        with pytest.raises(AuthError):
            action()


def test_results_are_typed_records(team):
    ann = Session(team, sign_in(team, "ann", PASSWORD))
    item = ann.queue(1)[0].item_id
    card = ann.card(item)
    assert isinstance(card, ItemCard) and card.item_id == item and card.current is None
    ann.label([item], "cat")
    assert ann.card(item).current.label == "cat" and ann.card(item).current.user == "ann"
    near = ann.neighbours(item)
    assert near and all(isinstance(n, Neighbour) for n in near)
    assert ann.newest_round_id() == ann.current_round().id


def test_class_changes_imports_and_exports_follow_the_roles(team, tmp_path):
    ann = Session(team, sign_in(team, "ann", PASSWORD))
    ann.data.add_class("zebra-ish")  # adding while labeling stays open to annotators
    for action in (lambda: ann.data.rename_class("zebra-ish", "zebroid"),
                   lambda: ann.data.merge_classes("zebra-ish", "cat"),
                   lambda: ann.data.run_export("csv", "mine.csv"),
                   lambda: ann.data.run_import("images"),
                   lambda: ann.data.run_embed(),
                   lambda: ann.data.run_label_import("exports/labels.csv")):
        with pytest.raises(AuthError):
            action()
    assert not (team.project.root / "exports" / "mine.csv").exists()
    auth.add_user(team.project, "rita", PASSWORD, role="reviewer", by=None)
    rita = Session(team, sign_in(team, "rita", PASSWORD))
    rita.data.rename_class("zebra-ish", "zebroid")
    assert "zebroid" in rita.class_names()
    with pytest.raises(AuthError, match="admin"):
        rita.data.run_import("images")


def test_one_map_builder_per_project_shared_by_its_sessions(team, small_project):
    a = Session(team, sign_in(team, "ann", PASSWORD))
    b = Session(team, sign_in(team, "root", PASSWORD))
    assert a.map.builder() is b.map.builder()
    other = LabelingService(small_project.root)
    assert Session(other, local_identity(other, "me")).map.builder() is not a.map.builder()
