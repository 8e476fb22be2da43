"""The Map page: select items by id, label them as one lasso batch, undo it."""
from __future__ import annotations


import pytest
from streamlit.testing.v1 import AppTest

from conftest import open_app

from labeling.embed.pipeline import load_vectors
from labeling.service import LabelingService
from storage import labels as labels_q


@pytest.fixture
def map_page(demo_project, monkeypatch) -> AppTest:
    # no background UMAP in the fast tests
    return open_app(demo_project, monkeypatch, "app_pages/map.py", user="mapper", QUORUM_MAP_BUILD="0")


def _label_events(root) -> list[tuple]:
    service = LabelingService(root)
    with service.project.db.session() as con:
        return [e for e in labels_q.all_events(con) if e[3] == "label"]


def _current(root) -> dict[int, str]:
    service = LabelingService(root)
    names = service.class_names()
    with service.project.db.session() as con:
        return {int(i): names[int(c)] for i, c, kind, *_ in labels_q.current_state(con) if kind == "label"}


def test_map_page__shows_pca_map_of_every_item(map_page, demo_project):
    n = len(load_vectors(LabelingService(demo_project).project).item_ids)
    assert any("Showing PCA" in el.value for el in map_page.info)
    assert any(f"{n} items · 0 labeled" in el.value for el in map_page.caption)
    assert map_page.selectbox(key="map_color_by").options == ["Label", "Pseudo-label", "Disagreement", "Annotator"]
    map_page.selectbox(key="map_color_by").set_value("disagreement").run()
    assert not map_page.exception
    assert any("typicality" in el.value for el in map_page.caption)


def test_map_page__label_selection_as_one_batch_then_undo(map_page, demo_project):
    ids = [int(i) for i in load_vectors(LabelingService(demo_project).project).item_ids[:5]]
    at = map_page
    at.text_input(key="map_select_ids").input(", ".join(map(str, ids))).run()
    assert any("5 items selected" in el.value for el in at.subheader)
    assert at.selectbox(key="map_class").value is None  # no class is chosen for the person
    assert at.button(key="map_label_button").disabled
    at.selectbox(key="map_class").select("New class…").run()
    at.text_input(key="map_new_class").input("okapi").run()
    assert at.button(key="map_label_button").label == "Label 5 items as okapi"
    at.button(key="map_label_button").click().run()
    assert not at.exception, at.exception

    events = _label_events(demo_project)
    assert sorted(e[1] for e in events) == sorted(ids)
    assert len({e[6] for e in events}) == 1  # one batch
    assert {e[5] for e in events} == {"lasso"} and {e[4] for e in events} == {"mapper"}
    assert _current(demo_project) == {i: "okapi" for i in ids}
    assert any("Labeled 5 items as okapi" in el.value for el in at.success)
    assert "okapi" in at.selectbox(key="map_class").options  # the new class is offered next time

    at.button(key="map_undo_button").click().run()
    assert not at.exception, at.exception
    assert _current(demo_project) == {}
    assert any("back to what they were" in el.value for el in at.info)
    assert not at.success


def test_map_page__a_persons_label_stays_unless_overwrite_and_items_can_be_left_out(map_page, demo_project):
    """Select by file name an item a person labeled elephant: a bulk "bear" leaves it alone, the table
    shows its label, an item left out is not touched, and only "overwrite" changes a person's label."""
    service = LabelingService(demo_project)
    ids = [int(i) for i in load_vectors(service.project).item_ids[:4]]
    service.label([ids[0]], "elephant", user="alice")
    from labeling.views.bulk import selection_rows

    first = selection_rows(service, [ids[0]])[0]
    at = map_page
    at.text_input(key="map_select_ids").input(", ".join([first.name, *map(str, ids[1:])])).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table.set_index("id").loc[ids[0], "label now"] == "elephant"
    assert table.set_index("id").loc[ids[0], "by"] == "alice"
    assert at.checkbox(key="map_overwrite").value is False
    at.multiselect(key="map_leave_out").select(ids[3]).run()
    at.selectbox(key="map_class").select("bear").run()
    assert at.button(key="map_label_button").label == "Label 2 items as bear"
    at.button(key="map_label_button").click().run()
    assert not at.exception, at.exception
    current = _current(demo_project)
    assert current == {ids[0]: "elephant", ids[1]: "bear", ids[2]: "bear"}
    assert any("1 item kept a person's label" in el.value for el in at.success)

    at.text_input(key="map_select_ids").set_value("").run()
    at.text_input(key="map_select_ids").input(str(ids[0])).run()
    at.checkbox(key="map_overwrite").check().run()
    at.selectbox(key="map_class").select("bear").run()
    at.button(key="map_label_button").click().run()
    assert _current(demo_project)[ids[0]] == "bear"
