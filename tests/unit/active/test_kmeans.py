"""The Gram-seeded k-means gives scikit-learn's labels, restarts and all."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from labeling.active import kmeans
from labeling.active.kmeans import _same_clustering, kmeans_labels


def _blobs(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, d)) * 3
    x = means[rng.integers(centres, size=n)] + rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)  # unit rows, as the cold start clusters


@pytest.mark.parametrize(("n", "d", "k", "seed", "n_init"), [
    (600, 32, 40, 1, 3), (900, 64, 96, 7, 3), (500, 16, 8, 123, 1), (300, 48, 300 // 4, 99, 2),
])
def test_labels_equal_scikit_learns(n, d, k, seed, n_init):
    x = _blobs(n, d, max(3, k // 3), seed)
    expected = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    np.testing.assert_array_equal(kmeans_labels(x, k, seed, n_init), expected)


def test_above_the_gram_limit_it_is_scikit_learns_own(monkeypatch):
    x = _blobs(400, 8, 5, 3)
    monkeypatch.setattr(kmeans, "GRAM_MAX_ROWS", 100)
    np.testing.assert_array_equal(kmeans_labels(x, 12, 5, 2),
                                  KMeans(n_clusters=12, n_init=2, random_state=5).fit_predict(x))


def test_same_clustering_is_a_consistent_mapping():
    a = np.array([0, 0, 1, 2, 2])
    assert _same_clustering(a, np.array([3, 3, 0, 1, 1]))  # renumbered
    assert _same_clustering(a, np.array([1, 1, 1, 0, 0]))  # merged: still one target per cluster
    assert not _same_clustering(a, np.array([0, 1, 1, 2, 2]))  # cluster 0 split
