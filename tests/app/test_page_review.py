"""The Review page through AppTest: settling a conflict, fixing a suspect, auditing a batch, undoing; roles."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from labeling.team import auth

from labeling.team import review
from labeling.project import Project
from labeling.service import LabelingService

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _review(root, app_env) -> AppTest:
    app_env(root)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page("app_pages/review.py").run()
    assert not at.exception, at.exception
    return at


def test_reviewer_settles_a_conflict_and_history_shows_it(trained_project, app_env):
    service = LabelingService(trained_project)
    item = service.queue(1)[0].item_id
    service.label([item], "cat", user="alice")
    service.label([item], "dog", user="bob")
    at = _review(trained_project, app_env)
    assert at.title[0].value == "Review"
    at.button(key=f"settle_{item}_cat").click().run()
    assert not at.exception, at.exception
    assert service.current_labels()[item] == ("cat", "tester", "adjudication")
    assert not [b for b in at.button if b.key == f"settle_{item}_cat"]  # settled: off the list
    history = service.history(item)
    assert [(h["user"], h["label"], h["source"]) for h in history][-1] == ("tester", "cat", "adjudication")


def test_audit_and_batch_undo_from_the_page(trained_project, app_env):
    service = LabelingService(trained_project)
    ids = [q.item_id for q in service.queue(20)]
    batch = service.label(ids, "cat", user="alice", source="accept_neighbourhood")
    sample = review.audit_sample(ids, batch)
    at = _review(trained_project, app_env)
    at.button(key=f"audit_ok_{batch}_{sample[0]}").click().run()
    assert not at.exception, at.exception
    [audit] = [a for a in review.audits(service.project) if a["batch_id"] == batch]
    assert (audit["checked"], audit["confirmed"]) == (1, 1)
    at.button(key=f"undo_batch_{batch}").click().run()  # a reviewer undoes alice's batch
    labels = service.current_labels()
    assert all(labels.get(i, (None,))[0] != "cat" or labels[i][2] == "adjudication" for i in ids)
    assert sample[0] in labels  # the reviewer's own confirmation stays: it is a separate event


def test_annotators_cannot_reach_review_even_by_address(trained_project, app_env):
    project = Project(trained_project)
    auth.add_user(project, "root", "admin-password", role="admin", by=None)
    auth.add_user(project, "ann", "annotator-pw", role="annotator", by=None)
    project.set_setting("auth_mode", "team")
    app_env(trained_project)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.text_input(key="signin_name").input("ann")
    at.text_input(key="signin_password").input("annotator-pw")
    at.button[0].click().run()
    assert not at.exception, at.exception
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("app_pages/review.py")  # not in an annotator's navigation at all
    # and the page itself refuses an annotator's session, should it be reached some other way
    page = AppTest.from_file(str(Path(APP).parent / "app_pages" / "review.py"), default_timeout=90)
    page.session_state["identity"] = auth.sign_in(project, "ann", "annotator-pw")
    page.run()
    assert any("needs the reviewer role" in e.value for e in page.error)
    assert not [b for b in page.button if (b.key or "").startswith(("settle_", "undo_batch_"))]


def test_admin_manages_people_and_overlap_on_the_data_page(trained_project, app_env):
    app_env(trained_project)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page("app_pages/data.py").run()
    assert not at.exception, at.exception
    at.text_input(key="new_user_name").input("rita")
    at.text_input(key="new_user_password").input("reviewer-password")
    at.selectbox(key="new_user_role").select("reviewer")
    at.button(key="FormSubmitter:add_user-Add person").click().run()
    assert not at.exception, at.exception
    project = Project(trained_project)
    users = {u["name"]: u for u in auth.list_users(project)}
    assert users["rita"]["role"] == "reviewer"
    assert auth.sign_in(project, "rita", "reviewer-password").role == "reviewer"
    at.slider(key="overlap_fraction").set_value(20)
    at.button(key="overlap_save").click().run()
    assert review.overlap_settings(project)[:2] == (0.2, 2)


def test_agreement_tab_shows_the_figures(trained_project, app_env):
    from sklearn.metrics import cohen_kappa_score

    service = LabelingService(trained_project)
    ids = [q.item_id for q in service.queue(12)]
    a = ["cat", "dog", "cat", "cow"] * 3
    b = ["cat", "dog", "dog", "cow"] * 3
    for i, x, y in zip(ids, a, b):
        service.label([i], x, user="alice")
        service.label([i], y, user="bob")
    at = _review(trained_project, app_env)
    frames = [d.value for d in at.dataframe]
    pair = next(f for f in frames if "kappa" in f.columns)
    assert pair["kappa"].iloc[0] == pytest.approx(round(cohen_kappa_score(a, b), 3))
    assert any(m.label == "Krippendorff's alpha" for m in at.metric)


def test_suspected_errors_page_through_every_suspect(trained_project, app_env, monkeypatch):
    service = LabelingService(trained_project)
    items = sorted(service.current_labels())[:29]
    fake = [{"item_id": i, "uri": None, "thumb": None, "label": "cat", "suggested": "dog", "confidence": 0.9,
             "threshold": 0.6, "neighbour_disagreement": 0.8, "score": 1.0 - k / 100, "labeled_by": "alice",
             "source": "manual"} for k, i in enumerate(items)]
    monkeypatch.setattr(review, "suspected_errors", lambda service, **kw: fake)
    at = _review(trained_project, app_env)

    def shown() -> list[int]:
        return [int(b.key.removeprefix("fix_")) for b in at.button if b.key and b.key.startswith("fix_")]

    assert shown() == items[:12]  # most likely first
    assert at.button(key="suspects_prev").disabled
    at.button(key="suspects_next").click().run()
    assert shown() == items[12:24]
    at.button(key="suspects_next").click().run()
    assert shown() == items[24:]  # the last page: every suspect reachable
    assert at.button(key="suspects_next").disabled
    assert any("suspects 25-29 of 29" in c.value for c in at.caption)
    at.button(key="suspects_prev").click().run()
    assert shown() == items[12:24]
