"""Security protections that have no better home: where the server listens, HTML and Markdown in names."""
from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from labeling.cli import build_parser
from labeling.service import LabelingService
from pages.common import plain

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<script>alert(1)</script> [x](javascript:alert(1)) **b**"


def test_the_server_listens_on_localhost_unless_told_otherwise():
    assert build_parser().parse_args(["serve", "some-dir"]).host == "127.0.0.1"


def test_no_page_renders_raw_html():
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
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
