"""Agreement figures against reference implementations and published examples; the stats command on the demo."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from datetime import datetime, timedelta

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from labeling.team import agreement

from labeling.team import review
from labeling.cli import main
from labeling.service import LabelingService
from labeling.team.stats import project_stats


# ---- Cohen ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_cohen_kappa_equals_sklearn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(5, 200)), int(rng.integers(2, 14))
    a = rng.integers(0, k, n)
    b = np.where(rng.random(n) < rng.random(), a, rng.integers(0, k, n))
    assert agreement.cohen_kappa(a.tolist(), b.tolist()) == cohen_kappa_score(a, b)  # bit for bit
    names = np.array([f"class {i}" for i in range(k)])
    assert agreement.cohen_kappa(names[a].tolist(), names[b].tolist()) == cohen_kappa_score(names[a], names[b])


@pytest.mark.parametrize("a, b, expected", [
    # Wikipedia's worked example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no: kappa 0.4
    (["y"] * 25 + ["n"] * 25, ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15, 0.4),
    (["cat", "dog", "cow"] * 4, ["cat", "dog", "cow"] * 4, 1.0),
    (["a", "b"] * 5, ["b", "a"] * 5, -1.0),
    ([3, 12, 3, 12, 7, 7, 12, 3], [3, 12, 12, 12, 7, 3, 12, 7], None),  # labels ≥ 10: numeric order, as sklearn
])
def test_cohen_kappa_on_crafted_labels(a, b, expected):
    got = agreement.cohen_kappa(a, b)
    assert got == cohen_kappa_score(a, b)
    if expected is not None:
        assert got == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_undefined_and_missing_labels():
    # one label throughout: chance agreement 1; sklearn gives nan, we report the agreement seen
    assert agreement.cohen_kappa(["a", "a", "a"], ["a", "a", "a"]) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(cohen_kappa_score(["a", "a", "a"], ["a", "a", "a"]))
    assert np.isnan(agreement.cohen_kappa(["a", "a"], ["a", "a"], replace_undefined_by=np.nan))
    # missing labels (None, NaN) drop the item for both raters
    a = ["cat", None, "dog", "cat", "dog", float("nan"), "cow"]
    b = ["cat", "dog", "dog", None, "cat", "cow", "cow"]
    assert agreement.cohen_kappa(a, b) == cohen_kappa_score(["cat", "dog", "dog", "cow"], ["cat", "dog", "cat", "cow"])
    with pytest.raises(ValueError, match="same items"):
        agreement.cohen_kappa(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one item"):
        agreement.cohen_kappa([None], ["a"])


def test_pairwise_kappa_uses_the_shared_items_of_each_pair():
    votes = [(i, "alice", "cat" if i % 2 else "dog") for i in range(10)]
    votes += [(i, "bob", "cat" if i % 3 else "dog") for i in range(10)]
    votes += [(i, "carol", "cat") for i in (0, 20, 21)]  # one item shared with each: below min_items
    pairs = agreement.pairwise_kappa(votes, min_items=2)
    assert [(p["a"], p["b"], p["items"]) for p in pairs] == [("alice", "bob", 10)]
    a = ["cat" if i % 2 else "dog" for i in range(10)]
    b = ["cat" if i % 3 else "dog" for i in range(10)]
    assert pairs[0]["kappa"] == cohen_kappa_score(a, b)
    assert pairs[0]["agreement"] == pytest.approx(np.mean(np.array(a) == np.array(b)))
    assert len(agreement.pairwise_kappa(votes, min_items=1)) == 3


# ---- Fleiss --------------------------------------------------------------------------------------
FLEISS_1971 = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
"""The worked example of Fleiss' kappa on Wikipedia: 10 items, 14 raters, 5 categories; kappa 0.210."""


def test_fleiss_kappa_on_the_published_example():
    assert agreement.fleiss_kappa_table(FLEISS_1971) == pytest.approx(0.20993, abs=5e-5)
    votes = [(i, f"r{k}", c) for i, row in enumerate(FLEISS_1971)
             for k, c in enumerate(np.repeat(np.arange(5), row))]
    got = agreement.fleiss_kappa(votes)
    assert got["kappa"] == pytest.approx(0.20993, abs=5e-5) and (got["items"], got["raters"]) == (10, 14)
    # items with another number of votes are left out, not mixed in
    extra = votes + [(99, "r0", 0), (99, "r1", 1), (100, "r0", 4)]
    got = agreement.fleiss_kappa(extra)
    assert got["kappa"] == pytest.approx(0.20993, abs=5e-5) and got["left_out"] == 2


def test_fleiss_kappa_edge_cases():
    assert agreement.fleiss_kappa([(1, "a", "x")])["kappa"] is None
    assert agreement.fleiss_kappa([(1, "a", "x"), (1, "b", "x"), (2, "a", "y"), (2, "b", "y")])["kappa"] == 1.0
    with pytest.raises(ValueError, match="same number"):
        agreement.fleiss_kappa_table([[2, 0], [1, 2]])


# ---- Krippendorff --------------------------------------------------------------------------------
def _reliability(votes, people, items):
    data = np.full((len(people), len(items)), np.nan)
    for item, who, label in votes:
        data[people.index(who), items.index(item)] = label
    return data


def test_krippendorff_alpha_on_the_classic_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units; nominal 0.743
    table = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
             "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
             "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
             "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]}
    votes = [(u, who, v) for who, row in table.items() for u, v in enumerate(row)]
    got = agreement.krippendorff_alpha(votes)
    assert got == pytest.approx(0.743, abs=5e-4)
    ref = krippendorff.alpha(reliability_data=_reliability(votes, list(table), list(range(12))),
                             level_of_measurement="nominal")
    assert got == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_krippendorff_alpha_equals_the_reference_package(seed):
    rng = np.random.default_rng(seed)
    people, items = ["a", "b", "c", "d", "e"], list(range(50))
    truth = rng.integers(0, 4, len(items))
    votes = [(i, who, int(truth[i] if rng.random() < 0.7 else rng.integers(0, 4)))
             for i in items for who in people if rng.random() < 0.5]  # missing data: some items get 0 or 1 vote
    assert any(n == 1 for n in np.bincount([v[0] for v in votes]))
    ref = krippendorff.alpha(reliability_data=_reliability(votes, people, items), level_of_measurement="nominal")
    assert agreement.krippendorff_alpha(votes) == pytest.approx(ref, abs=1e-12)


def test_krippendorff_alpha_edge_cases():
    assert agreement.krippendorff_alpha([(1, "a", "x"), (2, "b", "y")]) is None  # nothing pairable
    assert agreement.krippendorff_alpha([(1, "a", "x"), (1, "b", "x"), (2, "a", "x"), (2, "b", "x")]) == 1.0
    pairable = [(1, "a", "x"), (1, "b", "y"), (2, "a", "y"), (2, "b", "y"), (3, "a", "x"), (3, "b", "x")]
    assert agreement.krippendorff_alpha(pairable + [(4, "a", "z"), (5, "b", None)]) == \
        agreement.krippendorff_alpha(pairable)  # single votes and missing labels change nothing


# ---- per annotator -------------------------------------------------------------------------------
def test_agreement_with_consensus_leaves_the_annotator_out():
    votes = [(1, "a", "cat"), (1, "b", "cat"), (1, "c", "dog"), (2, "a", "dog"), (2, "b", "dog"), (3, "a", "cow")]
    per = agreement.agreement_with_consensus(votes)
    assert per["a"] == {"items": 2, "agreement": 0.75}  # item 1: the others tie cat/dog, half credit
    assert per["b"] == {"items": 2, "agreement": 0.75}
    assert per["c"] == {"items": 1, "agreement": 0.0}  # c's own vote does not make a majority for dog
    assert "a" in per and per["a"]["items"] == 2  # item 3 (a alone) is not counted


def test_confusion_between_annotators_counts_pairs_both_ways():
    votes = [(1, "a", "cat"), (1, "b", "cat"), (1, "c", "dog"), (2, "a", "dog"), (2, "b", "dog"), (3, "a", "cow")]
    labels, m = agreement.confusion_between_annotators(votes)
    assert labels == ["cat", "dog"]  # cow never appears in a pair
    assert m.tolist() == [[2, 2], [2, 2]]  # item 1: a-b cat/cat, a-c and b-c cat/dog; item 2: dog/dog
    assert m.sum() == 2 * 4 and (m == m.T).all()


def test_labels_per_hour_counts_active_time_only():
    t0 = datetime(2026, 1, 1, 9, 0)
    events = [("a", t0 + timedelta(seconds=30 * k), 1) for k in range(10)]  # 10 labels, 9 gaps of 30 s
    events += [("a", t0 + timedelta(hours=3), 5)]  # a batch after a long break: the break counts 300 s
    events += [("a", t0 + timedelta(hours=3, seconds=20), 0)]  # an undo: time, no label
    events += [("b", t0, 1)]  # one lone event: no measurable time
    got = agreement.labels_per_hour(events, idle_s=300)
    assert got["a"]["labels"] == 15 and got["a"]["events"] == 12
    assert got["a"]["active_hours"] == pytest.approx((9 * 30 + 300 + 20) / 3600)
    assert got["a"]["labels_per_hour"] == pytest.approx(15 / ((9 * 30 + 300 + 20) / 3600))
    assert got["b"] == {"labels": 1, "events": 1, "active_hours": 0.0, "labels_per_hour": None}
    shuffled = agreement.labels_per_hour(events[::-1], idle_s=300)  # order of the rows does not matter
    assert shuffled == got
    assert agreement.labels_per_hour([("a", 0.0, 1), ("a", 3600.0, 1)], idle_s=3600)["a"]["labels_per_hour"] == 2


# ---- per source ----------------------------------------------------------------------------------
def test_source_precision_checks_by_reviewer_then_by_votes():
    votes = [(1, "alice", "cat", "lasso"), (1, "bob", "cat", "manual"),    # agree
             (2, "alice", "cat", "lasso"), (2, "bob", "dog", "manual"),    # reviewer says dog
             (3, "alice", "cat", "lasso"), (3, "bob", "dog", "manual"),    # unsettled conflict
             (4, "alice", "cat", "lasso"),                                 # nobody checked it
             (5, "alice", "cat", "lasso"), (5, "bob", "cat", "manual"), (5, "carol", "dog", "manual")]
    got = agreement.source_precision(votes, {2: "dog"})
    # lasso (alice): 1 right (bob), 2 wrong (the reviewer), 3 wrong (bob), 4 unchecked, 5 unchecked (bob and
    # carol tie)
    assert got["lasso"] == {"labels": 5, "checked": 3, "by_reviewer": 1, "by_votes": 2, "confirmed": 1,
                            "precision": 1 / 3}
    # manual: bob 1 right (alice), 2 right (the reviewer), 3 wrong (alice), 5 unchecked (alice and carol tie);
    # carol 5 wrong (alice and bob say cat)
    assert got["manual"] == {"labels": 5, "checked": 4, "by_reviewer": 1, "by_votes": 3, "confirmed": 2,
                             "precision": 0.5}
    assert agreement.source_precision([(1, "a", "cat", "grid")], {})["grid"]["precision"] is None


def test_source_precision_and_counts_on_a_crafted_project(demo_project):
    service = LabelingService(demo_project)
    assert project_stats(service.project)["items_voted"] == 0
    items = [q.item_id for q in service.queue(12)]
    service.label(items[:7], "cat", user="alice", source="lasso")  # a bulk label of 7 items
    service.label(items[:4], "cat", user="bob")  # bob agrees on 4 items,
    service.label([items[4]], "dog", user="bob")  # disagrees on one,
    service.adjudicate([items[5]], "dog", user="rita", role="reviewer")  # a reviewer overrules one
    grid = service.label(items[8:12], "cow", user="carol", source="grid")
    service.undo(grid, user="carol")  # undone: neither votes nor labels
    service.label([items[7]], "dog", user="bob", source="accept_suggestion")  # only bob: unchecked
    stats = project_stats(service.project)
    assert stats["source_precision"] == {
        "accept_suggestion": {"labels": 1, "checked": 0, "by_reviewer": 0, "by_votes": 0, "confirmed": 0,
                              "precision": None},
        "lasso": {"labels": 7, "checked": 6, "by_reviewer": 1, "by_votes": 5, "confirmed": 4, "precision": 4 / 6},
        "manual": {"labels": 5, "checked": 5, "by_reviewer": 0, "by_votes": 5, "confirmed": 4, "precision": 0.8}}
    assert (stats["items_voted"], stats["items_with_several_votes"], stats["items_in_dispute"],
            stats["items_adjudicated"]) == (8, 5, 1, 1)
    assert stats["annotators"] == ["alice", "bob"]
    throughput = stats["labels_per_hour"]
    assert throughput["alice"]["labels"] == 7 and throughput["bob"]["labels"] == 6
    assert throughput["rita"]["labels"] == 1  # a reviewer's adjudication is their label
    assert throughput["carol"] == {**throughput["carol"], "labels": 0, "events": 8}  # 4 undone + 4 undo events
    json.dumps(stats, allow_nan=False)  # plain JSON types throughout


# ---- end to end ----------------------------------------------------------------------------------
def _stats_cli(root, *fmt) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["stats", str(root), *fmt]) == 0
    return out.getvalue()


def test_stats_command_reports_sklearn_kappa_on_the_demo(demo_project):
    service = LabelingService(demo_project)
    items = [q.item_id for q in service.queue(24)]
    rng = np.random.default_rng(3)
    classes = np.array(["cat", "dog", "cow"])
    a = classes[rng.integers(0, 3, len(items))]
    b = np.where(rng.random(len(items)) < 0.6, a, classes[rng.integers(0, 3, len(items))])
    for item, x, y in zip(items, a, b):
        service.label([item], str(x), user="alice")
        service.label([item], str(y), user="bob")
    stats = json.loads(_stats_cli(demo_project, "--format", "json"))["result"]["team"]
    [pair] = stats["pairwise_kappa"]
    assert (pair["a"], pair["b"], pair["items"]) == ("alice", "bob", len(items))
    assert pair["kappa"] == cohen_kappa_score(a, b)
    assert stats["fleiss_items"] == len(items) and stats["fleiss_raters"] == 2
    codes = {c: k for k, c in enumerate(classes)}
    ref = krippendorff.alpha(reliability_data=[[codes[x] for x in a], [codes[y] for y in b]],
                             level_of_measurement="nominal")
    assert stats["krippendorff_alpha"] == pytest.approx(ref, abs=1e-12)
    assert stats["items_in_dispute"] == int((a != b).sum())
    agree = float((a == b).mean())
    assert stats["agreement_with_consensus"] == {"alice": {"items": 24, "agreement": pytest.approx(agree)},
                                                 "bob": {"items": 24, "agreement": pytest.approx(agree)}}
    assert sum(map(sum, stats["confusion"]["matrix"])) == 2 * len(items)
    text = _stats_cli(demo_project, "--format", "text")
    assert f"alice / bob: {pair['kappa']:.3f} on {len(items)} items" in text
    assert _stats_cli(demo_project) == text


def test_stats_command_fails_on_a_folder_that_is_not_a_project(tmp_path, capsys):
    assert main(["stats", str(tmp_path)]) == 2
    assert "not a Quorum project" in capsys.readouterr().err


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
    stats = json.loads(_stats_cli(trained_project, "--format", "json"))["result"]["team"]
    [pair] = [p for p in stats["pairwise_kappa"] if {p["a"], p["b"]} == {"alice", "bob"}]
    assert pair["items"] == len(items) and pair["kappa"] == pytest.approx(expected, abs=1e-12)
    conflict = next(i for i in items if votes[i]["alice"] != votes[i]["bob"])
    service.adjudicate([conflict], "dog", user="rita", role="reviewer")
    assert service.current_labels()[conflict] == ("dog", "rita", "adjudication")
    assert service.history(conflict)[-1]["source"] == "adjudication"
