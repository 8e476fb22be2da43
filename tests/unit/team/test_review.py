"""Team review in the engine: overlap, consensus, adjudication, suspected label errors, audits, history."""
from __future__ import annotations

import numpy as np
import pytest

from labeling.team import review
from labeling.team.auth import AuthError
from labeling.model.rounds import train_round
from labeling.service import LabelingService


def test_overlap_membership_is_a_stable_fraction():
    ids = np.arange(1, 20_001)
    mask = review.in_overlap(ids, 0.1, "abc123")
    assert 0.09 < mask.mean() < 0.11
    assert np.array_equal(mask, review.in_overlap(ids, 0.1, "abc123"))  # every process agrees
    assert not np.array_equal(mask, review.in_overlap(ids, 0.1, "def456"))  # the salt matters
    assert not review.in_overlap(ids, 0.0, "abc123").any() and review.in_overlap(ids, 1.0, "abc123").all()


def test_overlap_items_are_blind_until_both_annotators_voted(trained_project):
    service = LabelingService(trained_project)
    with pytest.raises(AuthError):
        service.set_overlap(0.5, 2, role="reviewer")
    service.set_overlap(0.5, 2, role="admin")  # half the items go to two people
    fraction, votes, salt = review.overlap_settings(service.project)
    seeded = set(service.current_labels())  # labeled by one person before the overlap was set
    seeded_overlap = {i for i in seeded if review.in_overlap([i], fraction, salt)[0]}
    assert seeded_overlap and seeded_overlap != seeded
    first = next(q.item_id for q in service.queue(200) if review.in_overlap([q.item_id], fraction, salt)[0])
    service.label([first], "cat", user="alice")
    assert first in service.current_labels("alice")
    assert first not in service.current_labels("bob")  # bob may not see alice's label yet
    assert service.item_card(first, user="bob").current is None
    assert set(service.current_labels("bob")) == seeded - seeded_overlap  # nor the seeded overlap labels
    pending = seeded_overlap | {first}
    assert review.pending_overlap(service.project) == pending
    bobs = [q.item_id for q in service.queue(len(pending) + 3, user="bob")]
    assert set(bobs[:len(pending)]) == pending  # second opinions come first in his queue
    assert first not in [q.item_id for q in service.queue(50, user="alice")]  # alice never gets it again
    round_id = train_round(service.project, device="cpu", cv=False)
    n_trained = next(r for r in service.rounds() if r["id"] == round_id)["n_labels"]
    assert n_trained == len(service.current_labels()) - len(pending)  # pending items are not trained on
    service.label([first], "dog", user="bob")
    assert service.current_labels("bob")[first][0] == "dog"  # a tie goes to the newest vote
    assert first in service.current_labels("carol")  # complete: visible to everyone
    assert review.pending_overlap(service.project) == seeded_overlap
    assert first not in [q.item_id for q in service.queue(50, user="bob")]


def test_the_map_and_grid_are_blind_to_pending_overlap_votes(trained_project):
    from labeling.views.projection import NO_VALUE, map_frame

    service = LabelingService(trained_project)
    service.set_overlap(1.0, 2, role="admin")  # every item goes to two people
    seeded = set(service.current_labels())  # all pending now: one vote each
    _rnd, p = service.predictions()
    names = service.class_names()
    row = int(np.argmax(p.confidence * ~np.isin(p.item_ids, list(seeded))))
    item, label = int(p.item_ids[row]), names[int(p.pseudo[row])]
    service.label([item], label, user="alice")
    ids = np.array(sorted(seeded | {item}))
    xy = np.zeros((len(ids), 2))
    for color_by in ("label", "annotator"):
        bobs = map_frame(service, xy, ids, color_by=color_by, user="bob")
        assert bobs["label"].isna().all() and bobs["annotator"].isna().all()  # nobody's vote shows
        assert set(bobs["color"]) == {NO_VALUE}
    alices = map_frame(service, xy, ids, user="alice").set_index("item_id")
    assert (alices.loc[item, "label"], alices.loc[item, "annotator"]) == (label, "alice")  # her own vote
    assert map_frame(service, xy, ids)["label"].notna().all()  # no user: the reviewer's full view
    assert item in [c.item_id for c in service.grid(label, n=500, user="bob")]  # still open to bob
    assert item not in [c.item_id for c in service.grid(label, n=500, user="alice")]


def test_majority_adjudication_undo_and_history(trained_project):
    service = LabelingService(trained_project)
    item = service.queue(1)[0].item_id
    service.label([item], "cat", user="alice")
    service.label([item], "cat", user="bob")
    service.label([item], "dog", user="carol")
    assert service.current_labels()[item][0] == "cat"  # majority
    [conflict] = [d for d in review.disagreements(service.project) if d["item_id"] == item]
    assert conflict["tally"] == {"cat": 2, "dog": 1} and conflict["uri"]
    with pytest.raises(AuthError, match="reviewer"):
        service.adjudicate([item], "dog", user="alice", role="annotator")
    with pytest.raises(AuthError):
        service.label([item], "dog", user="alice", source="adjudication")  # no way around it
    batch = service.adjudicate([item], "dog", user="rita", role="reviewer")
    assert service.current_labels()[item] == ("dog", "rita", "adjudication")
    assert item not in [d["item_id"] for d in review.disagreements(service.project)]  # settled
    assert item in [d["item_id"] for d in review.disagreements(service.project, include_settled=True)]
    service.undo(batch, user="rita", role="reviewer")
    assert service.current_labels()[item][0] == "cat"  # back to the majority
    hist = service.history(item)
    assert [(h["user"], h["kind"], h["source"]) for h in hist] == [
        ("alice", "label", "manual"), ("bob", "label", "manual"), ("carol", "label", "manual"),
        ("rita", "label", "adjudication"), ("rita", "undo", "undo")]
    assert [h["undone"] for h in hist] == [False, False, False, True, False]
    assert hist[3]["model_round"] is not None  # the round the reviewer saw


def test_a_wrong_label_among_a_correct_neighbourhood_is_suspected(demo_project, truth):
    service = LabelingService(demo_project)
    uri_of = {}
    with service.project.db.session() as con:
        for i, u in con.execute("SELECT id, uri FROM items WHERE status = 'ok'").fetchall():
            uri_of[int(i)] = u
    by_class: dict[str, list[int]] = {}
    for i, u in sorted(uri_of.items()):
        by_class.setdefault(truth[u], []).append(i)
    classes = sorted(by_class)
    rows = [{"item_id": i, "label": c} for c in classes for i in by_class[c][:6]]
    service.label_table(rows, user="alice")
    target = by_class[classes[0]][10]
    same = [n.item_id for n in service.neighbours(target, k=12) if truth[uri_of[n.item_id]] == classes[0]]
    service.label_table([{"item_id": i, "label": classes[0]} for i in same[:6]], user="alice")
    wrong = classes[1]
    service.label([target], wrong, user="mallory")  # a wrong label, on purpose
    train_round(service.project, device="cpu", cv=True)
    suspects = review.suspected_errors(service)
    found = {s["item_id"]: s for s in suspects}
    assert target in found, [(s["item_id"], s["label"], s["suggested"]) for s in suspects]
    assert found[target]["label"] == wrong and found[target]["suggested"] == classes[0]
    assert found[target]["labeled_by"] == "mallory" and found[target]["neighbour_disagreement"] >= 0.5
    assert target in [s["item_id"] for s in suspects[:3]]  # near the top of the list
    assert len(suspects) <= 0.1 * len(service.current_labels())  # a short list, not every hard item


def test_audit_samples_measure_a_bulk_batch_precision(trained_project):
    service = LabelingService(trained_project)
    ids = [q.item_id for q in service.queue(30)]
    batch = service.label(ids, "cat", user="alice", source="lasso")
    [audit] = [a for a in review.audits(service.project) if a["batch_id"] == batch]
    assert len(audit["sample"]) == review.AUDIT_SIZE and set(audit["sample"]) <= set(ids)
    assert audit["sample"] == review.audit_sample(ids, batch)  # the same sample on every visit
    assert audit["precision"] is None and audit["todo"] == audit["sample"]
    ok, bad = audit["sample"][:3], audit["sample"][3:4]
    service.adjudicate(ok, "cat", user="rita", role="reviewer")
    service.adjudicate(bad, "dog", user="rita", role="reviewer")
    [audit] = [a for a in review.audits(service.project) if a["batch_id"] == batch]
    assert (audit["checked"], audit["confirmed"]) == (4, 3) and audit["precision"] == 0.75
    assert len(audit["todo"]) == review.AUDIT_SIZE - 4
    assert review.source_precision(service.project)["lasso"] == {"checked": 4, "confirmed": 3, "precision": 0.75}


def test_a_merge_maps_votes_without_casting_one(trained_project):
    from labeling.views import data_admin
    service = LabelingService(trained_project)
    item, other = [q.item_id for q in service.queue(2)]
    service.label([item], "kitty", user="alice")
    service.label([item], "dog", user="bob")  # a tie: bob's newer vote wins
    service.label([other], "kitty", user="alice")
    service.label([other], "cat", user="bob")
    data_admin.merge_classes(service, "kitty", "cat", user="admin")
    labels = service.current_labels()
    assert labels[item][0] == "dog"  # the merge did not vote for "cat"
    assert labels[other][0] == "cat"  # both votes now count for the merged class
    [d] = [d for d in review.disagreements(service.project) if d["item_id"] == item]
    assert d["tally"] == {"cat": 1, "dog": 1}
    assert other not in [d["item_id"] for d in review.disagreements(service.project)]  # no longer a conflict


def test_one_by_one_labels_are_audited_per_person(trained_project):
    service = LabelingService(trained_project)
    ids = [q.item_id for q in service.queue(15)]
    for i in ids:
        service.label([i], "cat", user="alice")
    [group] = [a for a in review.audits(service.project) if a["batch_id"] == "manual:alice"]
    assert group["items"] == 15 and len(group["sample"]) == review.AUDIT_SIZE
    service.adjudicate(group["sample"][:2], "cat", user="rita", role="reviewer")
    service.adjudicate(group["sample"][2:3], "dog", user="rita", role="reviewer")
    assert review.source_precision(service.project)["manual"]["precision"] == pytest.approx(2 / 3)
