"""Selection: turning acquisition scores into a batch of items to ask about.

:func:`select_top` takes the top n with a random tie-break; :func:`diverse_top`
spreads the top candidates out in embedding space so a batch holds no
near-duplicates. Before any model exists, :func:`typical_cold_start` picks
typical items from uncovered clusters (TypiClust). :func:`default_policy`
moves from the cold start to disagreement as labels grow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata
from sklearn.cluster import KMeans, MiniBatchKMeans
from threadpoolctl import threadpool_limits

from labeling.active.acquisition import EmptyPoolError, FloatArray, IndexArray
from labeling.active.kernels import check_count as _check_count
from labeling.active.kernels import check_mask as _check_mask
from labeling.active.kernels import check_rng as _check_rng
from labeling.active.kernels import check_scores as _check_scores
from labeling.active.kernels import check_vectors as _check_vectors
from labeling.active import kernels as K

__all__ = [
    "COLD_START_PHASE",
    "DISAGREEMENT_PHASE",
    "default_policy",
    "diverse_top",
    "select_top",
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

_DISTANCE_EPS = 1e-6
"""Keeps typicality finite when an item's neighbours are exact duplicates."""

COLD_START_PHASE = "typicality"
DISAGREEMENT_PHASE = "disagreement"
Phase = Literal["typicality", "disagreement"]


def select_top(
    scores: npt.ArrayLike,
    n: int,
    *,
    rng: np.random.Generator,
    exclude: npt.ArrayLike | None = None,
) -> IndexArray:
    """Indices of the ``n`` highest scores, ties broken at random.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Higher = ask first.
    n : int
        How many items to return.
    rng : numpy.random.Generator
        Breaks ties between equal scores.
    exclude : array_like of bool, shape (N,), optional
        True for items that may not be returned (e.g. already labeled).

    Returns
    -------
    indices : ndarray of int64, shape (min(n, n_eligible),)
        Best first.

    Raises
    ------
    EmptyPoolError
        If ``n > 0`` and every item is excluded.
    ValueError
        If ``scores`` is not 1-D and finite, ``n < 0``, or ``exclude`` has
        the wrong shape or dtype.
    TypeError
        If ``rng`` is not a ``numpy.random.Generator``.
    """
    rng = _check_rng(rng)
    scores = _check_scores(scores)
    n = _check_count(n, "n")
    blocked = _check_mask(exclude, scores.size, "exclude")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    eligible = np.flatnonzero(~blocked)  # [M]
    if eligible.size == 0:
        raise EmptyPoolError(f"asked for {n} items but none of {scores.size} is eligible")
    tie_break = rng.random(eligible.size)  # [M]
    order = np.lexsort((tie_break, -scores[eligible]))  # last key sorts first
    return eligible[order[:n]].astype(np.int64)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Float32 rows scaled to unit L2 norm; zero rows stay zero."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)  # [N, D]
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # [N, 1]
    norms[norms == 0] = 1.0
    return x / norms  # [N, D] float32


def _kmeans_labels(
    x: np.ndarray, n_clusters: int, rng: np.random.Generator, *, n_init: int = 1
) -> np.ndarray:
    seed = int(rng.integers(np.iinfo(np.int32).max))
    if x.shape[0] <= MINIBATCH_KMEANS_ABOVE:
        # k-means++ on a few thousand rows is hundreds of tiny BLAS products; threaded, each one
        # waits on the other threads, and on a busy machine (the app's server beside the round)
        # that wait dominates: 2,000 x 512 into 200 clusters took 9.8 s with 2 BLAS threads while
        # another process ran, 0.3 s with one, and 0.3 to 0.4 s either way on an idle machine.
        with threadpool_limits(1, user_api="blas"):
            return KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit_predict(x)  # [N]
    model = MiniBatchKMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed, batch_size=4096)
    return model.fit_predict(x)  # [N]


def _k_center(unit: np.ndarray, weights: np.ndarray, n: int, start: np.ndarray) -> np.ndarray:
    """Greedy k-center on cosine distance, each gain scaled by ``weights``.

    ``unit`` [M, D] unit rows; ``weights`` [M] in (0, 1]; ``start`` positions
    already chosen. Returns positions [min(n, M)], ``start`` first.
    """
    chosen = list(start) if len(start) else [int(np.argmax(weights))]
    min_dist = 1.0 - (unit @ unit[chosen].T).max(axis=1)  # [M]
    taken = np.zeros(unit.shape[0], dtype=bool)
    taken[chosen] = True
    while len(chosen) < min(n, unit.shape[0]):
        gain = np.where(taken, -np.inf, weights * np.maximum(min_dist, 0.0))  # [M]
        j = int(np.argmax(gain))
        chosen.append(j)
        taken[j] = True
        min_dist = np.minimum(min_dist, 1.0 - unit @ unit[j])
    return np.asarray(chosen, dtype=np.int64)


def _rank_weights(m: int) -> np.ndarray:
    return 1.0 - np.arange(m) / m  # [M]: 1 for the best candidate, 1/M for the worst


def _pick_by_clusters(unit: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Best candidate of each of ``n`` k-means clusters; ``unit`` is best first."""
    n_distinct = np.unique(unit, axis=0).shape[0]
    labels = _kmeans_labels(unit, min(n, n_distinct), rng)  # [M]
    _, first = np.unique(labels, return_index=True)  # first member = best scored
    picked = np.sort(first)
    if picked.size < n:
        # Fewer distinct vectors (or non-empty clusters) than n: fill by k-center.
        picked = _k_center(unit, _rank_weights(unit.shape[0]), n, picked)
    return picked


def _pick_by_coreset(unit: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Score-weighted greedy k-center; ``unit`` is best first."""
    return _k_center(unit, _rank_weights(unit.shape[0]), n, np.empty(0, dtype=np.int64))


_DIVERSITY_METHODS: Mapping[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = (
    MappingProxyType({"clusters": _pick_by_clusters, "coreset": _pick_by_coreset})
)


def diverse_top(
    scores: npt.ArrayLike,
    vectors: npt.ArrayLike,
    n: int,
    *,
    rng: np.random.Generator,
    exclude: npt.ArrayLike | None = None,
    candidate_factor: int = 10,
    method: Literal["clusters", "coreset"] = "clusters",
) -> IndexArray:
    """A high-scoring batch spread out in embedding space.

    Takes the ``n * candidate_factor`` best candidates (:func:`select_top`),
    then either

    - ``"clusters"``: k-means the candidates (cosine geometry) into ``n``
      clusters and takes the best-scored candidate of each; or
    - ``"coreset"``: greedy k-center on cosine distance, starting from the
      best candidate, each step maximising ``weight * distance to the
      batch``, where ``weight`` falls linearly with the candidate's rank
      from 1 (best) to ``1 / (n * candidate_factor)``.

    Exact duplicates never share a batch unless the candidates hold fewer
    than ``n`` distinct vectors.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Higher = ask first.
    vectors : array_like, shape (N, D)
        Embeddings, row-aligned with ``scores``.
    n : int
        Batch size.
    rng : numpy.random.Generator
        Tie-breaks and the k-means seed.
    exclude : array_like of bool, shape (N,), optional
        True for items that may not be returned.
    candidate_factor : int
        Candidates considered per batch slot; 1 makes this :func:`select_top`.
    method : {"clusters", "coreset"}
        How to spread the batch.

    Returns
    -------
    indices : ndarray of int64, shape (min(n, n_eligible),)
        Ordered by score, best first.

    Raises
    ------
    EmptyPoolError
        If ``n > 0`` and every item is excluded.
    ValueError
        If inputs disagree in length, are not finite, ``candidate_factor < 1``
        or ``method`` is unknown.
    """
    try:
        pick = _DIVERSITY_METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown diversity method {method!r}; valid methods: {', '.join(_DIVERSITY_METHODS)}"
        ) from None
    scores = _check_scores(scores)
    vectors = _check_vectors(vectors, n_rows=scores.size)
    n = _check_count(n, "n")
    candidate_factor = _check_count(candidate_factor, "candidate_factor", minimum=1)
    # [M] candidates, best first
    candidates = select_top(scores, n * candidate_factor, rng=rng, exclude=exclude)
    if candidates.size <= n:
        return candidates
    unit = _unit_rows(vectors[candidates])  # [M, D]
    positions = np.sort(pick(unit, n, rng))  # rank order = score order
    return candidates[positions]


# --------------------------------------------------------------------------
# Cold start
# --------------------------------------------------------------------------


def _knn_similarities(vectors: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarities [N, k] to each row's k nearest other rows."""
    x = _unit_rows(vectors)  # [N, D]
    n_items = x.shape[0]
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, ids = index.search(x, k + 1)  # [N, k+1], self usually first
    drop = ids == np.arange(n_items)[:, None]  # [N, k+1]
    # Ties with duplicates can push the item itself out of its own list.
    drop[~drop.any(axis=1), -1] = True
    return sims[~drop].reshape(n_items, k)


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
        Without it, an exact FAISS ``IndexFlatIP`` search runs, which costs
        ``O(N^2 D)``.

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
) -> IndexArray:
    """TypiClust cold start: the most typical item of each uncovered cluster.

    Clusters the items (k-means on unit vectors) into
    ``min(n_labeled + n, 500, n_distinct)`` clusters. Each pick goes to the
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

    unit = _unit_rows(vectors)  # [N, D]
    n_distinct = np.unique(unit, axis=0).shape[0]
    n_clusters = min(int(labeled.sum()) + n, MAX_COLD_START_CLUSTERS, n_distinct)
    clusters = _kmeans_labels(unit, n_clusters, rng, n_init=COLD_START_N_INIT)  # [N]
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


# --------------------------------------------------------------------------
# Default policy
# --------------------------------------------------------------------------


def _rank_average(*score_sets: np.ndarray) -> np.ndarray:
    """Mean of each score's normalised rank, in (0, 1]; higher = ask first."""
    ranks = [rankdata(s, method="average") / s.size for s in score_sets]
    return np.mean(ranks, axis=0)  # [N]


def default_policy(
    probs: npt.ArrayLike | None,
    vectors: npt.ArrayLike,
    n: int,
    *,
    labels: npt.ArrayLike,
    n_classes: int,
    rng: np.random.Generator,
    exclude: npt.ArrayLike | None = None,
    min_per_class: int = 3,
    knn_sims: npt.ArrayLike | None = None,
    scores: Mapping[str, npt.ArrayLike] | None = None,
    weights: npt.ArrayLike | None = None,
) -> tuple[IndexArray, Phase]:
    """The next batch to label, choosing between cold start and disagreement.

    While there is no model (``probs is None``) or any class has fewer than
    ``min_per_class`` human labels, picks typical items of uncovered
    clusters (:func:`typical_cold_start`). Afterwards ranks by the average
    rank of :func:`margin` and :func:`mutual_information` (BALD), so that
    both close calls and disagreeing heads come first, and spreads the batch
    with :func:`diverse_top` (``method="clusters"``).

    Parameters
    ----------
    probs : array_like, shape (K, N, C), or None
        The newest round's probabilities, or None before the first round.
    vectors : array_like, shape (N, D)
        Embeddings.
    n : int
        Batch size.
    labels : array_like of int, shape (N,)
        Current human label per item, ``-1`` where unlabeled. Labeled items
        are never returned.
    n_classes : int
        Number of classes defined in the project (may exceed C while a new
        class has no trained head yet).
    rng : numpy.random.Generator
        Source of randomness.
    exclude : array_like of bool, shape (N,), optional
        Further items that may not be returned.
    min_per_class : int
        Human labels every class needs before disagreement sampling starts.
    knn_sims : array_like, shape (N, k), optional
        Precomputed neighbour similarities for the cold start.
    scores : mapping with ``"margin"`` and ``"bald"``, each shape (N,), optional
        Those two scores of ``probs`` when already computed
        (:func:`labeling.active.acquisition.all_scores`, as a round does), so
        ``probs`` is not scored twice. Must equal ``margin(probs, weights=weights)`` and
        ``mutual_information(probs, weights=weights)``.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    indices : ndarray of int64, shape (min(n, n_eligible),)
        Items to ask about, first = most useful.
    phase : {"typicality", "disagreement"}
        Which policy chose them.

    Raises
    ------
    EmptyPoolError
        If ``n > 0`` and every item is labeled or excluded.
    ValueError
        If shapes disagree, ``labels`` holds values outside
        ``[-1, n_classes)``, or ``probs`` is invalid.
    """
    rng = _check_rng(rng)
    vectors = _check_vectors(vectors)
    n_items = vectors.shape[0]
    n_classes = _check_count(n_classes, "n_classes", minimum=1)
    min_per_class = _check_count(min_per_class, "min_per_class")
    labels = np.asarray(labels)
    if labels.shape != (n_items,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integers of shape ({n_items},); got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < -1 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [-1, {n_classes}); got [{labels.min()}, {labels.max()}]"
        )
    labeled = labels >= 0  # [N]
    blocked = labeled | _check_mask(exclude, n_items, "exclude")  # [N]
    per_class = np.bincount(labels[labeled], minlength=n_classes)  # [n_classes]

    if probs is None or per_class.min() < min_per_class:
        picks = typical_cold_start(
            vectors, n, labeled_mask=labeled, rng=rng, knn_sims=knn_sims, exclude=blocked & ~labeled
        )
        return picks, COLD_START_PHASE

    if scores is not None and "margin" in scores and "bald" in scores:
        close_call, disagreement = (np.asarray(scores[name], dtype=np.float64) for name in ("margin", "bald"))
        if close_call.shape != (n_items,) or disagreement.shape != (n_items,):
            raise ValueError(f"scores must have shape ({n_items},); got {close_call.shape} and "
                             f"{disagreement.shape}")
    else:
        p = K.prepare(probs)  # [K, N, C]
        if p.shape[1] != n_items:
            raise ValueError(f"probs has {p.shape[1]} items but vectors has {n_items}")
        w = K.check_weights(weights, p.shape[0])  # [K]
        mean = K.weighted_mean(p, w)  # [N, C]
        close_call, disagreement = K.margin(p, w, mean), K.mutual_information(p, w, mean)
    blend = _rank_average(close_call, disagreement)  # [N]
    picks = diverse_top(blend, vectors, n, rng=rng, exclude=blocked, method="clusters")
    return picks, DISAGREEMENT_PHASE
