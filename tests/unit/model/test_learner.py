"""The one prediction object: members, weights and the weighted mean that every score reads."""
from __future__ import annotations

import numpy as np

from labeling.active import acquisition
from labeling.model.learner import Prediction


def _two_items() -> Prediction:
    # Two heads and the propagation member (weights 0.25, 0.25, 0.5, as the learner's default blend).
    # Item 0: every member says 55/45. Item 1: both heads say class 0, propagation says class 1, so the
    # weighted mean is 50/50 while the uniform mean would be 67/33.
    probs = np.array([[[0.55, 0.45], [1.0, 0.0]],
                      [[0.55, 0.45], [1.0, 0.0]],
                      [[0.55, 0.45], [0.0, 1.0]]], dtype=np.float32)
    return Prediction(probs=probs, member_names=["linear-0", "mlp-1", "knn-propagation"],
                      weights=np.array([0.25, 0.25, 0.5]))


def test_most_uncertain_by_margin_is_the_item_whose_shown_top_two_are_closest():
    pred = _two_items()
    shown = np.sort(pred.mean, axis=1)[:, ::-1]
    closest = int(np.argmin(shown[:, 0] - shown[:, 1]))
    scores = pred.scores()
    assert closest == 1
    assert int(np.argmax(scores["margin"])) == closest
    # ...which the uniform mean would have got wrong (the bug: scores from another distribution)
    assert int(np.argmax(acquisition.margin(pred.probs))) == 0


def test_every_score_of_the_prediction_uses_its_weights():
    pred = _two_items()
    scores = pred.scores()
    for name in scores:
        np.testing.assert_allclose(scores[name], acquisition.score(pred.probs, name, weights=pred.weights),
                                   atol=1e-12, err_msg=name)
    np.testing.assert_allclose(scores["least_confidence"], 1.0 - pred.mean.max(axis=1), atol=1e-6)
    # weighted votes: two heads (0.5 in all) against the propagation member (0.5) split evenly
    np.testing.assert_allclose(scores["vote_entropy"], [0.0, np.log(2)], atol=1e-12)


def test_equal_weights_give_the_plain_mean_scores():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(3, 50))
    weighted = acquisition.all_scores(probs, weights=np.ones(3))
    plain = acquisition.all_scores(probs)
    for name in plain:
        np.testing.assert_allclose(weighted[name], plain[name], atol=1e-12, err_msg=name)
