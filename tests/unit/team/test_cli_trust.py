"""``python -m labeling auto-accept`` and ``suspects`` on a small labeled demo project, through ``main``."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import copy_project, true_rows
from labeling.cli import main
from labeling.model.rounds import train_round
from labeling.service import LabelingService
from labeling.team import review
from labeling.views import model_report
from storage import labels as labels_q

PER_CLASS = 10
FLIPPED = 3


def _truth(root: Path) -> dict[str, str]:
    with open(root / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        return {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def labeled_template(demo_project_template, tmp_path_factory) -> Path:
    """The 200-image demo with 10 labels per class, the first labels of three classes flipped to the
    next class, and a cross-validated round on them."""
    root = tmp_path_factory.mktemp("cli-trust") / "demo"
    copy_project(demo_project_template, root)
    rows = sorted(true_rows(root, PER_CLASS), key=lambda r: r["label"])  # classes in name order
    classes = sorted({r["label"] for r in rows})
    for k in range(FLIPPED):  # a wrong label on purpose
        rows[k * PER_CLASS]["label"] = classes[k + 1]
    service = LabelingService(root)
    assert service.label_table(rows, user="t")["labeled"] == len(rows)
    train_round(service.project, device="cpu", cv=True)
    return root


@pytest.fixture
def labeled(labeled_template, tmp_path) -> Path:
    return copy_project(labeled_template, tmp_path / "demo")


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _auto_events(service) -> list:
    with service.project.db.session() as con:
        return [e for e in labels_q.all_events(con) if e[5] == "auto_accept"]


def test_dry_run_lists_the_candidates_with_their_bounds_and_writes_nothing(labeled, capsys):
    code, out, err = _run(capsys, "auto-accept", labeled, "--target", 0.6, "--dry-run", "--format", "json")
    assert code == 0, err
    got = json.loads(out)["result"]
    service = LabelingService(labeled)
    plan = model_report.auto_accept_plan(service, target_precision=0.6)  # the page's engine function
    assert got["dry_run"] is True and got["round_id"] == plan.round_id
    assert got["candidates"], "0.6 should be reachable with 100 held-out labels"
    assert [(c["item_id"], c["class_id"]) for c in got["candidates"]] == \
        [(c.item_id, c.class_id) for c in plan.candidates]
    assert got["bound"] == pytest.approx(plan.bound) and got["bound"] >= 0.6
    assert got["interval"][0] == pytest.approx(got["bound"]) and got["interval"][1] >= got["bound"]
    assert 0 < got["support"] <= got["held_out"] == PER_CLASS * 10
    with_threshold = [r for r in got["classes"] if r["threshold"] is not None]
    assert with_threshold and all(r["held_out"] >= 5 for r in with_threshold)
    assert sum(r["held_out"] for r in got["classes"]) == got["held_out"]
    accepted = {c["class_id"] for c in got["candidates"]}
    assert accepted <= {r["class_id"] for r in with_threshold}
    assert all(c["confidence"] >= next(r["threshold"] for r in got["classes"] if r["class_id"] == c["class_id"])
               for c in got["candidates"])
    assert all(0.0 <= c["calibrated"] <= 1.0 for c in got["candidates"])
    assert _auto_events(service) == []  # a dry run writes nothing


def test_apply_writes_one_undoable_batch(labeled, capsys):
    service = LabelingService(labeled)
    before = service.current_labels()
    plan = model_report.auto_accept_plan(service, target_precision=0.6)
    code, out, err = _run(capsys, "auto-accept", labeled, "--target", 0.6, "--user", "bot", "--format", "json")
    assert code == 0, err
    got = json.loads(out)["result"]
    events = _auto_events(service)
    assert {e[6] for e in events} == {got["batch_id"]}  # one batch
    assert {(e[1], e[2]) for e in events} == {(c.item_id, c.class_id) for c in plan.candidates}
    assert {e[4] for e in events} == {"bot"} and sorted(got["accepted"]) == sorted(c.item_id for c in plan.candidates)
    code, _, err = _run(capsys, "undo", labeled, "--user", "bot", "--batch", got["batch_id"])
    assert code == 0, err
    assert service.current_labels() == before


def test_table_output_names_the_bound_and_the_count(labeled, capsys):
    code, out, _ = _run(capsys, "auto-accept", labeled, "--target", 0.6, "--dry-run")
    assert code == 0
    assert "lower bound" in out and "held-out labels" in out


@pytest.mark.parametrize("target", [0, 1, 1.5, -0.2])
def test_a_target_out_of_range_is_one_line_error(labeled, capsys, target):
    code, out, err = _run(capsys, "auto-accept", labeled, "--target", target, "--dry-run")
    assert code == 2 and out == ""
    assert err.startswith("error: --target must lie in (0, 1)") and err.count("\n") == 1


def test_nothing_to_accept_is_an_error_not_an_empty_batch(labeled, capsys):
    code, _, err = _run(capsys, "auto-accept", labeled, "--target", 0.999)
    assert code == 2 and "nothing to accept" in err
    assert _auto_events(LabelingService(labeled)) == []


def test_a_project_without_a_cross_validated_round_says_so(demo_project, capsys):
    code, _, err = _run(capsys, "auto-accept", demo_project, "--dry-run")
    assert code == 2 and "no round with cross-validated human labels" in err


def test_suspects_lists_every_suspected_error_with_the_suggested_class(labeled, capsys):
    code, out, err = _run(capsys, "suspects", labeled, "--format", "json")
    assert code == 0, err
    got = json.loads(out)["result"]
    service = LabelingService(labeled)
    expected = review.suspected_errors(service)
    assert [(r["item_id"], r["suggested"]) for r in got] == [(r["item_id"], r["suggested"]) for r in expected]
    truth = _truth(labeled)
    flipped = {r["item_id"]: r for r in got if truth[r["uri"]] != r["label"]}
    assert flipped, "a flipped label should be suspected"
    assert all(r["suggested"] == truth[r["uri"]] for r in flipped.values())
    scores = [r["score"] for r in got]
    assert scores == sorted(scores, reverse=True)  # most likely first
    code, out, _ = _run(capsys, "suspects", labeled, "--format", "json", "--limit", 1)
    assert code == 0 and len(json.loads(out)["result"]) == min(1, len(got))
    code, out, _ = _run(capsys, "suspects", labeled)
    assert code == 0 and out.startswith(f"{len(got)} suspected label errors, most likely first")
    code, _, err = _run(capsys, "suspects", labeled, "--limit", -1)
    assert code == 2 and "limit must be non-negative" in err
