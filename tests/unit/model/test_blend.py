"""The learned blend: the propagation member's share fitted on held-out labels."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from labeling.model.ensemble import EnsembleConfig, FeatureScaler
from labeling.model.learner import LearnerConfig, choose_blend, fit_predict, learned_blend, sharpen
from labeling.search.neighbours import knn_graph


def test_the_member_that_knows_better_gets_the_larger_share():
    truth = np.array([0, 1, 0, 1])
    good = np.eye(2)[truth] * 0.8 + 0.1
    bad = np.eye(2)[1 - truth] * 0.8 + 0.1
    assert choose_blend(heads=bad, prop=good, truth=truth, default=0.5, powers=(1.0,)) == (1.0, 1.0)
    assert choose_blend(heads=good, prop=bad, truth=truth, default=0.5, powers=(1.0,)) == (0.0, 1.0)
    # equally right and equally sure: the default share stays
    assert choose_blend(heads=good, prop=good, truth=truth, default=0.5, powers=(1.0,)) == (0.5, 1.0)
    assert choose_blend(heads=good[:0], prop=good[:0], truth=truth[:0], default=0.3) == (0.3, 1.0)


def test_log_loss_breaks_a_tie_in_accuracy():
    truth = np.array([0, 0])
    sure = np.array([[0.95, 0.05], [0.95, 0.05]])
    unsure = np.array([[0.55, 0.45], [0.55, 0.45]])
    assert choose_blend(heads=unsure, prop=sure, truth=truth, default=0.5, powers=(1.0,)) == (1.0, 1.0)


def test_an_underconfident_but_right_propagation_member_is_sharpened():
    truth = np.array([0, 1, 0, 1, 2])
    prop = np.full((5, 3), 0.3)
    prop[np.arange(5), truth] = 0.4  # always right, never sure
    heads = np.full((5, 3), 1 / 3)
    share, power = choose_blend(heads=heads, prop=prop, truth=truth, default=0.5)
    assert share == 1.0 and power == 4.0  # the sharpest power on the grid lowers the log-loss most
    sharp = sharpen(prop, power)
    np.testing.assert_allclose(sharp.sum(axis=1), 1.0, rtol=1e-6)
    assert (sharp.argmax(axis=1) == truth).all() and sharp.max() > 0.4
    np.testing.assert_allclose(sharpen(np.full((2, 3), 1 / 3), 3.0), 1 / 3, rtol=1e-6)  # uniform stays


def _blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8)) * 3
    y = np.repeat(np.arange(3), 80)
    raw = (centres[y] + rng.normal(size=(240, 8))).astype(np.float32)
    x = FeatureScaler.fit(raw).transform(raw)
    return x, y, knn_graph(x, 10)


def test_the_fixed_share_stays_while_labels_are_few():
    x, y, graph = _blobs()
    labels = np.full(240, -1)
    labels[[0, 1, 80, 81, 160, 161]] = y[[0, 1, 80, 81, 160, 161]]  # 2 per class, below 5
    config = LearnerConfig(ensemble=EnsembleConfig(seed=0), learn_blend=True, knn_weight=0.4, knn_sharpen=1.5)
    assert learned_blend(x, labels, 3, graph=graph, config=config, device="cpu") == (0.4, 1.5)


def test_a_learned_share_is_one_of_the_grid_and_is_what_the_prediction_uses():
    x, y, graph = _blobs()
    labels = np.full(240, -1)
    picked = np.concatenate([np.flatnonzero(y == c)[:8] for c in range(3)])
    labels[picked] = y[picked]
    config = LearnerConfig(ensemble=EnsembleConfig(seed=0), learn_blend=True, self_training=False)
    share, power = learned_blend(x, labels, 3, graph=graph, config=config, device="cpu")
    pred = fit_predict(x, labels, 3, graph=graph, config=config, device="cpu")
    assert pred.member_names[-1] == "knn-propagation"
    assert pred.weights[-1] == pytest.approx(share) and pred.weights.sum() == pytest.approx(1.0)
    assert share in (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0) and power in (1.0, 2.0, 3.0, 4.0)
    assert pred.knn_power == power


def test_cross_validation_keeps_the_share_the_round_learned():
    from labeling.model.learner import Prediction, with_fixed_blend

    learned = LearnerConfig(learn_blend=True, knn_weight=0.5)
    pred = Prediction(probs=np.zeros((3, 1, 2)), member_names=["linear-0", "mlp-1", "knn-propagation"],
                      weights=np.array([0.4, 0.4, 0.2]), knn_power=3.0)
    fixed = with_fixed_blend(learned, pred)
    assert fixed.learn_blend is False and fixed.knn_weight == pytest.approx(0.2) and fixed.knn_sharpen == 3.0
    plain = LearnerConfig(knn_weight=0.5, learn_blend=False)
    assert with_fixed_blend(plain, pred) is plain  # nothing learned: nothing to keep


def test_a_folds_heads_never_see_its_own_rows():
    from labeling.model.ensemble import fit_fold_heads

    x, y, _ = _blobs()
    fold = np.full(240, -1)
    fold[np.flatnonzero(y == 0)[:40]] = 0  # fold 0 holds out half of class 0 ...
    fold[np.flatnonzero(y == 1)[:40]] = 1
    y_train = y.copy()
    y_train[fold == 0] = 2  # ... and those rows are labeled class 2: only the other fold's heads learn that
    probs = fit_fold_heads(x, y_train, 3, fold, config=EnsembleConfig(seed=0, steps=60))
    assert probs.shape == (240, 3)
    np.testing.assert_allclose(probs[fold >= 0].sum(axis=1), 1.0, rtol=1e-5)
    assert (probs[fold < 0] == 0).all()  # never held out: no held-out prediction
    assert (probs[fold == 0].argmax(axis=1) == 0).mean() > 0.9  # fold 0's heads saw class 0 there, not 2
    assert (probs[fold == 1].argmax(axis=1) == 1).mean() > 0.9


def test_inner_folds_train_as_the_round_does(monkeypatch):
    """With enough labels that the round trains without self-training, its inner folds do too (they
    once self-trained on hundreds of pseudo-labels, ten times the round's own fit)."""
    import labeling.model.learner as learner

    x, y, graph = _blobs()
    labels = np.full(240, -1)
    picked = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(3)])  # 6 per class: no self-training
    labels[picked] = y[picked]
    seen = []
    real = learner.fit_ensemble
    monkeypatch.setattr(learner, "fit_ensemble", lambda xs, ys, *a, **k: seen.append(len(ys)) or real(xs, ys, *a, **k))
    config = LearnerConfig(ensemble=EnsembleConfig(seed=0, steps=20), learn_blend=True)
    pred = fit_predict(x, labels, 3, graph=graph, config=config, device="cpu")
    assert seen == [18]  # the round's one fit on its 18 labels; the inner folds trained batched, without pseudo-labels
    assert pred.member_names[-1] == "knn-propagation"


def test_class_mass_normalisation_while_labels_are_few_and_the_cross_validation_keeps_the_rounds_choice():
    from labeling.model.learner import with_fixed_blend

    x, y, graph = _blobs()
    few = np.full(240, -1)
    few[[0, 1, 80, 81, 160, 161]] = y[[0, 1, 80, 81, 160, 161]]
    many = np.full(240, -1)
    picked = np.concatenate([np.flatnonzero(y == c)[:8] for c in range(3)])
    many[picked] = y[picked]
    config = LearnerConfig(ensemble=EnsembleConfig(seed=0), self_training=False)
    p_few = fit_predict(x, few, 3, graph=graph, config=config, device="cpu")
    p_many = fit_predict(x, many, 3, graph=graph, config=config, device="cpu")
    assert p_few.knn_class_mass and not p_many.knn_class_mass
    assert with_fixed_blend(config, p_few).class_mass is True
    assert with_fixed_blend(config, p_many).class_mass is False
    forced = fit_predict(x, many, 3, graph=graph, config=replace(config, class_mass=True, learn_blend=False), device="cpu")
    assert forced.knn_class_mass
