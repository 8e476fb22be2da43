"""Team mode in a real headless Chromium before sign-in: every page URL shows the sign-in form and
nothing of the project, and no action runs. Skips (with the reason) without Chromium; with
``CI=true`` it must run."""
from __future__ import annotations

import time

import pytest
from conftest import CHROMIUM, require_chromium, start_server, stop_server

from labeling.service import LabelingService
from labeling.team import auth
from storage import labels as labels_q

pytestmark = pytest.mark.browser

URLS = ("", "label", "map", "review", "model", "data", "common", "team_admin", "sign-in", "nonsense")
"""Every file of app_pages/ and the app's own routes, and one that does not exist."""
PROJECT_WORDS = ("Statistics", "Export", "Suggestion", "Neighbourhood", "Colour by", "Round history",
                 "Conflicts", "Embed", "Retraining", "items labeled")


@pytest.fixture
def team_server(trained_project, tmp_path):
    require_chromium()
    service = LabelingService(trained_project)
    auth.add_user(service.project, "root", "correct horse", role="admin", by=None)
    auth.set_mode(service.project, "team", by=auth.Identity("root", "admin"))
    srv = start_server(trained_project, log=tmp_path / "server.log", retrain_events=10**6, retrain_seconds=10**6)
    try:
        yield srv.url, trained_project
    finally:
        stop_server(srv)


def test_no_page_shows_project_data_before_sign_in(team_server):
    from playwright.sync_api import sync_playwright

    url, root = team_server
    with LabelingService(root).project.db.session() as con:
        events_before = len(labels_q.all_events(con))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for path in URLS:
            page.goto(f"{url}/{path}")
            page.get_by_text("Sign in").first.wait_for(timeout=60_000)
            page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
            time.sleep(1.0)  # let any page that would render go on rendering
            body = page.inner_text("body")
            shown = [w for w in PROJECT_WORDS if w in body]
            assert not shown, f"/{path} shows {shown} before sign-in"
            nav = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
            assert not nav, f"/{path} lists pages before sign-in: {nav}"
            for key in ("Enter", "1", "s", "a"):  # the label page's shortcuts store nothing
                page.keyboard.press(key)
        # signing in opens the project
        page.goto(url)
        page.get_by_role("textbox", name="Name").fill("root")
        page.get_by_role("textbox", name="Password").fill("correct horse")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Signed in as").wait_for(timeout=60_000)
        browser.close()
    with LabelingService(root).project.db.session() as con:
        assert len(labels_q.all_events(con)) == events_before


def test_a_signed_in_browser_stays_signed_in_across_reloads_until_it_signs_out(team_server):
    """F5 and a page opened by its URL keep the sign-in (an HttpOnly cookie the engine checks on every
    run); signing out ends it, and a copy of the old cookie signs nobody in."""
    from playwright.sync_api import sync_playwright

    url, _root = team_server
    args = ["--no-sandbox", "--disable-gpu"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(url)
        page.get_by_role("textbox", name="Name").fill("root")
        page.get_by_role("textbox", name="Password").fill("correct horse")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Signed in as").wait_for(timeout=60_000)
        deadline = time.monotonic() + 30
        while not [c for c in context.cookies() if c["name"] == "quorum_session"] and time.monotonic() < deadline:
            time.sleep(0.2)
        cookie = next(c for c in context.cookies() if c["name"] == "quorum_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie").find("quorum_session") < 0  # the page's scripts cannot read it

        page.reload()
        page.get_by_text("Signed in as").wait_for(timeout=60_000)
        page.goto(f"{url}/map")
        page.get_by_text("Colour by").first.wait_for(timeout=60_000)
        page.get_by_text("Signed in as").wait_for(timeout=60_000)  # the sidebar is drawn after the page

        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
        page.reload()
        page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
        time.sleep(1.0)
        assert "Signed in as" not in page.inner_text("body")

        copied = browser.new_context()  # the old cookie, replayed after the sign-out
        copied.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path")}])
        other = copied.new_page()
        other.goto(f"{url}/label")
        other.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
        time.sleep(1.0)
        assert "Signed in as" not in other.inner_text("body")
        browser.close()
