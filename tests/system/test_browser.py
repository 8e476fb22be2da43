"""The whole app once in a real headless Chromium, as a person would use it.

Keyboard labeling, a neighbourhood accepted and undone, a box selection on the map labeled as one
batch, and a new model round appearing without a reload. Skips (with the reason) on a machine
without Chromium; with ``CI=true`` it must run.
"""
from __future__ import annotations

import os
import re
import shutil
import time

import pytest
from conftest import CHROMIUM, require_chromium, served_page, start_server, stop_server, true_rows

from labeling.service import LabelingService
from storage import labels as labels_q

pytestmark = pytest.mark.browser


def _events(root):
    with LabelingService(root).project.db.session() as con:
        return labels_q.all_events(con)


def _wait(predicate, timeout=60.0, step=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def _settled(page, quiet=1.0, timeout=30.0):
    """Wait until the app has not been running for ``quiet`` seconds: the reruns a slider's key presses
    started are over, so a button clicked next carries the last value's arguments."""
    running = page.locator('[data-testid="stStatusWidget"]')
    deadline, calm_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if running.count():
            calm_since = None
        elif calm_since is None:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the app to finish its reruns")


@pytest.fixture
def server(trained_project, tmp_path):
    require_chromium()
    # the map stays PCA (QUORUM_MAP_BUILD=0, set by start_server): a finished UMAP reloads the page mid-gesture
    srv = start_server(trained_project, log=tmp_path / "server.log", retrain_events=5, retrain_seconds=5,
                       env={"QUORUM_USER": "browser"})
    try:
        yield srv.url, trained_project
    finally:
        stop_server(srv)


def test_label_flow_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    url, root = server
    service = LabelingService(root)
    first_round = service.predictions()[0]["id"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            page.get_by_text("Suggestion:").first.wait_for(timeout=90_000)
            page.wait_for_timeout(1000)

            # 20 items from the keyboard: Enter accepts the suggestion, 1..3 pick a class
            caption = page.locator('[data-testid="stImageCaption"]').first
            for k in range(20):
                before = len(_events(root))
                shown = caption.inner_text()
                page.keyboard.press("Enter" if k % 2 == 0 else str(1 + k % 3))
                _wait(lambda: len(_events(root)) == before + 1, 30, what=f"label {k + 1} to be stored")
                assert _events(root)[-1][1] == service.item_id_for_uri(shown)  # the item on screen was labeled
                _wait(lambda: caption.inner_text() != shown, 30, what="the next item")
            manual = [e for e in _events(root) if e[4] == "browser"]
            assert len(manual) == 20
            assert {e[5] for e in manual} == {"accept_suggestion", "manual"}

            # accept a neighbourhood (A) with a permissive threshold, then undo it (Ctrl+Z)
            before = len(_events(root))
            page.keyboard.press("a")
            _wait(lambda: len(_events(root)) > before, 30, what="the neighbourhood batch")
            batch = _events(root)[-1][6]
            items = [e[1] for e in _events(root) if e[6] == batch]
            assert items and all(i in service.current_labels() for i in items)
            page.wait_for_timeout(1500)
            page.keyboard.press("Control+z")
            _wait(lambda: not any(i in service.current_labels() for i in items), 30, what="the undo")

            # the map: drag a box over part of the plot and label the selection as one batch
            page.get_by_role("link", name="Map").click()
            chart = page.locator(".js-plotly-plot").first
            chart.wait_for(timeout=60_000)
            page.wait_for_timeout(2000)
            # a lasso around most of the plot area (retried: the chart may still be settling)
            selected = page.get_by_role("heading").filter(has_text="selected")
            for _attempt in range(3):
                box = chart.locator(".nsewdrag").first.bounding_box()
                corners = [(0.03, 0.03), (0.97, 0.03), (0.97, 0.97), (0.03, 0.97), (0.03, 0.05)]
                pts = [(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy) for fx, fy in corners]
                page.mouse.move(*pts[0])
                page.mouse.down()
                for pt in pts[1:]:
                    page.mouse.move(*pt, steps=10)
                page.mouse.up()
                try:
                    selected.first.wait_for(timeout=15_000)
                    break
                except PlaywrightTimeout:
                    page.wait_for_timeout(2000)
            selected.first.wait_for(timeout=15_000)
            # no class is chosen for the person: the button waits for one
            label_button = page.get_by_role("button", name=re.compile(r"^Label \d+ items? as bear$"))
            chooser = page.locator('[data-testid="stSelectbox"]').filter(has_text="Class").first
            for _attempt in range(3):  # the page may rerun under the keys (a round landing): try again
                chooser.scroll_into_view_if_needed()
                chooser.locator("input").focus()
                page.keyboard.type("bear")  # typing opens the list, filtered to the one class; Enter takes it
                try:
                    page.get_by_role("option", name="bear", exact=True).wait_for(timeout=5_000)
                    page.keyboard.press("Enter")
                    label_button.first.wait_for(timeout=10_000)
                    break
                except PlaywrightTimeout:
                    page.keyboard.press("Escape")
            label_button.first.wait_for(timeout=15_000)
            had_label = {i: v for i, v in LabelingService(root).current_labels().items() if v[0] is not None}
            before = len(_events(root))
            for _attempt in range(3):  # re-click only while nothing was stored: never a double batch
                label_button.first.click()
                try:
                    _wait(lambda: len(_events(root)) > before, 10, what="the map batch")
                    break
                except AssertionError:
                    label_button.first.wait_for(timeout=15_000)
            _wait(lambda: len(_events(root)) > before, 20, what="the map batch")
            page.wait_for_timeout(500)
            new = _events(root)[before:]
            assert len({e[6] for e in new}) == 1 and {e[5] for e in new} == {"lasso"} and len(new) >= 1
            assert not {e[1] for e in new} & set(had_label)  # a person's label was left alone
            now = LabelingService(root).current_labels()
            assert all(now[i][0] == had_label[i][0] for i in had_label)

            # a new round appears without a reload: the sidebar names it
            _wait(lambda: service.predictions()[0]["id"] > first_round, 90, what="the retrain worker's round")
            newest = service.predictions()[0]["id"]
            page.get_by_text(re.compile(rf"Round\s+{newest}\b")).first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "quorum.png"), full_page=True)
            assert (tmp_path / "quorum.png").stat().st_size > 10_000
        finally:
            page.screenshot(path=str(tmp_path / "quorum.png"), full_page=True)  # kept with the test's files
            if os.environ.get("QUORUM_SCREENSHOT_TO"):
                shutil.copy(tmp_path / "quorum.png", os.environ["QUORUM_SCREENSHOT_TO"])
            browser.close()


def test_class_keys_stay_put_and_the_tenth_and_a_new_class_label_from_the_keyboard(server):
    """Ten declared classes: 0 labels with the tenth; a class added from the New class box takes the next
    free key (Q) and moves no other; Q then labels with it."""
    from playwright.sync_api import sync_playwright

    url, root = server
    service = LabelingService(root)
    names = list(service.class_names().values())
    assert len(names) == 10
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.goto(url)
            page.get_by_text("Suggestion:").first.wait_for(timeout=90_000)
            page.wait_for_timeout(1000)

            def keyed() -> list[str]:
                """The class buttons' labels (without the shortcut badge the button also shows)."""
                out = []
                for key in "1234567890qwe":
                    label = page.locator(f'.st-key-class_{key} button [data-testid="stMarkdownContainer"]')
                    if label.count():
                        out.append(label.first.inner_text().strip())
                return out

            before = keyed()
            assert before == [f"{k} · {n}" for k, n in zip("1234567890", names)]
            caption = page.locator('[data-testid="stImageCaption"]').first
            shown = caption.inner_text()
            page.keyboard.press("0")
            _wait(lambda: service.current_labels().get(service.item_id_for_uri(shown), (None,))[0] == names[9],
                  30, what="the tenth class's label")
            _wait(lambda: caption.inner_text() != shown, 30, what="the next item")

            shown = caption.inner_text()
            box = page.get_by_role("textbox", name="New class")
            box.fill("aardvark")
            box.press("Enter")
            _wait(lambda: service.current_labels().get(service.item_id_for_uri(shown), (None,))[0] == "aardvark",
                  30, what="the new class's label")
            page.get_by_role("button", name="Q · aardvark").wait_for(timeout=30_000)
            assert keyed()[:10] == before  # no key moved
            _wait(lambda: caption.inner_text() != shown, 30, what="the next item")
            page.wait_for_timeout(500)
            shown = caption.inner_text()
            page.keyboard.press("q")
            _wait(lambda: service.current_labels().get(service.item_id_for_uri(shown), (None,))[0] == "aardvark",
                  30, what="Q to label with the new class")
        finally:
            browser.close()


def test_the_card_shows_the_first_suggestion_when_its_round_lands_without_a_key_press(demo_project, tmp_path):
    """A new demo project (ten declared classes, no label): 1 and 2 label the first two items at once;
    the retrain worker's round lands while the third item is on screen, and that card shows its
    suggestion by itself (the item keeps its place)."""
    with served_page(demo_project, tmp_path / "server.log") as (page, url):  # the app's own retrain settings
        page.goto(url)
        page.get_by_text("No suggestion yet").first.wait_for(timeout=90_000)
        page.wait_for_timeout(1000)
        caption = page.locator('[data-testid="stImageCaption"]').first
        for key in ("1", "2"):  # declared classes: the first key presses label
            shown = caption.inner_text()
            page.keyboard.press(key)
            _wait(lambda: caption.inner_text() != shown, 30, what=f"the item after key {key}")
        pinned = caption.inner_text()
        page.get_by_text("Suggestion:").first.wait_for(timeout=60_000)  # no key pressed meanwhile
        assert caption.inner_text() == pinned  # the same item, now with a suggestion


def test_the_first_page_a_fresh_server_shows_is_the_apps_own(trained_project, tmp_path):
    """The first run of a fresh server, opened straight at /data: the app's navigation and sidebar, never
    a file list of the folder the page scripts live in."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    srv = start_server(trained_project, log=tmp_path / "server.log", retrain_events=10**6, retrain_seconds=10**6)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{srv.url}/data")
            page.get_by_text("items labeled").first.wait_for(timeout=60_000)  # the app's own sidebar
            nav = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
            assert [n.strip().splitlines()[-1] for n in nav] == ["Label", "Map", "Review", "Model", "Data"]
            browser.close()
    finally:
        stop_server(srv)


def test_the_first_card_shows_by_itself_when_the_first_round_lands(demo_project, tmp_path):
    """Opened before any round has finished, the Label page says so, and shows the first card by itself
    once a round lands (here one trained from the command line while the page stays open)."""
    import subprocess
    import sys

    from labeling.service import LabelingService
    from storage.db import release_files

    with LabelingService(demo_project).project.db.session() as con:
        con.execute("UPDATE rounds SET status = 'failed'")  # as if the first round never finished
    release_files()
    with served_page(demo_project, tmp_path / "server.log", retrain_events=10**6, retrain_seconds=10**6) as (page, url):
        page.goto(url)
        page.get_by_text("no finished round yet", exact=False).or_(
            page.get_by_text("The first model round is being trained")).first.wait_for(timeout=60_000)
        assert page.locator('[data-testid="stImageCaption"]').count() == 0
        subprocess.run([sys.executable, "-m", "labeling", "train", str(demo_project), "--no-cv"], check=True,
                       capture_output=True, timeout=300)
        page.locator('[data-testid="stImageCaption"]').first.wait_for(timeout=60_000)  # no key pressed, no reload
        page.get_by_text("No suggestion yet").first.wait_for(timeout=10_000)


def test_auto_accept_certified_by_a_checked_sample(demo_project, tmp_path):
    """Model page, as a reviewer would: raise the target with the keyboard, start a check of a random
    sample, record it page by page (the checks become labels while the retrain worker runs), and
    accept the rest of the certified batch as one batch."""
    from labeling.model.rounds import train_round
    from labeling.views import certification
    from storage.db import release_files

    service = LabelingService(demo_project)
    service.label_table(true_rows(demo_project, 6), user="seed")
    train_round(service.project, device="cpu", cv=True)
    release_files()
    with served_page(demo_project, tmp_path / "server.log", height=1200) as (page, url):
        page.goto(f"{url}/model")
        page.get_by_text("Or certify a batch by checking a sample").wait_for(timeout=90_000)
        target = page.locator('[data-testid="stSlider"] input[type="range"]').first
        target.focus()
        target.press("Home")  # 0.50
        for _ in range(10):
            target.press("ArrowRight")
        _wait(lambda: target.input_value() == "0.6", 30, what="the target at 0.60")
        _settled(page)  # the button of the 0.60 run, not of one of the slider's earlier values
        start = page.get_by_role("button", name=re.compile(r"^Check \d+ items? to certify \d+"))
        start.wait_for(timeout=60_000)
        start.click()
        progress = page.locator('[data-testid="stProgress"]')
        progress.wait_for(timeout=30_000)
        got = re.match(r"0 of (\d+) checked · 0 wrong · batch of (\d+) from round \d+, target 60%",
                       progress.inner_text().strip())
        assert got, progress.inner_text()
        checks, batch = int(got[1]), int(got[2])
        rest = batch - checks
        for _ in range(-(-checks // 12)):
            record = page.get_by_role("button", name=re.compile("^Record:"))
            record.wait_for(timeout=30_000)
            boxes = page.locator('[data-testid="stForm"] [data-testid="stCheckbox"]').count()
            assert 0 < boxes <= 12
            record.click()
            page.wait_for_timeout(300)
        page.get_by_text(f"Certified: all {checks} checks were right").wait_for(timeout=30_000)
        cert = certification.current(service)
        assert cert.state == "certified" and len(cert.rest) == rest
        human = {e[1]: e[2] for e in _events(demo_project) if e[5] == "accept_suggestion"}
        assert {i: c for i, c in ((c.item_id, c.class_id) for c in cert.batch) if i in cert.sample} == \
            {i: human[i] for i in cert.sample}  # every check is a label with the proposed class
        page.get_by_role("button", name=f"Accept {rest} items as one batch").click()
        page.get_by_text(f"Accepted {rest} items as one batch.").wait_for(timeout=30_000)
        accepted = [e for e in _events(demo_project) if e[5] == "auto_accept"]
        assert {e[1] for e in accepted} == {c.item_id for c in cert.rest} and len({e[6] for e in accepted}) == 1
