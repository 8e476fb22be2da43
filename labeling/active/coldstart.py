"""Cold start: which items to label first, before any model exists.

:func:`typicality` scores each item by the density of its neighbourhood (inverse mean cosine
distance to its k nearest neighbours); :func:`typical_cold_start` clusters the pool and picks the
most typical item of each cluster no label covers yet (TypiClust). The k-means used here also
spreads batches in :func:`labeling.active.selection.diverse_top`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from sklearn.cluster import MiniBatchKMeans
from threadpoolctl import threadpool_limits

from labeling.active.acquisition import EmptyPoolError, FloatArray, IndexArray
from labeling.active.kernels import check_count as _check_count
from labeling.active.kernels import check_mask as _check_mask
from labeling.active.kernels import check_rng as _check_rng
from labeling.active.kernels import check_vectors as _check_vectors
from labeling.active.kmeans import kmeans_labels
from labeling.search.index import NeighbourIndex
from labeling.search.neighbours import knn_graph, normalize

__all__ = [
    "DEFAULT_K",
    "typical_cold_start",
    "typicality",
]

DEFAULT_K = 20
"""Neighbours used for typicality, as in TypiClust (Hacohen et al., 2022)."""

MAX_COLD_START_CLUSTERS = 500
"""Upper bound on clusters for the cold start (TypiClust caps it too).

Past a few hundred labels the cold start has done its job; more clusters
only make k-means slower.
"""

COLD_START_N_INIT = 3
"""k-means restarts for the cold start.

A single k-means++ run now and then puts two centres in one of a few
well-separated groups and leaves another group without a pick; the cold
start runs once per batch, so three restarts are cheap insurance.
"""

MINIBATCH_KMEANS_ABOVE = 10_000
"""Rows above which k-means switches to ``MiniBatchKMeans`` to stay fast."""

ClusterMemo = Callable[[str, Callable[[], np.ndarray]], np.ndarray]
"""``memo(key, compute)``: the stored cluster labels of ``key``, or ``compute()``'s, stored. A round
passes one that keeps them beside the project's vectors (``labeling.model.rounds``) and asks for a batch
that makes ``n_labeled + n`` a :func:`cluster_count`, so the rounds of the cold start, a label apart,
cluster once per step instead of once per round."""


def cluster_count(wanted: int) -> int:
    """``wanted`` rounded up to a step of at most an eighth of it (exact below 16: 206 -> 208, 100 ->
    104, 20 -> 20): the cluster count a round asks for, so that rounds a few labels apart ask for the
    same clustering and can share it."""
    if wanted < 16:
        return int(wanted)
    step = 1 << (int(wanted).bit_length() - 4)  # 16..31 -> 2, 32..63 -> 4, 128..255 -> 16, ...
    return -(-int(wanted) // step) * step


_DISTANCE_EPS = 1e-6
"""Keeps typicality finite when an item's neighbours are exact duplicates."""


def _kmeans_labels(
    x: np.ndarray, n_clusters: int, rng: np.random.Generator, *, n_init: int = 1,
    memo: ClusterMemo | None = None,
) -> np.ndarray:
    """k-means cluster [N] of each row, seeded from ``rng``; ``MiniBatchKMeans`` on large inputs. With
    ``memo``, the labels of the same rows, cluster count, seed and restarts are computed once."""
    seed = int(rng.integers(np.iinfo(np.int32).max))
    if memo is not None:
        return memo(f"{x.shape[0]}-{n_clusters}-{seed}-{n_init}",
                    lambda: _kmeans_labels_seeded(x, n_clusters, seed, n_init))
    return _kmeans_labels_seeded(x, n_clusters, seed, n_init)


def _kmeans_labels_seeded(x: np.ndarray, n_clusters: int, seed: int, n_init: int) -> np.ndarray:
    if x.shape[0] <= MINIBATCH_KMEANS_ABOVE:
        # k-means++ on a few thousand rows is hundreds of tiny BLAS products; threaded, each one
        # waits on the other threads, and on a busy machine (the app's server beside the round)
        # that wait dominates: 2,000 x 512 into 200 clusters took 9.8 s with 2 BLAS threads while
        # another process ran, 0.3 s with one, and 0.3 to 0.4 s either way on an idle machine.
        # float64: scikit-learn's k-means++ seeding computes float32 distances through an upcasting
        # path, chunk by chunk; handed float64 it runs one product per step, twice as fast. The seeding
        # reads a Gram matrix here (labeling.active.kmeans): the same labels, a third of the time.
        with threadpool_limits(1, user_api="blas"):
            return kmeans_labels(np.asarray(x, dtype=np.float64), n_clusters, seed, n_init)  # [N]
    model = MiniBatchKMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed, batch_size=4096)
    return model.fit_predict(x)  # [N]


def _knn_similarities(vectors: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarities [N, k] to each row's k nearest other rows, by exact search on the CPU."""
    n_items = vectors.shape[0]
    index = NeighbourIndex.build(vectors, np.arange(n_items, dtype=np.int64), kind="flat", device="cpu")
    return knn_graph(vectors, k, index=index, batch_size=max(n_items, 1))[0]  # [N, k] float32, one search


def typicality(
    vectors: npt.ArrayLike,
    *,
    k: int = DEFAULT_K,
    knn_sims: npt.ArrayLike | None = None,
) -> FloatArray:
    """Density of each item: inverse mean cosine distance to its k neighbours.

    Parameters
    ----------
    vectors : array_like, shape (N, D)
        Embeddings.
    k : int
        Neighbours to average over (at most ``N - 1`` are used).
    knn_sims : array_like, shape (N, k'), optional
        Precomputed cosine similarities to each item's nearest *other* items,
        nearest first, ``-inf`` where a neighbour is missing (the format of
        ``labeling.search.neighbours.knn_graph``); the first ``k`` columns are used.
        Without it, an exact flat search (`labeling.search.neighbours.knn_graph`
        over a ``kind="flat"`` index) runs, which costs ``O(N^2 D)``.

    Returns
    -------
    typicality : ndarray, shape (N,)
        ``1 / (mean cosine distance + 1e-6)``, positive; higher = denser
        neighbourhood = more typical. 1 for an item without neighbours
        (e.g. every item when ``N < 2``).

    Raises
    ------
    ValueError
        If ``vectors`` or ``knn_sims`` has the wrong shape, ``knn_sims``
        holds NaN or ``+inf``, or ``k < 1``.
    """
    vectors = _check_vectors(vectors)
    k = _check_count(k, "k", minimum=1)
    n_items = vectors.shape[0]
    if knn_sims is None:
        if n_items < 2:
            return np.ones(n_items)
        sims = _knn_similarities(vectors, min(k, n_items - 1))  # [N, k]
    else:
        sims = np.asarray(knn_sims, dtype=np.float64)
        if sims.ndim != 2 or sims.shape[0] != n_items or sims.shape[1] == 0:
            raise ValueError(f"knn_sims must have shape ({n_items}, k>=1); got {sims.shape}")
        if np.isnan(sims).any() or np.isposinf(sims).any():
            raise ValueError("knn_sims contains NaN or +inf; mark missing neighbours with -inf")
        sims = sims[:, :k]
    present = np.isfinite(sims)  # [N, k]
    distance = np.clip(1.0 - np.where(present, sims, 1.0), 0.0, 2.0)  # [N, k], 0 where missing
    n_present = present.sum(axis=1)  # [N]
    mean_distance = distance.sum(axis=1) / np.maximum(n_present, 1)  # [N]
    return np.where(n_present > 0, 1.0 / (mean_distance + _DISTANCE_EPS), 1.0)


def typical_cold_start(
    vectors: npt.ArrayLike,
    n: int,
    *,
    labeled_mask: npt.ArrayLike,
    rng: np.random.Generator,
    k: int = DEFAULT_K,
    knn_sims: npt.ArrayLike | None = None,
    exclude: npt.ArrayLike | None = None,
    memo: ClusterMemo | None = None,
) -> IndexArray:
    """TypiClust cold start: the most typical item of each uncovered cluster.

    Clusters the items (k-means on unit vectors) into
    ``min(n_labeled + n, 500, n_distinct)`` clusters (``memo``: computed once per clustering, see
    :data:`ClusterMemo`). Each pick goes to the
    cluster with the fewest labeled-or-picked items, the largest first among
    equals (ties at random), and takes its most :func:`typicality` eligible
    item. Typicality is measured over the whole pool.

    Parameters
    ----------
    vectors : array_like, shape (N, D)
        Embeddings.
    n : int
        How many items to pick.
    labeled_mask : array_like of bool, shape (N,)
        True for items that already have a human label: they cover their
        cluster and are never picked.
    rng : numpy.random.Generator
        The k-means seed and tie-breaks.
    k : int
        Neighbours for typicality.
    knn_sims : array_like, shape (N, k'), optional
        Precomputed neighbour similarities (see :func:`typicality`).
    exclude : array_like of bool, shape (N,), optional
        True for items that may not be picked but do not cover their
        cluster (e.g. skipped as unsure).

    Returns
    -------
    indices : ndarray of int64, shape (min(n, n_eligible),)
        In pick order: largest uncovered clusters first.

    Raises
    ------
    EmptyPoolError
        If ``n > 0`` and no item is eligible.
    ValueError
        If inputs have the wrong shape or non-finite values.

    References
    ----------
    Hacohen, Dekel and Weinshall, "Active Learning on a Budget: Opposite
    Strategies Suit High and Low Budgets", ICML 2022.
    """
    rng = _check_rng(rng)
    vectors = _check_vectors(vectors)
    n = _check_count(n, "n")
    n_items = vectors.shape[0]
    labeled = _check_mask(labeled_mask, n_items, "labeled_mask")
    blocked = labeled | _check_mask(exclude, n_items, "exclude")  # [N]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    n_eligible = int(np.count_nonzero(~blocked))
    if n_eligible == 0:
        raise EmptyPoolError(f"asked for {n} items but none of {n_items} is eligible")

    unit = normalize(vectors)  # [N, D] float32, unit rows
    n_distinct = np.unique(unit, axis=0).shape[0]
    n_clusters = min(int(labeled.sum()) + n, MAX_COLD_START_CLUSTERS, n_distinct)
    clusters = _kmeans_labels(unit, n_clusters, rng, n_init=COLD_START_N_INIT, memo=memo)  # [N]
    typ = typicality(vectors, k=k, knn_sims=knn_sims)  # [N]

    sizes = np.bincount(clusters, minlength=n_clusters)  # [n_clusters]
    covered = np.bincount(clusters[labeled], minlength=n_clusters)  # [n_clusters]
    # Eligible items grouped by cluster, most typical first within a cluster.
    order = np.lexsort((rng.random(n_items), -typ, clusters))  # [N]
    order = order[~blocked[order]]  # [n_eligible]
    starts = np.searchsorted(clusters[order], np.arange(n_clusters))  # [n_clusters]
    n_open = np.bincount(clusters[order], minlength=n_clusters)  # [n_clusters] eligible
    remaining = n_open.copy()  # [n_clusters] eligible and not yet picked
    cluster_tie = rng.random(n_clusters)  # [n_clusters]

    picks = np.empty(min(n, n_eligible), dtype=np.int64)
    for i in range(picks.size):
        open_clusters = np.flatnonzero(remaining > 0)
        best = np.lexsort(
            (cluster_tie[open_clusters], -sizes[open_clusters], covered[open_clusters])
        )[0]
        c = open_clusters[best]
        picks[i] = order[starts[c] + n_open[c] - remaining[c]]
        covered[c] += 1
        remaining[c] -= 1
    return picks


HINT_MIN_CONFIDENCE = 0.5
"""The backbone's ImageNet guess shows on a card only at this probability or above."""
HINT_MAX_SHARE = 0.25
"""...and only while no single ImageNet class takes more than this share of the project's confident
guesses. Past it the backbone sees the data as something else (the demo's grey silhouettes are mostly
"digital clock" or "corkscrew" at 99 %), and its guesses would only mislead."""


def hints_are_meaningful(suggestions, confidence) -> bool:
    """Whether a round's ImageNet guesses are worth showing at all (:data:`HINT_MAX_SHARE`)."""
    if suggestions is None or len(suggestions) == 0:
        return False
    confident = np.asarray(suggestions)[np.asarray(confidence) >= HINT_MIN_CONFIDENCE]
    if len(confident) == 0:
        return False
    _names, counts = np.unique(confident, return_counts=True)
    return counts.max() / len(confident) <= HINT_MAX_SHARE


def by_suggestion(mean: np.ndarray, covered: np.ndarray, n: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """The cold start when suggestions exist before labels (zero-shot or an imported model): the most
    confidently suggested item of each class in turn, so every class is shown (and confirmed with one key)
    within the first screens. ``mean`` (N, C), ``covered`` (N,) bool: rows some member predicted."""
    mean = np.asarray(mean)
    ok = np.asarray(covered, bool) & (True if exclude is None else ~np.asarray(exclude, bool))
    best, conf = mean.argmax(axis=1), mean.max(axis=1)
    queues = []
    for c in range(mean.shape[1]):
        rows = np.flatnonzero(ok & (best == c))
        queues.append(rows[np.argsort(-conf[rows], kind="stable")].tolist())
    order: list[int] = []
    depth = 0
    while len(order) < n and any(depth < len(q) for q in queues):
        order.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return np.asarray(order[:n], dtype=np.int64)
