"""The Label page through AppTest: every action is stored before the next item shows."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from labeling.service import LabelingService
from storage import labels as labels_q

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _app(root, app_env) -> AppTest:
    app_env(root)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    return at


def _events(root):
    with LabelingService(root).project.db.session() as con:
        return labels_q.all_events(con)


def _shown_uri(at) -> str:
    return at.get("image")[0].proto.imgs[0].caption


def test_accept_stores_event_and_queue_advances_then_undo_restores(trained_project, app_env):
    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    first = service.queue(1)[0]
    assert at.subheader[0].value == f"Suggestion: {first.pseudo_label}"
    # the small demo image arrives inside the card: no second request for it after a key press
    assert at.get("image")[0].proto.imgs[0].url.startswith("data:image/png;base64,")
    before = len(_events(trained_project))
    at.button(key="accept").click().run()
    events = _events(trained_project)
    assert len(events) == before + 1
    new = events[-1]
    assert new.item_id == first.item_id and new.source == "accept_suggestion" and new.user_name == "tester"
    assert service.class_names()[new.class_id] == first.pseudo_label
    assert new.model_round == service.predictions()[0]["id"]  # the round the person saw
    second = service.queue(1)[0]
    assert second.item_id != first.item_id
    assert at.subheader[0].value == f"Suggestion: {second.pseudo_label}"
    at.button(key="undo").click().run()
    assert first.item_id not in service.current_labels()
    assert service.queue(1)[0].item_id == first.item_id  # back at the front of the queue


def test_number_key_class_skip_and_next(trained_project, app_env):
    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    classes = list(service.class_names().values())  # creation order: the keys never move
    item = service.queue(1)[0].item_id
    at.button(key="class_3").click().run()
    assert service.current_labels()[item][0] == classes[2]
    item2 = service.queue(1)[0].item_id
    at.button(key="skip").click().run()
    assert service.current_labels()[item2][0] is None  # skip/unsure is stored, without a class
    item3 = service.queue(1)[0].item_id
    at.button(key="next").click().run()
    assert item3 not in service.current_labels()  # next stores nothing
    assert service.queue(1, exclude=[item3])[0].item_id != item3


def test_new_class_by_typing(trained_project, app_env):
    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    item = service.queue(1)[0].item_id
    at.text_input(key="new_class").input("<b>okapi</b>").run()  # Enter adds it and labels the item
    assert service.current_labels()[item][0] == "<b>okapi</b>"
    assert "<b>okapi</b>" in service.class_names().values()
    item2 = service.queue(1)[0].item_id
    at.selectbox(key="typeahead").set_value("<b>okapi</b>").run()
    at.button(key="typeahead_button").click().run()
    assert service.current_labels()[item2][0] == "<b>okapi</b>"
    assert not any("<b>" in str(md.value) for md in at.markdown)  # a class name is text, never HTML


def test_enter_in_the_new_class_box_labels_the_item(trained_project, app_env):
    """Typing a new class and pressing Enter (no click on Add) labels the item, as the box promises."""
    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    item = service.queue(1)[0].item_id
    at.text_input(key="new_class").input("okapi").run()
    assert service.current_labels()[item][0] == "okapi"
    assert at.text_input(key="new_class").value == ""  # empty for the next class
    assert len([e for e in _events(trained_project) if e.item_id == item]) == 1  # once, not twice
    # and the box lets go of the keyboard (else the next digit key types into it): once, that run only
    from labeling.views.cards import RELEASE_FOCUS_HTML

    assert sum(RELEASE_FOCUS_HTML in str(h.proto) for h in at.get("html")) == 1
    at.run()
    assert not any(RELEASE_FOCUS_HTML in str(h.proto) for h in at.get("html"))


def test_accept_neighbourhood_is_one_batch_and_undo_revokes_it(trained_project, app_env):
    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    item = service.queue(1)[0]
    at.slider(key="nh_threshold").set_value(0.5).run()
    expected = [item.item_id] + service.neighbourhood_candidates(item.item_id, item.pseudo_label, k=12,
                                                                 min_similarity=0.5)
    assert len(expected) > 1
    at.button(key="accept_neighbourhood").click().run()
    events = _events(trained_project)
    batch = events[-1].batch_id
    in_batch = [e for e in events if e.batch_id == batch]
    assert sorted(e.item_id for e in in_batch) == sorted(expected)
    assert {e.source for e in in_batch} == {"accept_neighbourhood"}
    at.button(key="undo").click().run()
    labels = service.current_labels()
    assert not any(i in labels for i in expected)


def test_grid_mode_accepts_all_but_misfits(trained_project, app_env):
    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    at.toggle(key="label_grid_mode").set_value(True).run()
    cls = at.selectbox(key="grid_class").value
    cells = service.grid(cls, n=36)
    assert cells
    misfit = cells[0].item_id
    ticks = [c for c in at.checkbox if c.key.startswith("misfit_")]
    assert [c.key.rsplit("_", 1)[1] for c in ticks] == [str(c.item_id) for c in cells]  # row by row: Tab order
    ticks[0].check().run()
    at.button(key="grid_accept").click().run()
    labels = service.current_labels()
    assert misfit not in labels
    accepted = [c.item_id for c in cells[1:]]
    assert all(labels[i] == (cls, "tester", "grid") for i in accepted)
    events = _events(trained_project)
    assert len({e.batch_id for e in events if e.item_id in accepted}) == 1  # one batch

    at.button(key="grid_undo").click().run()  # the accepted items come back, none of them ticked
    assert not at.exception, at.exception
    back = {int(c.key.rsplit("_", 1)[1]): c.value for c in at.checkbox if c.key.startswith("misfit_")}
    assert set(accepted) <= set(back) and not any(back.values())


def test_two_sessions_see_each_others_labels_and_share_one_worker(trained_project, app_env, monkeypatch):
    """Two browser sessions of one server: one cached service and worker, labels visible to both."""
    app_env(trained_project)
    monkeypatch.setenv("QUORUM_WORKER", "1")
    monkeypatch.setenv("QUORUM_RETRAIN_EVENTS", "1000")  # keep the shared worker idle in this test
    monkeypatch.setenv("QUORUM_RETRAIN_SECONDS", "3600")
    a = AppTest.from_file(APP, default_timeout=90)
    b = AppTest.from_file(APP, default_timeout=90)
    a.session_state["user"] = "alice"
    b.session_state["user"] = "bob"
    a.run()
    b.run()
    assert not a.exception and not b.exception, (a.exception, b.exception)
    shown_a, shown_b = _shown_uri(a), _shown_uri(b)
    assert shown_a == shown_b  # same queue head before anyone labels
    a.button(key="accept").click().run()
    b.run()  # bob's next rerun (or fragment refresh) no longer offers alice's item
    assert _shown_uri(b) != shown_b
    service = LabelingService(trained_project)
    item = service.item_id_for_uri(shown_a)
    assert service.current_labels()[item][1] == "alice"
    b.button(key="skip").click().run()
    users = {u for _, u, _ in service.current_labels().values()}
    assert {"alice", "bob"} <= users
    from app_pages.common import _open
    service_a, worker_a = _open(str(trained_project), True)
    service_b, worker_b = _open(str(trained_project), True)
    assert worker_a is worker_b and worker_a is not None and service_a is service_b
    worker_a.stop()
    _open.clear()


def test_a_new_round_never_swaps_the_item_under_the_person(trained_project, app_env):
    from labeling.model.rounds import train_round

    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    shown = _shown_uri(at)
    item = service.item_id_for_uri(shown)
    # a colleague labels other items and a new round reorders the queue meanwhile
    others = [q.item_id for q in service.queue(12) if q.item_id != item][:10]
    service.label(others, "cat", user="colleague")
    train_round(service.project, device="cpu", cv=False)
    at.run()  # the fragment refresh / any rerun
    assert _shown_uri(at) == shown  # the person keeps their place
    rid = service.newest_round_id()
    assert [t.value for t in at.toast] == [f"Model round {rid} is ready; suggestions refreshed"]
    at.run()
    assert not at.toast  # told once
    at.button(key="accept").click().run()
    assert service.current_labels()[item][1] == "tester"  # the key press labeled the item on screen
    assert _shown_uri(at) != shown


def test_cold_start_card_has_nothing_to_accept(demo_project, app_env):
    at = _app(demo_project, app_env)
    assert at.subheader[0].value == "No suggestion yet"
    assert at.button(key="accept").disabled  # nothing to accept before a suggestion exists


def test_team_mode_requires_sign_in_and_labels_carry_the_signed_in_name(trained_project, app_env):
    from labeling.team import auth
    from labeling.project import Project

    project = Project(trained_project)
    auth.add_user(project, "root", "admin-password", role="admin", by=None)
    auth.add_user(project, "ann", "annotator-pw", role="annotator", by=None)
    project.set_setting("auth_mode", "team")
    app_env(trained_project)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert at.title[0].value == "Sign in" and not at.get("image")  # nothing of the project before sign-in
    at.text_input(key="signin_name").input("ann")
    at.text_input(key="signin_password").input("wrong-password")
    at.button[0].click().run()
    assert any("wrong name or password" in e.value for e in at.error)
    at.text_input(key="signin_password").input("annotator-pw")
    at.button[0].click().run()
    assert not at.exception
    service = LabelingService(trained_project)
    shown = service.item_id_for_uri(_shown_uri(at))
    at.button(key="accept").click().run()
    assert service.current_labels()[shown][1] == "ann"  # not a typed name: the signed-in user
    assert not [t for t in at.text_input if t.key == "user_input"]  # no name box to act as someone else


def test_a_spawned_process_after_the_app_ran_does_not_run_the_app(trained_project, app_env, monkeypatch, tmp_path):
    """Streamlit leaves app.py registered as the main module; processes spawned afterwards (the map's
    UMAP worker) re-import it and must not try to run the app."""
    import multiprocessing as mp
    import os

    at = _app(trained_project, app_env)
    assert at.subheader[0].value.startswith("Suggestion:")  # the page ran and showed an item
    monkeypatch.setenv("QUORUM_PROJECT", str(tmp_path / "not-a-project"))  # as in a later, unrelated test
    child = mp.get_context("spawn").Process(target=os.getpid)
    child.start()
    child.join(120)
    assert child.exitcode == 0


def test_a_key_press_meant_for_an_item_someone_else_just_labeled_stores_nothing(trained_project, app_env):
    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    shown = service.item_id_for_uri(_shown_uri(at))
    service.label([shown], "cat", user="colleague")  # meanwhile, in another session
    before = len(_events(trained_project))
    at.button(key="class_1").click().run()  # meant for the item on screen
    assert not at.exception, at.exception
    assert len(_events(trained_project)) == before  # not applied to an item this person never saw
    now = service.item_id_for_uri(_shown_uri(at))
    assert now != shown
    at.button(key="class_1").click().run()  # the next press acts on what is shown
    last = _events(trained_project)[-1]
    assert last.item_id == now and last.user_name == "tester"


def test_a_name_committed_with_a_key_press_labels_under_that_name(trained_project, app_env):
    """The Annotator box and an action in the same rerun: the label carries the new name, not the old."""
    at = _app(trained_project, app_env)
    shown = _shown_uri(at)
    at.text_input(key="user_input").input("carol")
    at.button(key="accept").click().run()
    assert not at.exception, at.exception
    last = _events(trained_project)[-1]
    assert last.user_name == "carol"
    assert LabelingService(trained_project).item_id_for_uri(shown) == last.item_id  # the item that was shown


def test_a_page_that_ends_early_still_draws_its_sidebar(trained_project, app_env):
    """Grid mode ends the page early; the sidebar (drawn after the page) is still there."""
    at = _app(trained_project, app_env)
    assert [t.key for t in at.sidebar.text_input] == ["user_input"]
    at.toggle(key="label_grid_mode").set_value(True).run()
    assert not at.exception, at.exception
    assert at.button(key="grid_accept").label.startswith("Accept ")  # the grid, not the card
    assert [t.key for t in at.sidebar.text_input] == ["user_input"]
    assert any("items labeled" in c.value for c in at.sidebar.caption)


def test_class_keys_stay_put_when_a_class_is_added_and_the_eleventh_has_a_key(trained_project, app_env):
    service = LabelingService(trained_project)
    at = _app(trained_project, app_env)
    names = list(service.class_names().values())
    assert len(names) == 10
    shown = {k: at.button(key=f"class_{k}").label for k in "1234567890"}
    assert shown == {k: f"{k} · {plain_name}" for k, plain_name in zip("1234567890", names)}
    at.text_input(key="new_class").input("aardvark").run()  # sorts first by name; must not take key 1
    assert {k: at.button(key=f"class_{k}").label for k in "1234567890"} == shown
    assert at.button(key="class_q").label == "Q · aardvark"
    item = service.queue(1)[0].item_id
    at.button(key="class_q").click().run()
    assert service.current_labels()[item][0] == "aardvark"


def test_find_a_labeled_item_by_name_jump_to_it_and_correct_its_label(trained_project, app_env):
    service = LabelingService(trained_project)
    labeled = [i for i, (lab, who, _src) in service.current_labels().items() if who == "seed"]
    item = labeled[0]
    from labeling.views.find import labeled_items

    uri = next(f.uri for f in labeled_items(service) if f.item_id == item)
    before = service.current_labels()[item][0]
    at = _app(trained_project, app_env)
    at.text_input(key="find_text").input(uri.rsplit("/", 1)[-1]).run()
    jump = at.selectbox(key="jump_to")
    assert any(f"#{item} · {before}" in o for o in jump.options) and "1 match" in jump.label
    jump.select(item).run()
    assert not at.exception, at.exception
    assert _shown_uri(at) == uri
    assert any(f"Labeled {before}" in el.value for el in at.info)  # the card says what it carries now
    names = list(service.class_names().values())
    other = next(k for k, n in zip("1234567890", names) if n != before)
    at.button(key=f"class_{other}").click().run()
    assert service.current_labels()[item][0] == names["1234567890".index(other)]  # corrected on purpose
    assert _shown_uri(at) != uri  # and the queue goes on


def test_the_queue_filter_shows_only_items_suggested_as_one_class(trained_project, app_env):
    service = LabelingService(trained_project)
    cls = service.queue(1)[0].pseudo_label
    others = [q for q in service.queue(40) if q.pseudo_label != cls]
    at = _app(trained_project, app_env)
    target = others[0].pseudo_label
    at.selectbox(key="filter_suggested").select(target).run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == f"Suggestion: {target}"
    for _ in range(3):
        at.button(key="accept").click().run()
        assert at.subheader[0].value == f"Suggestion: {target}" or any("No unlabeled item" in i.value for i in at.info)
    accepted = [e for e in _events(trained_project) if e.source == "accept_suggestion"]
    assert len(accepted) == 3 and {service.class_names()[e.class_id] for e in accepted} == {target}


def test_full_size_opens_the_image_in_a_zoomable_view(trained_project, app_env):
    at = _app(trained_project, app_env)
    shown = _shown_uri(at)
    at.button(key="full_size").click().run()
    assert not at.exception, at.exception
    import json

    charts = at.get("plotly_chart")
    assert charts and json.loads(charts[0].proto.config)["scrollZoom"] is True  # the wheel zooms
    assert json.loads(charts[0].proto.spec)["layout"]["dragmode"] == "pan"  # a drag pans
    assert any(shown in c.value and " px" in c.value for c in at.caption)


def test_the_imagenet_guess_hides_on_the_demo_and_one_key_makes_a_meaningful_one_a_class(demo_project, app_env,
                                                                                          monkeypatch):
    """The demo's cold round guesses "digital clock" for silhouettes: no guess on the card. Where guesses
    are meaningful, Shift+Enter ("Use ... as a class") labels the item with it."""
    at = _app(demo_project, app_env)
    assert at.subheader[0].value == "No suggestion yet"
    assert not any("ImageNet guess" in c.value for c in at.caption)
    with pytest.raises(KeyError):
        at.button(key="use_hint")

    from labeling.active import coldstart

    monkeypatch.setattr(coldstart, "HINT_MAX_SHARE", 1.0)
    monkeypatch.setattr(coldstart, "HINT_MIN_CONFIDENCE", 0.0)
    import streamlit as st

    st.cache_resource.clear()  # a fresh server: the project's caches (and the gate kept there) start empty
    at = _app(demo_project, app_env)
    service = LabelingService(demo_project)
    item = service.item_id_for_uri(_shown_uri(at))
    guess = service.item_card(item).hint[0]
    assert at.button(key="use_hint").label == f"Use “{guess}” as a class"
    at.button(key="use_hint").click().run()
    assert service.current_labels()[item][0] == guess


def test_next_wraps_around_the_queue_and_the_last_label_says_everything_is_labeled(trained_project, app_env):
    """Items passed over with Next come back once every other item was passed too; when the last one is
    labeled, the page says so instead of showing a card."""
    service = LabelingService(trained_project)
    open_items = [q.item_id for q in service.queue(1000)]
    keep = open_items[:2]
    service.label([i for i in open_items if i not in keep], "cat", user="colleague")
    at = _app(trained_project, app_env)
    first = service.item_id_for_uri(_shown_uri(at))
    at.button(key="next").click().run()
    second = service.item_id_for_uri(_shown_uri(at))
    assert {first, second} == set(keep)
    at.button(key="next").click().run()  # both passed over: the queue starts again from its head
    assert not at.exception
    assert service.item_id_for_uri(_shown_uri(at)) in keep
    at.button(key="class_1").click().run()
    at.button(key="class_1").click().run()
    assert not at.get("image")
    assert [s.value for s in at.success] == ["Every item has a label. Export it from the Data page."]


def test_the_label_page_and_a_key_press_import_no_training_library(trained_project):
    """In a fresh process, as a new server's first page: the Label page and a key press on it import none
    of torch, torchvision, scikit-learn or faiss (the first card of a new server waited about 4 s for
    them; training runs in its own process)."""
    from conftest import training_libraries_imported

    code = f"""
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({APP!r}, default_timeout=120)
at.run()
assert not at.exception, at.exception
shown = at.get("image")[0].proto.imgs[0].caption
at.button(key="accept").click().run()
assert not at.exception, at.exception
assert at.get("image")[0].proto.imgs[0].caption != shown  # the key press moved on to the next item
"""
    assert training_libraries_imported(code, QUORUM_PROJECT=str(trained_project), QUORUM_WORKER="0",
                                       QUORUM_USER="tester") == []


def test_large_photos_show_as_previews_and_the_next_cards_are_made_ahead(trained_project, app_env):
    import time

    import numpy as np
    from PIL import Image

    from labeling.data.previews import preview_path

    service = LabelingService(trained_project)
    head = service.queue(4)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8))
    paths = []
    for q in head:  # the first four cards become 2000-px photos
        path = service.project.resolve_uri(q.uri)
        photo.save(path, "JPEG")
        paths.append(path)
    card = service.item_card(head[0].item_id)
    assert card.image == str(preview_path(service.project.data_dir, paths[0])) and card.image_format == "JPEG"
    at = _app(trained_project, app_env)
    assert _shown_uri(at) == head[0].uri
    deadline = time.monotonic() + 30
    while not all(preview_path(service.project.data_dir, p).is_file() for p in paths[1:]):
        assert time.monotonic() < deadline, "the next cards' previews were not made"
        time.sleep(0.1)
    with Image.open(preview_path(service.project.data_dir, paths[1])) as im:
        assert max(im.size) == 1280


def test_a_missing_image_file_is_said_on_the_card_and_the_item_still_labels(trained_project, app_env):
    service = LabelingService(trained_project)
    first = service.queue(1)[0]
    service.project.resolve_uri(first.uri).unlink()  # moved or deleted behind the project's back
    at = _app(trained_project, app_env)
    assert [w.value for w in at.warning if first.uri in w.value and "missing" in w.value]
    assert not at.get("image") or _shown_uri(at) != first.uri
    assert at.button(key="full_size").disabled  # nothing to open at full size
    at.button(key="class_1").click().run()
    assert not at.exception
    assert first.item_id in service.current_labels()
