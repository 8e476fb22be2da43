"""A CLIP backbone in the app: the card marks zero-shot suggestions before any label, the Label page finds
images by text, and the Map page selects them by text and labels them as one undoable batch."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from labeling.embed.pipeline import embed_project
from labeling.model.rounds import train_round
from labeling.service import LabelingService
from storage import labels as labels_q

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def clip_project(tiny_clip, demo_project):
    service = LabelingService(demo_project)
    embed_project(service.project, backbone="clip_tiny", weights=str(tiny_clip), device="cpu", progress=False)
    train_round(service.project, device="cpu", cv=False)
    return demo_project


def test_zero_shot_on_the_card_and_text_search_on_the_label_and_map_pages(clip_project, app_env):
    app_env(clip_project)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    assert at.subheader[0].value.startswith("Suggestion: ")
    assert any(c.value.startswith("Zero-shot from the class names: ") for c in at.caption)

    at.text_input(key="find_by_text").input("a photo of a zebra").run()
    assert not at.exception, at.exception
    jump = at.selectbox(key="jump_to")
    assert jump.label == "Jump to (20 matches)"

    at.switch_page("app_pages/map.py").run()
    assert not at.exception, at.exception
    at.text_input(key="map_text_query").input("a photo of a zebra").run()
    at.number_input(key="map_text_n").set_value(5).run()
    assert any(s.value == "5 items selected" for s in at.subheader)
    at.selectbox(key="map_class").set_value("zebra").run()
    at.button(key="map_label_button").click().run()
    assert not at.exception, at.exception
    with LabelingService(clip_project).project.db.session() as con:
        events = [e for e in labels_q.all_events(con) if e.kind == "label"]
    assert len(events) == 5 and len({e.batch_id for e in events}) == 1 and events[0].source == "lasso"


def test_the_data_page_sets_a_zero_shot_prompt(clip_project, app_env):
    from labeling.model.zero_shot import read_prompts

    app_env(clip_project)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page("app_pages/data.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="data_prompt_class").set_value("zebra").run()
    at.text_input(key="data_prompt_text").input("a striped {name} on grass").run()
    at.button(key="data_prompt_button").click().run()
    assert not at.exception, at.exception
    assert read_prompts(LabelingService(clip_project).project) == {"zebra": "a striped {name} on grass"}
