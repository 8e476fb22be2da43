"""k-means for the cold start and diverse batches: scikit-learn's result, seeded from a Gram matrix.

scikit-learn's k-means++ seeding measures each step's candidates against every row: on the 3,000-image
demo (2,973 x 1,280, 208 clusters) that is 208 passes over 30 MB of float64 rows, 0.8 s per restart
and 2.4 s of the 3.1 s a three-restart k-means took on one BLAS thread. Here the seeding reads the
candidates' rows of the centred rows' Gram matrix instead, computed once for all restarts (one product,
0.2 s; each seeding then 0.01 s), and each restart's Lloyd iterations run in scikit-learn's own
``KMeans`` from those centres. The random draws, the distances (``|a|^2 + |b|^2 - 2 a.b``, clipped at 0),
the choice among restarts and the Lloyd iterations are scikit-learn's, so the labels are the ones
``KMeans(n_clusters, n_init=n_init, random_state=seed).fit_predict(x)`` gives (a test holds them equal);
the cold start's picks and ``simulate``'s figures do not move. Same example: 3.1 -> 1.1 s.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

__all__ = ["GRAM_MAX_ROWS", "kmeans_labels"]

GRAM_MAX_ROWS = 6_000
"""Rows up to which the seeding uses the Gram matrix (float64 N x N: 288 MB at 6,000); above,
scikit-learn's own seeding runs."""


def kmeans_labels(x: np.ndarray, n_clusters: int, seed: int, n_init: int) -> np.ndarray:
    """Cluster [N] of each row of ``x`` (float64, [N, D]): ``KMeans(n_clusters, n_init=n_init,
    random_state=seed).fit_predict(x)``, computed faster up to :data:`GRAM_MAX_ROWS` rows."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = x.shape[0]
    if n > GRAM_MAX_ROWS or n_clusters < 1 or n_clusters > n:
        return KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit_predict(x)
    random_state = np.random.RandomState(seed)  # what scikit-learn's check_random_state(seed) makes
    centred = x - x.mean(axis=0)  # KMeans.fit centres dense rows the same way
    sq_norms = np.einsum("ij,ij->i", centred, centred)  # [N] as sklearn.utils.extmath.row_norms
    gram = centred @ centred.T  # [N, N]
    best_inertia, best_labels = None, None
    for _ in range(n_init):
        seeds = _plusplus_rows(gram, sq_norms, n_clusters, random_state)  # [n_clusters]
        fit = KMeans(n_clusters=n_clusters, init=x[seeds], n_init=1).fit(x)
        # scikit-learn keeps a later restart only if its inertia is lower and its clustering differs
        # (a rounding-level gain on the same clustering would only renumber the clusters).
        if best_inertia is None or (fit.inertia_ < best_inertia and not _same_clustering(fit.labels_, best_labels)):
            best_inertia, best_labels = fit.inertia_, fit.labels_
    return best_labels


def _plusplus_rows(gram: np.ndarray, sq_norms: np.ndarray, n_clusters: int,
                   random_state: np.random.RandomState) -> np.ndarray:
    """Greedy k-means++ (scikit-learn's ``_kmeans_plusplus`` with unit sample weights and its default
    ``2 + ln k`` local trials): the rows chosen as initial centres, in order."""
    n = gram.shape[0]
    trials = 2 + int(np.log(n_clusters))
    weights = np.ones(n)
    first = random_state.choice(n, p=weights / weights.sum())
    chosen = np.full(n_clusters, -1, dtype=np.int64)
    chosen[0] = first
    closest = _sq_distances(gram, sq_norms, np.array([first]))[0]  # [N] to the nearest chosen centre
    potential = closest @ weights
    for c in range(1, n_clusters):
        draws = random_state.uniform(size=trials) * potential
        candidates = np.searchsorted(np.cumsum(weights * closest), draws)  # [trials]
        np.clip(candidates, None, n - 1, out=candidates)
        to_candidates = _sq_distances(gram, sq_norms, candidates)  # [trials, N]
        np.minimum(closest, to_candidates, out=to_candidates)
        potentials = to_candidates @ weights.reshape(-1, 1)  # [trials, 1]
        best = int(np.argmin(potentials))
        potential = potentials[best]
        closest = to_candidates[best]
        chosen[c] = candidates[best]
    return chosen


def _sq_distances(gram: np.ndarray, sq_norms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Squared distances [len(rows), N] from ``rows`` to every row, in scikit-learn's order of operations."""
    distances = -2 * gram[rows]
    distances += sq_norms[rows][:, None]
    distances += sq_norms[None, :]
    np.maximum(distances, 0, out=distances)
    return distances


def _same_clustering(a: np.ndarray, b: np.ndarray) -> bool:
    """True when every cluster of ``a`` maps into a single cluster of ``b`` (scikit-learn's test)."""
    pairs = np.unique(np.stack([a, b]), axis=1)  # [2, distinct (a, b) pairs]
    return pairs.shape[1] == np.unique(a).size
