"""Consensus: majority as the database derives it, and the model-weighted (CROWDLAB-style) option."""
from __future__ import annotations

import numpy as np
import pytest

from labeling.team import consensus
from labeling.team.auth import AuthError
from labeling.service import LabelingService


def _simulate(seed: int, n_items: int = 400, n_classes: int = 4):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    skill = {"good": 0.95, "noisy1": 0.55, "noisy2": 0.55}
    votes = []
    for i in range(n_items):
        for who in rng.choice(list(skill), size=2, replace=False):  # two votes per item, as with overlap
            right = rng.random() < skill[who]
            c = truth[i] if right else (truth[i] + rng.integers(1, n_classes)) % n_classes
            votes.append((i, str(who), int(c)))
    probs = {}
    for i in range(n_items):
        p = np.full(n_classes, 0.1)
        p[truth[i] if rng.random() < 0.8 else (truth[i] + 1) % n_classes] = 0.7
        probs[i] = p / p.sum()
    return truth, votes, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_model_weighted_consensus_beats_majority_with_uneven_annotators(seed):
    truth, votes, probs = _simulate(seed)
    maj = consensus.majority(votes)
    result = consensus.crowdlab(votes, probs, 4)
    acc_majority = np.mean([maj[i] == truth[i] for i in maj])
    acc_model = np.mean(result.labels == truth[result.item_ids])
    assert acc_model > acc_majority + 0.05
    w = result.annotator_weight
    assert w["good"] > 1.5 * max(w["noisy1"], w["noisy2"])  # reliability is learned from the votes
    assert result.annotator_agreement["good"] > result.annotator_agreement["noisy1"] + 0.15
    assert ((result.quality > 0) & (result.quality <= 1)).all()


def test_majority_ties_go_to_the_newest_vote():
    assert consensus.majority([(1, "a", 0), (1, "b", 1)]) == {1: 1}
    assert consensus.majority([(1, "a", 0), (1, "b", 1), (1, "c", 0)]) == {1: 0}


def test_applying_the_model_weighted_consensus_is_an_undoable_reviewer_batch(trained_project):
    service = LabelingService(trained_project)
    ids = [q.item_id for q in service.queue(40)]
    sug = {q.item_id: q.pseudo_label for q in service.queue(40)}
    # "careful" agrees with the model; "hasty" always says cat; ties go to hasty's newer vote
    for i in ids:
        service.label([i], sug[i], user="careful")
    for i in ids:
        service.label([i], "cat", user="hasty")
    disputed = [i for i in ids if sug[i] != "cat"]
    assert disputed and all(service.current_labels()[i][0] == "cat" for i in disputed)
    with pytest.raises(AuthError):
        consensus.apply_model_weighted(service, user="ann", role="annotator")
    batch, changed = consensus.apply_model_weighted(service, user="rita", role="reviewer")
    assert set(changed) == set(disputed)
    labels = service.current_labels()
    assert all(labels[i] == (sug[i], consensus.CONSENSUS_USER, "adjudication") for i in disputed)
    service.undo(batch, user="rita", role="reviewer")
    assert any(service.current_labels()[i][0] == "cat" for i in disputed)
