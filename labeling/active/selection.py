"""Selection: turning acquisition scores into a batch of items to ask about.

:func:`select_top` takes the top n with a random tie-break; :func:`diverse_top`
spreads the top candidates out in embedding space so a batch holds no
near-duplicates. :func:`default_policy` moves from the cold start
(:func:`labeling.active.coldstart.typical_cold_start`: typical items from
uncovered clusters, before any model exists) to disagreement as labels grow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from labeling.active.acquisition import EmptyPoolError, IndexArray
from labeling.active.coldstart import ClusterMemo, _kmeans_labels, typical_cold_start
from labeling.active.kernels import check_count as _check_count
from labeling.active.kernels import check_mask as _check_mask
from labeling.active.kernels import check_rng as _check_rng
from labeling.active.kernels import check_scores as _check_scores
from labeling.active.kernels import check_vectors as _check_vectors
from labeling.active import kernels as K
from labeling.search.neighbours import normalize

__all__ = [
    "COLD_START_PHASE",
    "DISAGREEMENT_PHASE",
    "default_policy",
    "diverse_top",
    "select_top",
]

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
    unit = normalize(vectors[candidates])  # [M, D] float32, unit rows
    positions = np.sort(pick(unit, n, rng))  # rank order = score order
    return candidates[positions]


# --------------------------------------------------------------------------
# Default policy
# --------------------------------------------------------------------------


def _rank_average(*score_sets: np.ndarray) -> np.ndarray:
    """Mean of each score's normalised rank, in (0, 1]; higher = ask first."""
    ranks = [rankdata(s, method="average") / s.size for s in score_sets]
    return np.mean(ranks, axis=0)  # [N]


def _check_labels(labels: npt.ArrayLike, n_items: int, n_classes: int) -> np.ndarray:
    """``labels`` as an integer array of shape ``(n_items,)`` with values in ``[-1, n_classes)``."""
    labels = np.asarray(labels)
    if labels.shape != (n_items,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integers of shape ({n_items},); got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < -1 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [-1, {n_classes}); got [{labels.min()}, {labels.max()}]"
        )
    return labels


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
    cluster_memo: ClusterMemo | None = None,
) -> tuple[IndexArray, Phase]:
    """The next batch to label, choosing between cold start and disagreement (``cluster_memo``: the cold
    start's clusterings kept between rounds, :data:`labeling.active.coldstart.ClusterMemo`).

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
    labels = _check_labels(labels, n_items, n_classes)
    labeled = labels >= 0  # [N]
    blocked = labeled | _check_mask(exclude, n_items, "exclude")  # [N]
    per_class = np.bincount(labels[labeled], minlength=n_classes)  # [n_classes]

    if probs is None or per_class.min() < min_per_class:
        picks = typical_cold_start(
            vectors, n, labeled_mask=labeled, rng=rng, knn_sims=knn_sims, exclude=blocked & ~labeled,
            memo=cluster_memo,
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
