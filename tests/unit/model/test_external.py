"""Imported models as ensemble members: mapped onto a round, weighed by their accuracy on human labels."""
from __future__ import annotations

import numpy as np
import pytest

from labeling.model import external


def _member(probs, covered=None, weight=None, name="m"):
    probs = np.asarray(probs, np.float32)
    covered = np.ones(len(probs), bool) if covered is None else np.asarray(covered)
    return external.Member(name, probs, covered, weight)


def test_load_maps_items_and_classes_and_drops_mass_on_unknown_classes(tmp_path):
    np.savez(tmp_path / "m.npz", item_ids=np.array([30, 10, 99]), class_ids=np.array([7, 5, 6]),
             probs=np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]], np.float32))
    rows = [{"name": "m", "file": "m.npz", "enabled": True, "weight": None},
            {"name": "gone", "file": "missing.npz", "enabled": True, "weight": None},
            {"name": "off", "file": "m.npz", "enabled": False, "weight": None}]
    got = external.load_members(rows, tmp_path, np.array([10, 20, 30]), np.array([5, 7]))
    assert [m.name for m in got] == ["m"]
    m = got[0]
    assert m.covered.tolist() == [True, False, True]  # item 20: no prediction; item 99: not in the round
    np.testing.assert_allclose(m.probs[0], [0.5, 0.5])  # class 6 is not in the round: 0.1/0.1 renormalised
    np.testing.assert_allclose(m.probs[2], [0.3 / 0.8, 0.5 / 0.8])
    assert m.probs[1].sum() == 0


def test_vote_weight_is_zero_at_chance_and_grows_with_accuracy():
    assert external.vote_weight(0.1, 10) == pytest.approx(0.0, abs=1e-9)
    assert external.vote_weight(0.5, 2) == 0.0
    assert external.vote_weight(0.9, 10) > external.vote_weight(0.7, 10) > 0


def test_learned_share_follows_accuracy_on_the_human_labels():
    labels = np.array([0, 1, 0, 1, 0, 1, -1, -1])
    good = _member(np.eye(2)[[0, 1, 0, 1, 0, 1, 0, 0]])  # right on all six labels
    bad = _member(np.eye(2)[[1, 0, 1, 0, 1, 0, 0, 0]])  # wrong on all six
    s_good, info = external.shares([good], labels, 2, learner_accuracy=0.8)
    s_bad, _ = external.shares([bad], labels, 2, learner_accuracy=0.8)
    assert s_good[0] > 0.5 and s_bad[0] == 0.0
    assert info[0]["accuracy"] == 1.0 and info[0]["checked_on"] == 6 and info[0]["weight"] == "auto"
    few = np.array([0, 1, -1, -1, -1, -1, -1, -1])  # two labels only: the model counts as the learner's equal
    assert external.shares([bad], few, 2, learner_accuracy=0.8)[0][0] == 0.5
    fixed = _member(np.eye(2)[[0] * 8], weight=0.3)
    assert external.shares([fixed], labels, 2, learner_accuracy=0.8)[0][0] == pytest.approx(0.3)


def test_join_keeps_uncovered_rows_neutral_and_weights_summing_to_one():
    probs = np.array([[[0.8, 0.2], [0.4, 0.6]], [[0.6, 0.4], [0.2, 0.8]]], np.float32)  # 2 members, 2 items
    weights = np.array([0.5, 0.5])
    m = _member([[0.0, 1.0], [0.0, 0.0]], covered=[True, False])
    out, names, w = external.join(probs, ["a", "b"], weights, [m], np.array([0.4]))
    assert names == ["a", "b", "model:m"] and w.sum() == pytest.approx(1.0) and w[-1] == pytest.approx(0.4)
    np.testing.assert_allclose(out[2, 1], [0.3, 0.7])  # the learner's own mean where the model said nothing
    mean = np.tensordot(w, out, axes=1)
    np.testing.assert_allclose(mean[1], [0.3, 0.7], rtol=1e-6)


def test_held_out_blend_matches_the_rounds_join():
    mean = np.array([[0.7, 0.3], [0.5, 0.5]], np.float32)
    m = _member([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], covered=[True, True, False])
    got = external.blend_held_out(mean, np.array([0, 2]), [m], np.array([0.5]))
    np.testing.assert_allclose(got, [[0.35, 0.65], [0.5, 0.5]])


def test_alone_marks_rows_no_model_covers():
    a = _member([[1.0, 0.0], [0.0, 0.0]], covered=[True, False])
    probs, names, w, covered = external.alone([a])
    assert covered.tolist() == [True, False] and names == ["model:m"] and w.tolist() == [1.0]
    np.testing.assert_allclose(probs[0, 1], [0.5, 0.5])


def test_suggestions_before_labels_show_each_class_in_turn():
    from labeling.active.coldstart import by_suggestion

    mean = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4]])
    covered = np.array([True, True, True, True, False])
    assert by_suggestion(mean, covered, 10).tolist() == [0, 3, 1, 2]  # class 0's best, class 1's best, ...
    assert by_suggestion(mean, covered, 2, exclude=np.array([True, False, False, False, False])).tolist() == [1, 3]


def test_a_model_at_chance_gets_no_share_even_before_the_learner_is_measured():
    labels = np.array([0, 1, 0, 1, 0, 1, -1, -1])
    wrong = _member(np.eye(2)[[1, 0, 1, 0, 1, 0, 0, 0]])
    assert external.shares([wrong], labels, 2, learner_accuracy=None)[0][0] == 0.0
    right = _member(np.eye(2)[[0, 1, 0, 1, 0, 1, 0, 0]])
    assert external.shares([right], labels, 2, learner_accuracy=None)[0][0] == 0.5  # nothing to compare with yet
