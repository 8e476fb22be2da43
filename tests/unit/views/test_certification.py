"""Auto-accept certified by a checked sample, on a small demo project with a cross-validated round."""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import copy_project, true_rows
from labeling.model.rounds import train_round
from labeling.service import LabelingService
from labeling.team import certify
from labeling.team.autoaccept import preview
from labeling.views import certification, model_report
from storage import labels as labels_q

PER_CLASS = 5


@pytest.fixture(scope="module")
def cv_template(demo_project_template, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("certify") / "demo"
    copy_project(demo_project_template, root)
    service = LabelingService(root)
    service.label_table(true_rows(root, PER_CLASS), user="t")
    train_round(service.project, device="cpu", cv=True)
    return root


@pytest.fixture
def service(cv_template, tmp_path) -> LabelingService:
    return LabelingService(copy_project(cv_template, tmp_path / "demo"))


def _proposal(service, size: int = 60, target: float = 0.8) -> certification.Proposal:
    """A hand-cut batch: the round's most confident suggestions for undecided items (the cut that
    ``propose`` makes is tested on its own)."""
    rnd, pred = service.predictions()
    batch = preview(pred, {int(c): 0.0 for c in pred.class_ids.tolist()},
                    exclude_item_ids=model_report._decided_items(service))[:size]
    assert len(batch) == size
    n = certify.audit_size(size, target)
    return certification.Proposal(int(rnd["id"]), target, batch, n, certify.remainder_bound(size, n, 0), size)


def _names(service) -> dict[int, str]:
    return service.class_names()


def test_propose_cuts_a_batch_of_undecided_items_most_confident_first(service):
    prop = certification.propose(service, target=0.6)
    assert prop is not None and prop.batch, "5 labels per class: a 60 % batch is offered"
    conf = [c.confidence for c in prop.batch]
    assert conf == sorted(conf, reverse=True)
    decided = model_report._decided_items(service)
    assert not decided & {c.item_id for c in prop.batch}
    assert prop.audit == certify.audit_size(len(prop.batch), 0.6) and 2 * prop.audit <= len(prop.batch)
    assert prop.bound >= 0.6 and certify.MIN_CHANCE <= prop.chance <= 1.0
    with pytest.raises(ValueError, match="target precision"):
        certification.propose(service, target=1.0)


def test_checks_are_labels_and_a_flawless_sample_certifies_the_rest(service):
    prop = _proposal(service)
    cert = certification.start(service, prop, user="ann", seed=4)
    assert cert.state == "checking" and len(cert.sample) == prop.audit and len(cert.todo) == prop.audit
    assert set(cert.sample) <= {c.item_id for c in prop.batch}
    with pytest.raises(ValueError, match="still being checked"):
        certification.start(service, prop, user="bob")
    with pytest.raises(ValueError, match="not certified: .* checks still to do"):
        certification.accept(service, user="ann")
    half = cert.sample[: len(cert.sample) // 2]
    cert = certification.record_checks(service, right=half, user="ann")
    assert cert.right == half and cert.state == "checking"
    with service.project.db.session() as con:
        live = {r.item_id: r for r in labels_q.current_state(con, half)}
    proposed = {c.item_id: c.class_id for c in prop.batch}
    assert all(live[i].class_id == proposed[i] and live[i].source == "accept_suggestion" for i in half)
    cert = certification.record_checks(service, right=cert.todo, user="ann")
    assert cert.state == "certified" and cert.bound >= 0.8
    done = certification.accept(service, user="ann")
    assert sorted(done.item_ids) == sorted(c.item_id for c in cert.rest)
    assert not set(done.item_ids) & set(cert.sample)
    assert certification.current(service).state == "accepted"
    service.undo(done.batch_id, user="ann")  # one undoable batch; the checks stay
    with service.project.db.session() as con:
        still = {r.item_id for r in labels_q.current_state(con, [c.item_id for c in prop.batch])}
    assert still == set(cert.sample)


def test_a_wrong_check_fails_the_batch_and_leaves_the_item_for_labeling(service):
    prop = _proposal(service)
    cert = certification.start(service, prop, user="ann", seed=1)
    bad = cert.sample[0]
    cert = certification.record_checks(service, right=cert.sample[1:], wrong=[bad], user="ann")
    assert cert.state == "failed" and cert.wrong == [bad] and cert.bound < 0.8
    with pytest.raises(ValueError, match="1 of the checked items were wrong"):
        certification.accept(service, user="ann")
    assert bad not in model_report._decided_items(service)
    with pytest.raises(ValueError, match="one try per round"):  # no fresh sample of the same batch
        certification.start(service, prop, user="ann", seed=2)
    certification.cancel(service)
    assert certification.current(service).state == "closed"
    with pytest.raises(ValueError, match="one try per round"):
        certification.start(service, prop, user="ann", seed=2)
    with pytest.raises(ValueError, match="no certification is open"):
        certification.record_checks(service, right=cert.sample[:1], user="ann")
    newer = replace(prop, round_id=prop.round_id + 1)  # the next round may be checked
    assert certification.start(service, newer, user="ann", seed=2).state == "checking"


def test_a_label_given_on_the_label_page_counts_as_a_check(service):
    prop = _proposal(service)
    cert = certification.start(service, prop, user="ann", seed=3)
    proposed = {c.item_id: c.class_id for c in prop.batch}
    names = _names(service)
    a, b = cert.sample[:2]
    service.label([a], names[proposed[a]], user="bob")
    other = next(n for c, n in names.items() if c != proposed[b])
    service.label([b], other, user="bob")
    cert = certification.current(service)
    assert a in cert.right and b in cert.wrong and cert.state == "failed"
    service.undo(None, user="bob")  # bob's newest batch: the wrong label
    assert certification.current(service).state == "checking"


def test_record_checks_refuses_items_outside_the_sample_and_without_a_certification(service):
    with pytest.raises(ValueError, match="no certification is open"):
        certification.record_checks(service, right=[1], user="ann")
    prop = _proposal(service)
    cert = certification.start(service, prop, user="ann", seed=0)
    outside = next(c.item_id for c in prop.batch if c.item_id not in cert.sample)
    with pytest.raises(ValueError, match="not in the sample"):
        certification.record_checks(service, right=[outside], user="ann")
    with pytest.raises(ValueError, match="user name"):
        certification.record_checks(service, right=cert.sample[:1], user=" ")
    certification.cancel(service)
    assert certification.current(service).state == "closed"
    with pytest.raises(ValueError, match="one try per round"):  # cancelling is no way to draw again
        certification.start(service, prop, user="ann", seed=5)


def test_start_refuses_an_empty_batch(service):
    prop = _proposal(service)
    empty = certification.Proposal(prop.round_id, 0.8, [], 0, None, prop.proposals)
    with pytest.raises(ValueError, match="no batch to certify"):
        certification.start(service, empty, user="ann")


def test_command_line_proposes_starts_takes_checks_as_labels_and_accepts(service, tmp_path, capsys):
    import json

    from labeling.cli import main

    root = str(service.project.root)

    def run(*argv):
        code = main(["certify", root, "--target", "0.6", "--format", "json", *argv])
        return code, json.loads(capsys.readouterr().out)["result"]

    code, prop = run()
    assert code == 0 and prop["state"] == "proposed" and prop["checks"] > 0 and prop["accepted_if_flawless"] == prop["batch"] - prop["checks"]
    code, started = run("--start")
    assert started["state"] == "checking" and len(started["todo"]) == prop["checks"] == started["checks"]
    checks = tmp_path / "checks.csv"
    with open(checks, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "label"])
        w.writerows([t["item_id"], t["proposed"]] for t in started["todo"])
    assert main(["label", root, "--csv", str(checks), "--user", "ann"]) == 0
    capsys.readouterr()
    code, status = run()
    assert status["state"] == "certified" and status["right"] == prop["checks"] and status["bound"] >= 0.6
    code, done = run("--accept", "--user", "ann")
    assert done["state"] == "accepted"
    assert len(done["accepted"]) + len(done["skipped"]) == prop["accepted_if_flawless"]
    assert certification.current(service).state == "accepted"
    code = main(["certify", root, "--accept"])  # nothing open any more: one line, exit 1
    assert code != 0 and "no certification is open" in capsys.readouterr().err


def test_auto_accept_uses_the_newest_cross_validated_round_while_the_newest_has_none(service):
    before = certification.propose(service, target=0.6)
    plan = model_report.auto_accept_plan(service, target_precision=0.6)
    train_round(service.project, device="cpu", cv=False)  # as the worker's round before its cross-validation
    assert service.newest_round_id() == before.round_id + 1
    assert model_report._cv(service) is None  # the Model page's figures wait for this round's own
    again = certification.propose(service, target=0.6)
    assert again is not None and again.round_id == before.round_id
    assert [c.item_id for c in again.batch] == [c.item_id for c in before.batch]
    assert model_report.auto_accept_plan(service, target_precision=0.6).round_id == plan.round_id
