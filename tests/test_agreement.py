"""Agreement figures against reference implementations, and the team flow end to end on the demo."""
from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime, timedelta

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from labeling import agreement, review
from labeling.cli import main
from labeling.service import LabelingService


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, 60)
    b = np.where(rng.random(60) < 0.6, a, rng.integers(0, 4, 60))
    names = np.array(["cat", "dog", "cow", "owl"])
    assert agreement.cohen_kappa(names[a].tolist(), names[b].tolist()) == pytest.approx(
        cohen_kappa_score(names[a], names[b]), abs=1e-12)


def test_cohen_kappa_edge_cases():
    assert agreement.cohen_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    assert agreement.cohen_kappa(["a", "a"], ["a", "a"]) == 1.0  # sklearn: nan
    assert agreement.cohen_kappa(["a", "b", "a", "b"], ["b", "a", "b", "a"]) == pytest.approx(
        cohen_kappa_score(["a", "b", "a", "b"], ["b", "a", "b", "a"]))
    with pytest.raises(ValueError):
        agreement.cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_on_the_published_example():
    # Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories: kappa 0.210
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert agreement.fleiss_kappa_table(table) == pytest.approx(0.210, abs=5e-4)
    votes = [(i, f"r{k}", c) for i, row in enumerate(table) for k, c in
             enumerate(np.repeat(np.arange(5), row))]
    got = agreement.fleiss_kappa(votes)
    assert got["kappa"] == pytest.approx(0.210, abs=5e-4) and (got["items"], got["raters"]) == (10, 14)


def _reliability(votes, people, items):
    col = {p: k for k, p in enumerate(people)}
    data = np.full((len(people), len(items)), np.nan)
    for i, who, label in votes:
        data[col[who], items.index(i)] = label
    return data


@pytest.mark.parametrize("seed", range(4))
def test_krippendorff_alpha_equals_the_reference_package(seed):
    rng = np.random.default_rng(seed)
    people, items = ["a", "b", "c", "d"], list(range(40))
    truth = rng.integers(0, 3, len(items))
    votes = []
    for i in items:
        for who in people:
            if rng.random() < 0.6:  # missing data: not everyone labels everything
                votes.append((i, who, int(truth[i] if rng.random() < 0.7 else rng.integers(0, 3))))
    ref = krippendorff.alpha(reliability_data=_reliability(votes, people, items), level_of_measurement="nominal")
    assert agreement.krippendorff_alpha(votes) == pytest.approx(ref, abs=1e-9)


def test_agreement_confusion_and_labels_per_hour():
    votes = [(1, "a", "cat"), (1, "b", "cat"), (1, "c", "dog"), (2, "a", "dog"), (2, "b", "dog"), (3, "a", "cow")]
    per = agreement.agreement_with_consensus(votes)
    assert per["a"] == {"items": 2, "agreement": 0.75}  # item 1: the others tie cat/dog, half credit
    assert per["c"] == {"items": 1, "agreement": 0.0}
    labels, m = agreement.confusion_between_annotators(votes)
    cat, dog = labels.index("cat"), labels.index("dog")
    assert m[cat, cat] == 2 and m[cat, dog] == m[dog, cat] == 2 and m[dog, dog] == 2
    t0 = datetime(2026, 1, 1, 9, 0)
    events = [("a", t0 + timedelta(seconds=30 * k), 1) for k in range(10)]  # 10 labels in 4.5 minutes
    events += [("a", t0 + timedelta(hours=3), 5)]  # after a long break: the break is not work
    got = agreement.labels_per_hour(events, idle_s=300)
    assert got["a"]["labels"] == 15
    assert got["a"]["active_hours"] == pytest.approx((300 + 9 * 30 + 300) / 3600)


def test_two_annotators_and_a_reviewer_on_the_demo(trained_project):
    """The acceptance flow: overlap sends items to alice and bob, kappa equals sklearn's on their labels,
    the reviewer settles a conflict, and the derived label and the history show it."""
    service = LabelingService(trained_project)
    service.set_overlap(0.3, 2, role="admin")
    fraction, _, salt = review.overlap_settings(service.project)
    classes = ["cat", "dog", "cow"]
    rng = np.random.default_rng(0)
    for step in range(40):  # each labels from their own queue; overlap items reach both of them
        for who in ("alice", "bob"):
            item = service.queue(1, user=who)[0].item_id
            pick = classes[(item + (step % 3 == 0 and who == "bob")) % 3] if rng.random() < 0.9 else "cow"
            service.label([item], pick, user=who)
    votes = {}
    for it in range(1, 400):
        h = [e for e in service.history(it) if e["kind"] == "label" and e["user"] in ("alice", "bob")]
        if {e["user"] for e in h} == {"alice", "bob"}:
            votes[it] = {e["user"]: e["label"] for e in h}
    assert len(votes) >= 5 and all(review.in_overlap([i], fraction, salt)[0] for i in votes)
    items = sorted(votes)
    expected = cohen_kappa_score([votes[i]["alice"] for i in items], [votes[i]["bob"] for i in items])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["stats", str(trained_project), "--format", "json"]) == 0
    stats = json.loads(out.getvalue())
    [pair] = [p for p in stats["pairwise_kappa"] if {p["a"], p["b"]} == {"alice", "bob"}]
    assert pair["items"] == len(items) and pair["kappa"] == pytest.approx(expected, abs=1e-12)
    conflict = next(i for i in items if votes[i]["alice"] != votes[i]["bob"])
    service.adjudicate([conflict], "dog", user="rita", role="reviewer")
    assert service.current_labels()[conflict] == ("dog", "rita", "adjudication")
    assert service.history(conflict)[-1]["source"] == "adjudication"
