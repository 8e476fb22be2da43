"""The Label, Map and Review pages at 1400 × 900 in a real headless Chromium: no control truncates its
text (a button that reads "Accept…" or "3 · ele…" is a trap). With ``QUORUM_SCREENSHOT_TO`` set, the
screenshots are kept there (the README's pictures are made so)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import served_page

from labeling.service import LabelingService

pytestmark = pytest.mark.browser

TRUNCATED = """() => Array.from(document.querySelectorAll('button, [data-baseweb="tab"]'))
    .filter(b => b.offsetParent !== null && b.innerText.trim())
    .flatMap(b => [b, ...b.querySelectorAll('p, span, div')])
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1
                 && getComputedStyle(e).overflow !== 'visible')
    .map(e => e.innerText.trim().split('\\n')[0])"""
"""Visible button and tab texts whose box clips them (scrolled width past the box, overflow hidden)."""


def _check(page, name: str) -> None:
    time.sleep(1.5)
    shots = os.environ.get("QUORUM_SCREENSHOT_TO")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{name}.png"))
    clipped = page.evaluate(TRUNCATED)
    assert not clipped, f"{name}: truncated controls {clipped}"


def test_no_control_is_truncated_at_1400_by_900(trained_project, tmp_path):
    service = LabelingService(trained_project)
    a, b = [q.item_id for q in service.queue(2)]
    service.label([a, b], "elephant", user="alice")  # a disagreement for the Review page
    service.label([a], "giraffe", user="bob")
    with served_page(trained_project, tmp_path / "server.log", retrain_events=10**6, retrain_seconds=10**6,
                     env={"QUORUM_USER": "rita"}) as (page, url):
        page.goto(url)
        page.get_by_text("Suggestion:").first.wait_for(timeout=90_000)
        _check(page, "label")

        page.get_by_role("link", name="Map").click()
        page.get_by_text("Colour by").first.wait_for(timeout=60_000)
        page.get_by_text("Select by id or file name").click()
        page.get_by_role("textbox", name="Item ids, file names or paths (comma-separated)").fill(f"{a}, {b}, 5, 6")
        page.keyboard.press("Enter")
        page.get_by_text("items selected").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Clear selection").scroll_into_view_if_needed()  # the whole panel
        _check(page, "map")

        page.get_by_role("link", name="Review").click()
        page.get_by_text("where annotators disagree").first.wait_for(timeout=60_000)
        _check(page, "review")
