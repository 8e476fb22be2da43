"""Security protections that have no better home: where the server listens, HTML and Markdown in names."""
from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from labeling.cli import build_parser
from labeling.service import LabelingService
from app_pages.common import plain

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<script>alert(1)</script> [x](javascript:alert(1)) **b**"


def test_the_server_listens_on_localhost_unless_told_otherwise():
    assert build_parser().parse_args(["serve", "some-dir"]).host == "127.0.0.1"


STRIP = "st.html(neighbour_strip_html("
"""The one HTML block a page shows: the neighbourhood strip, built by the engine from escaped text and
inline thumbnails (labeling/views/cards.py), and sanitised again in the browser."""


FOCUS = "st.html(RELEASE_FOCUS_HTML, unsafe_allow_javascript=True)"
"""The one script a page runs: a fixed constant that only moves the keyboard focus off a text box."""


def test_the_one_script_is_a_fixed_constant_without_data():
    from labeling.views.cards import RELEASE_FOCUS_HTML

    assert RELEASE_FOCUS_HTML == "<script>document.activeElement && document.activeElement.blur();</script>"


SET_COOKIE = "st.html(facade.web_cookie.set_cookie_script(token), unsafe_allow_javascript=True)"
CLEAR_COOKIE = "st.html(facade.web_cookie.CLEAR_COOKIE_SCRIPT, unsafe_allow_javascript=True)"
"""The sign-in's two scripts: built in the engine from a checked token (letters, digits, - and _) or fixed."""


def test_no_page_renders_raw_html():
    for path in [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        if path.name == "label.py":
            assert text.count(STRIP) == 1 and text.count(FOCUS) == 1
            text = text.replace(STRIP, "").replace(FOCUS, "")
        if path.name == "common.py":
            assert text.count(SET_COOKIE) == 1 and text.count(CLEAR_COOKIE) == 1
            text = text.replace(SET_COOKIE, "").replace(CLEAR_COOKIE, "")
        assert not re.search(r"unsafe_allow_html\s*=\s*True|st\.html\(|components\.v1", text), path.name


def test_plain_shows_markdown_and_html_as_text():
    escaped = plain(HOSTILE)
    assert "<" not in escaped.replace("\\<", "") and "[" not in escaped.replace("\\[", "")
    assert escaped.replace("\\", "") == HOSTILE  # nothing lost, only escaped


def test_a_hostile_class_name_is_shown_as_text_on_the_label_page(trained_project, app_env):
    service = LabelingService(trained_project)
    item = service.queue(1)[0].item_id
    service.label([item], HOSTILE, user="mallory")
    app_env(trained_project)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    labels = [b.label for b in at.button if (b.key or "").startswith("class_")]
    hostile = [lbl for lbl in labels if "script" in lbl]
    assert hostile and all(lbl.endswith(plain(HOSTILE)) for lbl in hostile)


def test_a_hostile_class_name_is_text_in_the_neighbourhood_strip(trained_project, app_env):
    service = LabelingService(trained_project)
    item = service.queue(1)[0].item_id
    neighbour = service.neighbours(item, k=3)[0].item_id
    service.label([neighbour], HOSTILE, user="mallory")
    app_env(trained_project)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    shown = at.session_state["current_item"]
    strip = next(e.proto.body for e in at.get("html"))
    if neighbour in [n.item_id for n in service.neighbours(shown, k=12)]:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in strip
    assert "<script" not in strip and "href=" not in strip  # the name is text, never a tag or a link
    assert not re.search(r"\son\w+\s*=", strip)  # no event handler attributes
