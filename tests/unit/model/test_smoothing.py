"""The heads' input averaged over the kNN graph (labeling.model.smoothing)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from labeling.model import smoothing
from labeling.model.ensemble import EnsembleConfig
from labeling.model.learner import LearnerConfig, fit_predict
from labeling.model.smoothing import SmoothedFeatures, smoothed


def _reference(x, sims, idx, share, k):
    out = np.empty_like(x)
    for i in range(len(x)):
        w = np.array([max(s, 0.0) if j >= 0 else 0.0 for s, j in zip(sims[i, :k], idx[i, :k])])
        if w.sum() == 0:
            out[i] = x[i]
            continue
        nb = sum(wj * x[j] for wj, j in zip(w, idx[i, :k]) if j >= 0) / w.sum()
        out[i] = (1 - share) * x[i] + share * nb
    return out


def test_rows_are_their_neighbourhoods_mean(monkeypatch):
    monkeypatch.setattr(smoothing, "CHUNK_ROWS", 7)  # several blocks per call
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    idx = rng.integers(0, 30, size=(30, 6))
    sims = rng.uniform(-0.2, 1.0, size=(30, 6)).astype(np.float32)
    idx[3, 2:] = -1  # a row with fewer neighbours than the graph's width
    sims[5, :] = -0.5  # a row with no positive neighbour keeps its own features
    want = _reference(x, sims, idx, 0.4, 4)
    feats = SmoothedFeatures(x, (sims, idx), share=0.4, neighbours=4)
    assert feats.shape == x.shape and len(feats) == 30
    np.testing.assert_allclose(feats[np.arange(30)], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[[5, 3, 29]], want[[5, 3, 29]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[10:25], want[10:25], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(feats[[5]], x[[5]])


def test_smoothing_is_skipped_without_a_graph_or_share_and_never_applied_twice():
    x = np.ones((4, 2), np.float32)
    graph = (np.ones((4, 2), np.float32), np.array([[1, 2], [0, 2], [0, 1], [0, 1]]))
    assert smoothed(x, None, share=0.5, neighbours=2) is x
    assert smoothed(x, graph, share=0.0, neighbours=2) is x
    once = smoothed(x, graph, share=0.5, neighbours=2)
    assert isinstance(once, SmoothedFeatures) and smoothed(once, graph, share=0.5, neighbours=2) is once
    with pytest.raises(ValueError, match="graph has 4 rows"):
        SmoothedFeatures(x[:3], graph, share=0.5, neighbours=2)


def test_heads_learn_from_neighbourhoods_where_single_vectors_are_noisy():
    # Each item's vector is its class centre under heavy noise; the graph links items of one class
    # (as a backbone's neighbours mostly do). Averaging over the neighbours cancels much of the noise.
    rng = np.random.default_rng(1)
    n, d, c, k = 300, 16, 3, 10
    y = np.arange(n) % c
    x = (rng.normal(size=(c, d))[y] * 0.6 + rng.normal(size=(n, d))).astype(np.float32)
    idx = np.stack([rng.choice(np.flatnonzero((y == y[i]) & (np.arange(n) != i)), k, replace=False)
                    for i in range(n)])
    graph = (np.full((n, k), 0.9, np.float32), idx)
    labels = np.full(n, -1)
    labels[:30] = y[:30]
    base = LearnerConfig(ensemble=EnsembleConfig(seed=0), knn_member=False, self_training=False, learn_blend=False)
    test = np.arange(30, n)

    def heads_accuracy(share):
        pred = fit_predict(x, labels, c, graph=graph, config=replace(base, feature_smoothing=share))
        return float((pred.mean[test].argmax(axis=1) == y[test]).mean())

    plain, smooth = heads_accuracy(0.0), heads_accuracy(0.5)
    assert smooth >= plain + 0.1, (plain, smooth)
