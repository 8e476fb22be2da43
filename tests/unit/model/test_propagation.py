"""Tests for labeling.model.propagation: kNN votes, label propagation, blending, LOO flags."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import make_moons
from sklearn.neighbors import NearestNeighbors

from labeling.search.neighbours import knn_graph
import labeling.model.propagation as propagation
from labeling.model.propagation import blend, knn_vote, label_propagation, loo_knn_disagreement, propagation_operator


def two_clusters(n_per: int, dim: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated Gaussian blobs (cosine-separable), and their classes."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, dim))
    centres[0, 0] = centres[1, 1] = 5.0
    y = np.repeat([0, 1], n_per)
    x = centres[y] + rng.standard_normal((2 * n_per, dim))
    return x.astype(np.float32), y


def euclidean_graph(x: np.ndarray, k: int, *, scale: float = 0.3):
    """kNN graph (self excluded) with Gaussian-kernel similarities in (0, 1]."""
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return np.exp(-((dist[:, 1:] / scale) ** 2)), idx[:, 1:]


@pytest.fixture
def clusters_graph():
    x, y = two_clusters(150, 16, seed=0)
    sims, idx = knn_graph(x, 10)
    return sims, idx, y


# --------------------------------------------------------------------------- #
# knn_vote
# --------------------------------------------------------------------------- #
def test_knn_vote_oracle_neighbours():
    # Row 0: neighbours 1 (class 2, sim .9) and 2 (class 0, sim .5); row 3: nothing labeled.
    sims = np.array([[0.9, 0.5], [0.9, 0.1], [0.5, 0.1], [0.3, 0.2]])
    idx = np.array([[1, 2], [0, 2], [0, 1], [0, -1]])
    labels = np.array([-1, 2, 0, -1])
    probs = knn_vote(sims, idx, labels, 3, temperature=0.1)
    w_hi, w_lo = np.exp(9.0), np.exp(5.0)
    np.testing.assert_allclose(probs[0], [w_lo, 0, w_hi] / (w_hi + w_lo), rtol=1e-5)
    np.testing.assert_allclose(probs[1], [1, 0, 0], atol=1e-6)  # own label unused
    np.testing.assert_allclose(probs[3], [1 / 3] * 3, rtol=1e-6)  # no labeled neighbour


def test_knn_vote_temperature_controls_sharpness():
    sims = np.array([[0.9, 0.5], [0.0, 0.0], [0.0, 0.0]])
    idx = np.array([[1, 2], [-1, -1], [-1, -1]])
    labels = np.array([-1, 0, 1])
    sharp = knn_vote(sims, idx, labels, 2, temperature=0.01)
    flat = knn_vote(sims, idx, labels, 2, temperature=100.0)
    assert sharp[0, 0] > 0.999
    assert 0.5 < flat[0, 0] < 0.51


def test_knn_vote_min_sim_and_self_edges_are_ignored():
    sims = np.array([[1.0, 0.2], [0.9, 0.0]])
    idx = np.array([[0, 1], [0, -1]])  # row 0 lists itself
    labels = np.array([0, 1])
    probs = knn_vote(sims, idx, labels, 2, min_sim=0.5)
    np.testing.assert_allclose(probs[0], [0.5, 0.5])  # self ignored, 0.2 < min_sim
    np.testing.assert_allclose(probs[1], [1.0, 0.0])


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 30),
    k=st.integers(1, 6),
    n_classes=st.integers(1, 5),
)
def test_knn_vote_rows_are_probabilities(data, n, k, n_classes):
    sims = data.draw(hnp.arrays(np.float32, (n, k), elements=st.floats(-1, 1, width=32)))
    idx = data.draw(hnp.arrays(np.int64, (n, k), elements=st.integers(-1, n - 1)))
    labels = data.draw(hnp.arrays(np.int64, n, elements=st.integers(-1, n_classes - 1)))
    temperature = data.draw(st.floats(0.001, 10.0))
    probs = knn_vote(sims, idx, labels, n_classes, temperature=temperature, min_sim=-1.0)
    assert probs.shape == (n, n_classes) and probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("labels", "n_classes", "message"),
    [
        (np.array([0, 3, -1]), 3, "labels must be in"),
        (np.array([0, -2, -1]), 3, "labels must be in"),
        (np.array([0, 1]), 3, "labels must have shape"),
        (np.array([0, 1, -1]), 0, "n_classes"),
    ],
)
def test_knn_vote_rejects_bad_labels(labels, n_classes, message):
    sims = np.ones((3, 2))
    idx = np.array([[1, 2], [0, 2], [0, 1]])
    with pytest.raises(ValueError, match=message):
        knn_vote(sims, idx, labels, n_classes)


def test_knn_vote_rejects_out_of_range_index():
    with pytest.raises(ValueError, match="graph_idx"):
        knn_vote(np.ones((2, 1)), np.array([[1], [2]]), np.array([0, 1]), 2)


# --------------------------------------------------------------------------- #
# label_propagation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("symmetric", [True, False])
def test_propagation_one_label_per_cluster_labels_everything(clusters_graph, symmetric):
    sims, idx, y = clusters_graph
    labels = np.full(len(y), -1)
    labels[[3, 200]] = y[[3, 200]]
    probs = label_propagation(sims, idx, labels, 2, symmetric=symmetric)
    np.testing.assert_array_equal(probs.argmax(axis=1), y)
    assert (probs.max(axis=1) > 0.5).all()  # no uniform rows left
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_propagation_beats_knn_vote_on_moons():
    x, y = make_moons(300, noise=0.05, random_state=0, shuffle=False)
    labels = np.full(300, -1)
    labels[[75, 225]] = y[[75, 225]]  # the middle of each moon
    unlabeled = labels < 0
    sims, idx = euclidean_graph(x, 10)
    propagated = label_propagation(sims, idx, labels, 2)
    # The vote sees every labeled point (a full graph), yet is fooled where
    # the tip of one moon is closer to the other moon's label.
    full_sims, full_idx = euclidean_graph(x, 299)
    voted = knn_vote(full_sims, full_idx, labels, 2)
    acc_prop = (propagated.argmax(axis=1) == y)[unlabeled].mean()
    acc_vote = (voted.argmax(axis=1) == y)[unlabeled].mean()
    assert acc_prop >= 0.98
    assert acc_vote <= acc_prop - 0.1


def test_propagation_unreachable_rows_are_uniform_and_labels_clamped():
    # Two components: {0, 1, 2} with a label, {3, 4} without.
    sims = np.full((5, 2), 0.9)
    idx = np.array([[1, 2], [0, 2], [0, 1], [4, -1], [3, -1]])
    labels = np.array([1, -1, -1, -1, -1])
    probs = label_propagation(sims, idx, labels, 3)
    np.testing.assert_allclose(probs[0], [0, 1, 0])
    assert (probs[1:3].argmax(axis=1) == 1).all() and (probs[1:3, 1] > 0.99).all()
    np.testing.assert_allclose(probs[3:], 1 / 3, rtol=1e-6)


def test_propagation_reach_is_bounded_by_n_iter():
    # A chain 0 - 1 - 2 - 3 - 4 - 5, labeled at 0.
    idx = np.array([[1, -1], [0, 2], [1, 3], [2, 4], [3, 5], [4, -1]])
    sims = np.full(idx.shape, 0.8)
    labels = np.array([0, -1, -1, -1, -1, -1])
    short = label_propagation(sims, idx, labels, 2, n_iter=3)
    assert (short[1:4, 0] == 1).all()
    np.testing.assert_allclose(short[4:], 0.5)
    assert (label_propagation(sims, idx, labels, 2, n_iter=10)[:, 0] == 1).all()


def test_propagation_keeps_human_labels_against_neighbours():
    # Labeled rows 0 (class 0) and 1 (class 1) only see each other and row 2.
    sims = np.array([[0.9, 0.2], [0.9, 0.2], [0.2, 0.2]])
    idx = np.array([[1, 2], [0, 2], [0, 1]])
    labels = np.array([0, 1, -1])
    probs = label_propagation(sims, idx, labels, 2)
    np.testing.assert_array_equal(probs[:2], [[1, 0], [0, 1]])
    np.testing.assert_allclose(probs[2], [0.5, 0.5], atol=1e-6)


def _reference_propagation(sims, idx, labels, n_classes, *, alpha=0.99, n_iter=20, power=3.0, class_mass=True):
    """Zhou et al.'s iteration written out densely (float64), symmetric normalisation, then (Zhu et al.'s)
    class mass normalisation."""
    n = len(labels)
    w = np.zeros((n, n))
    for i in range(n):
        for s, j in zip(sims[i], idx[i]):
            if j >= 0 and j != i and s > 0:
                w[i, j] = s ** power
    w = np.maximum(w, w.T)
    d = w.sum(axis=1)
    inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
    step = inv[:, None] * w * inv[None, :]
    y = np.zeros((n, n_classes))
    y[labels >= 0, labels[labels >= 0]] = 1
    f = y.copy()
    for _ in range(n_iter):
        f = alpha * step @ f + (1 - alpha) * y
        f[labels >= 0] = y[labels >= 0]
    if class_mass:
        mass = f.sum(axis=0, keepdims=True)
        f = f * (mass.mean() / np.maximum(mass, 1e-30))
    total = f.sum(axis=1, keepdims=True)
    return np.where(total > 0, f / np.where(total > 0, total, 1), 1 / n_classes)


@pytest.mark.parametrize("reorder", [False, True])
def test_propagation_matches_the_dense_iteration_with_and_without_renumbering(monkeypatch, reorder):
    # Rows in shuffled order, some missing neighbours: renumbering for locality (used on large
    # graphs) must not change any probability.
    x, y = two_clusters(120, 8, seed=3)
    perm = np.random.default_rng(0).permutation(len(y))
    x, y = x[perm], y[perm]
    sims, idx = knn_graph(x, 6)
    idx = idx.copy()
    idx[::7, -1] = -1
    labels = np.full(len(y), -1)
    labels[[0, 5, 9, 40]] = y[[0, 5, 9, 40]]
    monkeypatch.setattr(propagation, "REORDER_ABOVE", 1 if reorder else 10**9)
    assert (propagation_operator(sims, idx).order is not None) == reorder
    got = label_propagation(sims, idx, labels, 2, class_mass=True)
    np.testing.assert_allclose(got, _reference_propagation(sims, idx, labels, 2), atol=1e-5)
    plain = label_propagation(sims, idx, labels, 2, class_mass=False)
    np.testing.assert_allclose(plain, _reference_propagation(sims, idx, labels, 2, class_mass=False), atol=1e-5)


def test_graph_operator_is_built_once_per_graph_and_kept_on_it(clusters_graph):
    from labeling.model.propagation import graph_operator
    from labeling.search.graph import KnnGraph

    sims, idx, y = clusters_graph
    assert propagation_operator(sims, idx) is not propagation_operator(sims, idx)  # no hidden cache
    graph = KnnGraph(sims.copy(), idx.copy())
    op = graph_operator(graph)
    assert graph_operator(graph) is op
    assert graph_operator(graph, symmetric=False) is not op
    assert graph_operator(KnnGraph(sims.copy(), idx.copy())) is not op  # another graph: its own operator
    assert not hasattr(propagation, "_operators")  # nothing kept at module level
    labels = np.full(len(y), -1)
    labels[[3, 200]] = y[[3, 200]]
    first = label_propagation(graph.sims, graph.idx, labels, 2, operator=op)
    np.testing.assert_allclose(first, label_propagation(sims, idx, labels, 2), atol=1e-6)
    labels[[10, 160]] = 1 - y[[10, 160]]  # new labels, same graph: the result follows the labels
    second = label_propagation(graph.sims, graph.idx, labels, 2, operator=op)
    np.testing.assert_array_equal(second[[10, 160]].argmax(axis=1), 1 - y[[10, 160]])
    assert not np.allclose(first, second)


def test_an_operator_of_another_graph_is_refused(clusters_graph):
    sims, idx, y = clusters_graph
    op = propagation_operator(np.ones((3, 1)), np.array([[1], [2], [0]]))
    with pytest.raises(ValueError, match="operator has 3 rows"):
        label_propagation(sims, idx, np.full(len(y), -1), 2, operator=op)


@pytest.mark.parametrize(
    ("kwargs", "message"), [(dict(alpha=1.0), "alpha"), (dict(n_iter=0), "n_iter")]
)
def test_propagation_rejects_bad_options(clusters_graph, kwargs, message):
    sims, idx, y = clusters_graph
    with pytest.raises(ValueError, match=message):
        label_propagation(sims, idx, np.full(len(y), -1), 2, **kwargs)


# --------------------------------------------------------------------------- #
# blend
# --------------------------------------------------------------------------- #
def test_blend_interpolates():
    head = np.array([[0.8, 0.2], [0.1, 0.9]], dtype=np.float32)
    knn = np.array([[0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(blend(head, knn, lam=0.0), head)
    np.testing.assert_allclose(blend(head, knn, lam=1.0), knn)
    mixed = blend(head, knn, lam=0.25)
    np.testing.assert_allclose(mixed, [[0.6, 0.4], [0.2, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)


def test_blend_broadcasts_over_ensemble_members():
    head = np.stack([np.eye(2), np.eye(2)[::-1]]).astype(np.float32)  # (K=2, N=2, C=2)
    knn = np.full((2, 2), 0.5, dtype=np.float32)
    out = blend(head, knn, lam=0.5)
    assert out.shape == (2, 2, 2)
    np.testing.assert_allclose(out[0], [[0.75, 0.25], [0.25, 0.75]])


@pytest.mark.parametrize(
    ("head_shape", "knn_shape", "lam"),
    [((2, 3), (2, 3), 1.5), ((2, 3), (2, 3), -0.1), ((2, 3), (3, 3), 0.5), ((2, 3), (2, 2), 0.5)],
)
def test_blend_rejects_bad_input(head_shape, knn_shape, lam):
    with pytest.raises(ValueError):
        blend(np.ones(head_shape), np.ones(knn_shape), lam=lam)


# --------------------------------------------------------------------------- #
# loo_knn_disagreement
# --------------------------------------------------------------------------- #
def test_loo_disagreement_flags_planted_wrong_label(clusters_graph):
    sims, idx, y = clusters_graph
    labels = np.full(len(y), -1)
    labelled = np.random.default_rng(1).choice(len(y), size=60, replace=False)
    labels[labelled] = y[labelled]
    planted = labelled[np.flatnonzero(y[labelled] == 0)[0]]
    labels[planted] = 1  # a class-1 label inside the class-0 cluster
    scores = loo_knn_disagreement(sims, idx, labels, 2)
    assert np.isnan(scores[labels < 0]).all()
    assert np.nanargmax(scores) == planted
    assert scores[planted] > 0.9


def test_loo_disagreement_is_nan_without_evidence():
    sims = np.array([[0.9], [0.9], [0.9]])
    idx = np.array([[1], [0], [-1]])
    scores = loo_knn_disagreement(sims, idx, np.array([0, 1, 1]), 2)
    np.testing.assert_allclose(scores[:2], [1.0, 1.0])
    assert np.isnan(scores[2])


def test_class_mass_normalisation_keeps_a_flooding_class_to_its_share():
    """One dense class of 200 points and a sparse one of 40 beside it, one label each: without class
    mass normalisation the dense class's larger mass spills over the sparse class's region."""
    from labeling.model.ensemble import FeatureScaler
    from labeling.search.neighbours import knn_graph

    rng = np.random.default_rng(1)
    raw = np.vstack([rng.normal(0.0, 0.3, size=(200, 2)), rng.normal(0.0, 1.0, size=(40, 2)) + [4.0, 0.0]])
    x = FeatureScaler.fit(raw.astype(np.float32)).transform(raw.astype(np.float32))
    graph = knn_graph(x, 8)
    labels = np.full(240, -1)
    labels[[0, 200]] = [0, 1]
    plain = label_propagation(graph[0], graph[1], labels, 2, class_mass=False)
    mass = label_propagation(graph[0], graph[1], labels, 2, class_mass=True)
    assert np.allclose(mass.sum(axis=1), 1.0) and mass[0, 0] == 1.0 and mass[200, 1] == 1.0
    truth = np.r_[np.zeros(200), np.ones(40)]
    assert (mass.argmax(axis=1) == truth).mean() >= (plain.argmax(axis=1) == truth).mean()
    assert mass[200:, 1].mean() > plain[200:, 1].mean()  # the sparse class keeps more of its own region
