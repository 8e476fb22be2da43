"""Sign-in throttling through the pages: the sign-in form refuses after repeated failures, and an admin
unlocks a locked person from Data → Team."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from labeling.project import Project
from labeling.team import auth

APP = str(Path(__file__).resolve().parents[2] / "app.py")





def test_sign_in_form_backs_off_after_failures(demo_project, app_env, clock):
    project = Project(demo_project)
    auth.add_user(project, "root", "admin-password", role="admin", by=None)
    auth.add_user(project, "ann", "annotator-pw", role="annotator", by=None)
    project.set_setting("auth_mode", "team")
    app_env(demo_project)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.text_input(key="signin_name").input("ann")
    for _ in range(auth.FREE_FAILURES + 1):
        at.text_input(key="signin_password").input("wrong-password")
        at.button[0].click().run()
        assert any("wrong name or password" in e.value for e in at.error)
    at.text_input(key="signin_password").input("annotator-pw")
    at.button[0].click().run()
    assert any("too many failed sign-ins for 'ann': try again in 1 s" in e.value for e in at.error)
    assert "identity" not in at.session_state
    clock.t += 1
    at.text_input(key="signin_password").input("annotator-pw")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.session_state["identity"].name == "ann"


def test_admin_unlocks_a_locked_person_on_the_team_tab(demo_project, app_env, clock):
    project = Project(demo_project)
    auth.add_user(project, "bob", "bobs-password", role="annotator", by=None)
    for _ in range(auth.LOCKOUT_AFTER):
        with pytest.raises(auth.AuthError):
            auth.sign_in(project, "bob", "wrong-password")
        clock.t += auth.BACKOFF_CAP_S
    with pytest.raises(auth.AuthError, match="locked"):
        auth.sign_in(project, "bob", "bobs-password")
    app_env(demo_project)  # local mode: the person at the keyboard is an admin
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page("app_pages/data.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="unlock_user").value == "bob"
    at.button(key="unlock_set").click().run()
    assert not at.exception, at.exception
    assert any("bob is unlocked" in s.value for s in at.success)
    assert not [b for b in at.button if b.key == "unlock_set"]  # nobody is locked any more
    assert auth.sign_in(project, "bob", "bobs-password").name == "bob"
