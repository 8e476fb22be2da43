"""The Model page and its engine (``labeling.views.model_report``) on a demo project with a trained round."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import copy_project, open_app, true_rows
from labeling.views import model_report
from labeling.model.rounds import expected_calibration_error, train_round
from labeling.service import LabelingService
from storage import labels as labels_q
from storage import rounds as rounds_q

PER_CLASS = 6


@pytest.fixture(scope="module")
def labeled_template(demo_project_template, tmp_path_factory) -> Path:
    """The demo with 6 true labels per class (60) and a second round trained on them, built once."""
    root = tmp_path_factory.mktemp("model-page") / "demo"
    copy_project(demo_project_template, root)
    rows = true_rows(root, PER_CLASS)
    service = LabelingService(root)
    assert service.label_table(rows, user="t")["labeled"] == 10 * PER_CLASS
    train_round(service.project, device="cpu")
    return root


@pytest.fixture
def labeled(labeled_template, tmp_path) -> Path:
    dest = tmp_path / "demo"
    copy_project(labeled_template, dest)
    return dest


def _human_labels(service) -> dict[int, int]:
    with service.project.db.session() as con:
        items, classes = labels_q.current_labels(con)
    return dict(zip(items.tolist(), classes.tolist()))


def test_round_stores_cross_validated_outputs_of_every_human_label(labeled):
    service = LabelingService(labeled)
    rnd, pred = service.predictions()
    cv = pred.cv
    human = _human_labels(service)
    assert sorted(cv["item_ids"].tolist()) == sorted(human)  # 6 per class: all are held out once
    assert [human[i] for i in cv["item_ids"].tolist()] == cv["true"].tolist()
    correct = cv["predicted"] == cv["true"]
    assert rnd["metrics"]["cv_accuracy"] == pytest.approx(correct.mean())
    assert rnd["metrics"]["ece"] == pytest.approx(expected_calibration_error(cv["confidence"], correct), abs=1e-6)


def test_reports_match_the_stored_outputs(labeled):
    service = LabelingService(labeled)
    rnd, pred = service.predictions()
    cv = pred.cv
    history = model_report.round_history(service)
    assert history["id"].tolist() == [1, 2] and history["status"].tolist() == ["finished", "finished"]
    assert history["labels"].tolist() == [0, 60]
    assert history["cv_accuracy"].iloc[1] == pytest.approx(rnd["metrics"]["cv_accuracy"])

    table = model_report.per_class_report(service).set_index("class")
    names = service.class_names()
    assert set(table.index) == set(names.values()) and table["support"].tolist() == [PER_CLASS] * 10
    for c, name in names.items():
        hits = int(((cv["true"] == c) & (cv["predicted"] == c)).sum())
        assert table.loc[name, "recall"] == pytest.approx(hits / PER_CLASS)
        n_pred = int((cv["predicted"] == c).sum())
        assert table.loc[name, "predicted"] == n_pred
        if n_pred:
            assert table.loc[name, "precision"] == pytest.approx(hits / n_pred)

    rel = model_report.reliability(service, n_bins=15)
    assert rel["count"].sum() == 60
    gap = (rel["count"] / 60 * (rel["accuracy"] - rel["confidence"]).abs()).sum()
    assert gap == pytest.approx(rnd["metrics"]["ece"], abs=1e-6)  # the same bins as the stored ECE


def test_accept_batch_writes_one_undoable_batch_of_several_classes(labeled):
    service = LabelingService(labeled)
    plan = model_report.auto_accept_plan(service, target_precision=0.5, min_support=1)
    assert plan is not None and len({c.class_id for c in plan.candidates}) >= 2
    human = _human_labels(service)
    assert not {c.item_id for c in plan.candidates} & set(human)
    first = plan.candidates[0]
    service.label([first.item_id], "bear", user="t")  # decided after the preview: must be left out
    done = model_report.accept_batch(service, plan.candidates, user="u", model_round=plan.round_id)
    assert done.skipped == [first.item_id]
    now = _human_labels(service)
    assert {i: now[i] for i in done.item_ids} == {c.item_id: c.class_id for c in plan.candidates[1:]}
    assert service.undo(done.batch_id, user="u") == done.item_ids
    assert set(_human_labels(service)) == set(human) | {first.item_id}
    with pytest.raises(ValueError, match="nothing to accept"):
        model_report.accept_batch(service, plan.candidates[:1], user="u")


def test_failed_round_is_reported_and_previous_stays_in_use(labeled):
    service = LabelingService(labeled)
    with service.project.db.session() as con:
        rid = rounds_q.start_round(con, n_labels=60, last_event_id=0, backbone="", vector_version="", head_config={})
        rounds_q.fail_round(con, rid, error="RuntimeError: out of memory\nTraceback ...")
    assert model_report.failed_after_current(service) == {"id": rid, "error": "RuntimeError: out of memory", "in_use": 2}
    assert model_report.round_history(service)["error"].tolist()[-1] == "RuntimeError: out of memory"


def _table(at: AppTest, column: str):
    """The one table shown with ``column`` (read-only dataframes carry no key in AppTest)."""
    found = [df.value for df in at.dataframe if column in df.value.columns]
    assert len(found) == 1, [list(df.value.columns) for df in at.dataframe]
    return found[0]


def _open_model_page(root, monkeypatch) -> AppTest:
    return open_app(root, monkeypatch, "app_pages/model.py")


def test_model_page_auto_accepts_the_preview_as_one_batch_and_undoes_it(labeled, monkeypatch):
    service = LabelingService(labeled)
    at = _open_model_page(labeled, monkeypatch)
    per_class = _table(at, "recall")
    assert sorted(per_class["class"]) == sorted(service.class_names().values())
    assert _table(at, "cv_accuracy")["id"].tolist() == [2, 1]
    assert [m.value for m in at.metric][:2] == ["2", "60"]
    assert all(at.button(key=k).disabled for k in ("model_pause", "model_resume", "model_trigger"))
    assert at.slider(key="aa_target").value == pytest.approx(0.95)

    at.slider(key="aa_target").set_value(0.6).run()
    plan = model_report.auto_accept_plan(service, target_precision=0.6, min_support=5)
    assert plan.candidates, "a bound of 0.6 should be reachable with 60 held-out labels"
    shown = _table(at, "threshold")
    assert shown["candidates"].sum() == len(plan.candidates)
    assert at.metric[4].value == str(len(plan.candidates))  # "Would be accepted"
    assert len(at.get("image")) == min(12, len(plan.candidates))  # the audit sample
    names = service.class_names()
    proposed = {names[c.class_id] for c in plan.candidates}
    labels = [t.value.split(" · ")[0] for t in at.text]
    assert len(labels) == 12 and set(labels) <= proposed
    assert at.button(key="aa_accept").disabled  # not before the sample was checked

    before = _human_labels(service)
    at.checkbox(key="aa_checked").check().run()
    at.button(key="aa_accept").click().run()
    assert not at.exception, at.exception
    with service.project.db.session() as con:
        events = [e for e in labels_q.all_events(con) if e[5] == "auto_accept"]
    assert len({e[6] for e in events}) == 1  # one batch
    assert {(e[1], e[2]) for e in events} == {(c.item_id, c.class_id) for c in plan.candidates}
    assert {e[4] for e in events} == {"tester"} and {e[8] for e in events} == {plan.round_id}
    assert at.success[0].value == f"Accepted {len(plan.candidates)} items as one batch."
    assert at.metric[4].value == "0"  # everything proposed is labeled now

    at.button(key="aa_undo").click().run()
    assert _human_labels(service) == before
    assert at.info[0].value == f"Undone: {len(plan.candidates)} items are unlabeled again."
    assert at.metric[4].value == str(len(plan.candidates))  # proposed again
    assert not at.checkbox(key="aa_checked").value  # a new batch needs a new check


def test_model_page_warns_of_a_failed_round_and_keeps_the_previous(labeled, monkeypatch):
    service = LabelingService(labeled)
    with service.project.db.session() as con:
        rid = rounds_q.start_round(con, n_labels=60, last_event_id=0, backbone="", vector_version="", head_config={})
        rounds_q.fail_round(con, rid, error="RuntimeError: out of memory\nTraceback ...")
    at = _open_model_page(labeled, monkeypatch)
    assert f"Round {rid} failed: RuntimeError: out of memory. The previous model is kept: round 2 stays in use." \
        in [w.value for w in at.warning]
    assert at.metric[0].value == "2"
    assert _table(at, "cv_accuracy")["status"].tolist() == ["failed", "finished", "finished"]


def test_the_plan_bounds_its_precision_on_held_out_labels(labeled):
    service = LabelingService(labeled)
    rnd, pred = service.predictions()
    plan = model_report.auto_accept_plan(service, target_precision=0.6)
    cv = pred.cv
    correct = cv["predicted"] == cv["true"]
    assert plan.held_out == len(cv["item_ids"]) == 60
    rows = plan.thresholds.set_index("class_id")
    assert rows["held_out"].sum() == 60
    if plan.bound is not None:
        above = sum(int(((cv["predicted"] == c) & (cv["confidence"] >= t)).sum())
                    for c, t in rows["threshold"].dropna().items())
        assert plan.support == above
        hits = sum(int(((cv["predicted"] == c) & (cv["confidence"] >= t) & correct).sum())
                   for c, t in rows["threshold"].dropna().items())
        assert plan.bound <= hits / above <= plan.interval[1]  # the bound is below the raw held-out precision
        assert plan.bound >= 0.6
        assert plan.estimated_precision == plan.bound
    assert (rows.loc[rows["held_out"] < 5, "threshold"].isna()).all()  # too few held-out: no threshold
    # At a target no 60 held-out labels can bound (0.99 needs 299 flawless ones), nothing is accepted.
    strict = model_report.auto_accept_plan(service, target_precision=0.99)
    assert strict.bound is None and strict.candidates == [] and strict.estimated_precision is None
    assert strict.thresholds["threshold"].isna().all() and (strict.thresholds["note"] != "").all()


def test_model_page_shows_the_bound_and_what_it_rests_on(labeled, monkeypatch):
    service = LabelingService(labeled)
    at = _open_model_page(labeled, monkeypatch)
    rnd = service.predictions()[0]
    captions = [c.value for c in at.caption]
    m = rnd["metrics"]
    assert any(f"On {m['cv_labels']} held-out human labels: {m['cv_folds']} folds" in c for c in captions), captions
    at.slider(key="aa_target").set_value(0.6).run()
    plan = model_report.auto_accept_plan(service, target_precision=0.6)
    assert plan.bound is not None
    assert at.metric[5].label == "Precision at least"
    if plan.bound is None:
        assert at.metric[5].value == "—"
    else:
        assert at.metric[5].value == f"{plan.bound:.1%}"
        assert any(f"on {plan.support} held-out human labels above the thresholds, of 60 held out" in c
                   for c in (c.value for c in at.caption))
    shown = _table(at, "held_out")
    assert {"lower", "upper", "support", "note"} <= set(shown.columns)


def _submit(at: AppTest):
    found = [b for b in at.button if (b.key or "").startswith("FormSubmitter:cert_checks-")]
    assert len(found) == 1, [b.key for b in at.button]
    return found[0]


def test_model_page_certifies_a_batch_by_a_checked_sample_and_accepts_the_rest(labeled, monkeypatch):
    from labeling.views import certification

    service = LabelingService(labeled)
    at = _open_model_page(labeled, monkeypatch)
    at.slider(key="aa_target").set_value(0.6).run()
    prop = certification.propose(service, target=0.6)
    assert prop.batch, "60 labels: a 60 % batch is offered"
    assert at.button(key="cert_start").label == f"Check {prop.audit} items to certify {prop.accepted_if_flawless}"
    at.button(key="cert_start").click().run()
    cert = certification.current(service)
    assert cert.state == "checking" and len(cert.sample) == prop.audit and cert.started_by == "tester"
    proposed = {c.item_id: c.class_id for c in cert.batch}
    pages = 0
    while cert.state == "checking":
        boxes = [c for c in at.checkbox if (c.key or "").startswith("cert_wrong_")]
        # the next twelve to check (the grid lists them column by column)
        assert sorted(int(c.key.rsplit("_", 1)[1]) for c in boxes) == sorted(cert.todo[:12])
        _submit(at).click().run()
        assert not at.exception, at.exception
        cert, pages = certification.current(service), pages + 1
    assert pages == -(-prop.audit // 12) and cert.state == "certified"
    labels = _human_labels(service)
    assert all(labels[i] == proposed[i] for i in cert.sample)  # each unticked check is a label
    assert at.success[0].value.startswith(f"Certified: all {prop.audit} checks were right")
    at.button(key="cert_accept").click().run()
    with service.project.db.session() as con:
        events = [e for e in labels_q.all_events(con) if e[5] == "auto_accept"]
    assert {e[1] for e in events} == {c.item_id for c in cert.rest} and len({e[6] for e in events}) == 1
    assert at.success[0].value == f"Accepted {len(cert.rest)} items as one batch."
    at.button(key="aa_undo").click().run()  # the same undo as the held-out route
    assert set(_human_labels(service)) == set(labels)


def test_model_page_a_ticked_item_fails_the_check_and_stays_unlabeled(labeled, monkeypatch):
    from labeling.views import certification

    service = LabelingService(labeled)
    at = _open_model_page(labeled, monkeypatch)
    at.slider(key="aa_target").set_value(0.6).run()
    at.button(key="cert_start").click().run()
    cert = certification.current(service)
    wrong = cert.todo[0]
    at.checkbox(key=f"cert_wrong_{wrong}").check()
    _submit(at).click().run()
    cert = certification.current(service)
    assert cert.state == "failed" and cert.wrong == [wrong]
    assert wrong not in _human_labels(service) and set(cert.right) == set(cert.sample[:12]) - {wrong}
    checked = min(12, len(cert.sample))
    assert at.warning[0].value.startswith(f"Not certified: 1 of the {checked} checked items were wrong")
    assert not [b for b in at.button if b.key == "cert_accept"]
    at.button(key="cert_cancel").click().run()
    assert certification.current(service).state == "closed"
    assert not [b for b in at.button if b.key == "cert_start"]  # no fresh sample of the same round's batch
    assert any("one try per round" in c.value for c in at.caption)
