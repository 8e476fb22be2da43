"""Acquisition: which items a person should label next.

Every measure is a pure function of the ensemble's probabilities
``probs`` of shape ``(K, N, C)`` (K heads, N items, C classes) and returns
``scores`` of shape ``(N,)`` where **higher means ask a person first**.
``STRATEGIES`` maps a name to each measure and :func:`score` looks one up.

Scores become a batch of item indices with :func:`select_top` (top-n with a
random tie-break) or :func:`diverse_top` (top candidates spread out in
embedding space). Before any model exists, :func:`typical_cold_start` picks
typical items from uncovered clusters. :func:`default_policy` chooses between
the two phases.

Entropies are in nats; ``0 * log 0`` is taken as 0 (``scipy.special.xlogy``).
Every function that takes ``probs`` raises ``ValueError`` unless it is 3-D
with at least one head and class, finite, non-negative, and each row sums to
1 within :data:`SUM_ATOL`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt
from scipy.special import xlogy
from scipy.stats import rankdata
from sklearn.cluster import KMeans, MiniBatchKMeans

__all__ = [
    "COLD_START_PHASE",
    "DISAGREEMENT_PHASE",
    "STRATEGIES",
    "EmptyPoolError",
    "all_scores",
    "confidence",
    "consensus_entropy",
    "default_policy",
    "diverse_top",
    "entropy",
    "kl_to_consensus",
    "least_confidence",
    "margin",
    "most_confident",
    "mutual_information",
    "random_scores",
    "score",
    "select_top",
    "t_disagreement",
    "t_similarity",
    "typical_cold_start",
    "typicality",
    "vote_entropy",
]

FloatArray = npt.NDArray[np.floating]
IndexArray = npt.NDArray[np.int64]

SUM_ATOL = 1e-3
"""Tolerance on ``|sum_c probs[k, n, c] - 1|``.

Loose enough for float32 softmax outputs over thousands of classes, tight
enough to reject logits or unnormalised scores passed by mistake.
"""

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


class EmptyPoolError(ValueError):
    """Raised when items are requested but none is eligible."""


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check_probs_shape(probs: npt.ArrayLike) -> np.ndarray:
    """Check the shape of ``probs`` without reading its values (no copy)."""
    arr = np.asarray(probs)
    if arr.ndim != 3:
        raise ValueError(
            "probs must be 3-D with shape (K heads, N items, C classes); "
            f"got shape {arr.shape}"
        )
    k, _, c = arr.shape
    if k == 0 or c == 0:
        raise ValueError(f"probs needs at least one head and one class; got shape {arr.shape}")
    return arr


def _check_probs_values(arr: np.ndarray) -> np.ndarray:
    """Check values and return a float64 copy whose rows sum exactly to 1."""
    p = np.asarray(arr, dtype=np.float64)  # [K, N, C]
    if not np.isfinite(p).all():
        raise ValueError("probs contains NaN or infinite values")
    if (p < 0).any():
        raise ValueError("probs contains negative values; pass probabilities, not logits")
    sums = p.sum(axis=-1)  # [K, N]
    bad = np.abs(sums - 1.0) > SUM_ATOL
    if bad.any():
        k, n = np.argwhere(bad)[0]
        raise ValueError(
            f"probs rows must sum to 1 (tolerance {SUM_ATOL}); "
            f"head {k}, item {n} sums to {sums[k, n]:.6g}"
        )
    return p / sums[..., None]  # [K, N, C]


def _prepare(probs: npt.ArrayLike) -> np.ndarray:
    return _check_probs_values(_check_probs_shape(probs))


def _check_scores(scores: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"scores must be 1-D with shape (N,); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("scores contains NaN or infinite values")
    return arr


def _check_vectors(vectors: npt.ArrayLike, n_rows: int | None = None) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"vectors must be 2-D with shape (N, D); got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"vectors has {arr.shape[0]} rows but {n_rows} items were scored")
    if not np.isfinite(arr).all():
        raise ValueError("vectors contains NaN or infinite values")
    return arr


def _check_mask(mask: npt.ArrayLike | None, n_items: int, name: str) -> np.ndarray:
    if mask is None:
        return np.zeros(n_items, dtype=bool)
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise ValueError(f"{name} must be a boolean mask; got dtype {arr.dtype}")
    if arr.shape != (n_items,):
        raise ValueError(f"{name} must have shape ({n_items},); got {arr.shape}")
    return arr


def _check_count(value: int, name: str, *, minimum: int = 0) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}") from None
    if count < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {count}")
    return count


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
            f"got {type(rng).__name__}"
        )
    return rng


# --------------------------------------------------------------------------
# Kernels: validated float64 probs p [K, N, C] and their mean [N, C] in,
# scores [N] out. Public functions validate, then call one of these.
# --------------------------------------------------------------------------


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    return 0.0 - np.sum(xlogy(p, p), axis=-1)  # [...]; 0.0 - x turns -0.0 into 0.0


def _least_confidence(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return 1.0 - mean.max(axis=-1)  # [N]


def _margin(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    if mean.shape[-1] == 1:
        return np.zeros(mean.shape[0])
    top2 = -np.partition(-mean, 1, axis=-1)[:, :2]  # [N, 2] largest first
    return 1.0 - (top2[:, 0] - top2[:, 1])  # [N]


def _entropy(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return _entropy_rows(mean)  # [N]


def _vote_entropy(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    k, n, c = p.shape
    votes = p.argmax(axis=-1)  # [K, N]
    counts = np.zeros((n, c))  # [N, C]
    rows = np.arange(n)
    for head_votes in votes:  # K is small; each head votes once per item
        counts[rows, head_votes] += 1.0
    return _entropy_rows(counts / k)  # [N]


def _mutual_information(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    expected_entropy = _entropy_rows(p).mean(axis=0)  # [N]
    # Non-negative by concavity of entropy; clip rounding noise.
    return np.maximum(_entropy_rows(mean) - expected_entropy, 0.0)  # [N]


def _kl_to_consensus(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    # mean[n, c] >= p[k, n, c] / K, so log(mean) is finite wherever p > 0.
    kl = np.sum(xlogy(p, p) - xlogy(p, mean[None]), axis=-1)  # [K, N]
    return np.maximum(kl.mean(axis=0), 0.0)  # [N]


def _t_similarity(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    k = p.shape[0]
    if k == 1:
        # The limit of K identical heads: the head's inner product with itself.
        return np.clip(np.sum(p[0] ** 2, axis=-1), 0.0, 1.0)  # [N]
    total = p.sum(axis=0)  # [N, C]
    # sum_{i<j} <p_i, p_j> = (|sum_i p_i|^2 - sum_i |p_i|^2) / 2
    pair_sum = np.sum(total**2, axis=-1) - np.sum(p**2, axis=(0, 2))  # [N], twice the pair sum
    return np.clip(pair_sum / (k * (k - 1)), 0.0, 1.0)  # [N]


def _t_disagreement(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return 1.0 - _t_similarity(p, mean)  # [N]


def _confidence(p: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return mean.max(axis=-1)  # [N]


_Kernel = Callable[[np.ndarray, np.ndarray], np.ndarray]

_KERNELS: Mapping[str, _Kernel] = MappingProxyType(
    {
        "least_confidence": _least_confidence,
        "margin": _margin,
        "entropy": _entropy,
        "vote_entropy": _vote_entropy,
        "consensus_entropy": _entropy,
        "bald": _mutual_information,
        "mutual_information": _mutual_information,
        "kl_to_consensus": _kl_to_consensus,
        "t_similarity": _t_disagreement,
        "most_confident": _confidence,
    }
)
"""Deterministic strategy name -> kernel; used by :func:`all_scores`."""


def _run(kernel: _Kernel, probs: npt.ArrayLike) -> np.ndarray:
    p = _prepare(probs)  # [K, N, C]
    return kernel(p, p.mean(axis=0))


# --------------------------------------------------------------------------
# Public measures
# --------------------------------------------------------------------------


def least_confidence(probs: npt.ArrayLike) -> FloatArray:
    """One minus the largest mean class probability.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, 1 - 1/C]``; higher = less confident = ask first.
    """
    return _run(_least_confidence, probs)


def margin(probs: npt.ArrayLike) -> FloatArray:
    """One minus the gap between the two largest mean class probabilities.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        ``1 - (p1 - p2)`` in ``[0, 1]``, all zeros when ``C == 1``;
        higher = closer call = ask first.
    """
    return _run(_margin, probs)


def entropy(probs: npt.ArrayLike) -> FloatArray:
    """Entropy of the mean class distribution, in nats.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log C]``; higher = more uncertain = ask first.
    """
    return _run(_entropy, probs)


def consensus_entropy(probs: npt.ArrayLike) -> FloatArray:
    """Entropy of the committee's consensus (mean) distribution, in nats.

    The committee name for :func:`entropy`; the values are identical.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log C]``; higher = ask first.
    """
    return _run(_entropy, probs)


def vote_entropy(probs: npt.ArrayLike) -> FloatArray:
    """Entropy of the heads' hard votes (each head votes its argmax class).

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items. A head whose top classes
        tie votes for the lowest class index.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log min(K, C)]``, in nats: 0 when all heads vote alike,
        largest when the votes split evenly. Higher = ask first.
    """
    return _run(_vote_entropy, probs)


def mutual_information(probs: npt.ArrayLike) -> FloatArray:
    """BALD: entropy of the mean minus the mean entropy of the heads.

    High where each head is confident but the heads disagree; zero where all
    heads give the same distribution, however flat (Houlsby et al., 2011).

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log min(K, C)]``, in nats; higher = ask first.
    """
    return _run(_mutual_information, probs)


def kl_to_consensus(probs: npt.ArrayLike) -> FloatArray:
    """Mean over heads of ``KL(head || consensus)``, in nats.

    Computed from the divergences directly. The mean KL to the mean
    distribution equals :func:`mutual_information` mathematically; the two
    differ only by rounding.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log min(K, C)]``; higher = heads further from their
        consensus = ask first.
    """
    return _run(_kl_to_consensus, probs)


def t_similarity(probs: npt.ArrayLike) -> FloatArray:
    """T-similarity: mean inner product of the heads' probability vectors.

    ``s[n] = 2 / (K (K - 1)) * sum_{i<j} <probs[i, n], probs[j, n]>``; with a
    single head, ``<probs[0, n], probs[0, n]>`` (what K identical heads give).
    From Odonnat et al., "Leveraging Ensemble Diversity for Robust
    Self-Training in the Presence of Sample Selection Bias", 2024.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    similarity : ndarray, shape (N,)
        A confidence, not a score: in ``[0, 1]``, 1 when every head puts all
        its mass on the same class, low when heads disagree. Rank items with
        :func:`t_disagreement`.
    """
    return _run(_t_similarity, probs)


def t_disagreement(probs: npt.ArrayLike) -> FloatArray:
    """One minus :func:`t_similarity`.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, 1]``; higher = heads disagree more = ask first.
    """
    return _run(_t_disagreement, probs)


def confidence(probs: npt.ArrayLike) -> FloatArray:
    """Largest mean class probability (the pseudo-label's probability).

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    confidence : ndarray, shape (N,)
        In ``[1/C, 1]``; higher = more confident.
    """
    return _run(_confidence, probs)


def most_confident(probs: npt.ArrayLike) -> FloatArray:
    """Score that shows the most confident pseudo-labels first (for review).

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        Equal to :func:`confidence`, in ``[1/C, 1]``; higher = shown first.
    """
    return _run(_confidence, probs)


def random_scores(probs: npt.ArrayLike, *, rng: np.random.Generator) -> FloatArray:
    """Uniform random scores: the passive-learning baseline.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities; only N is used, but the array is validated.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    scores : ndarray, shape (N,)
        Independent draws in ``[0, 1)``.

    Raises
    ------
    TypeError
        If ``rng`` is not a ``numpy.random.Generator``.
    """
    rng = _check_rng(rng)
    n_items = _prepare(probs).shape[1]
    return rng.random(n_items)


STRATEGIES: Mapping[str, Callable[..., FloatArray]] = MappingProxyType(
    {
        "least_confidence": least_confidence,
        "margin": margin,
        "entropy": entropy,
        "vote_entropy": vote_entropy,
        "consensus_entropy": consensus_entropy,
        "bald": mutual_information,
        "mutual_information": mutual_information,
        "kl_to_consensus": kl_to_consensus,
        "t_similarity": t_disagreement,
        "random": random_scores,
        "most_confident": most_confident,
    }
)
"""Strategy name -> scoring function ``probs (K, N, C) -> scores (N,)``.

Read-only. Every score is higher = ask first. ``"t_similarity"`` ranks by
:func:`t_disagreement` (low T-similarity first); ``"bald"`` and
``"mutual_information"`` are the same function.
"""

_NEEDS_RNG = frozenset({"random"})


def score(
    probs: npt.ArrayLike, method: str, *, rng: np.random.Generator | None = None
) -> FloatArray:
    """Score items with the strategy named ``method``.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    method : str
        A key of :data:`STRATEGIES`.
    rng : numpy.random.Generator, optional
        Required by ``"random"``; ignored by the other strategies.

    Returns
    -------
    scores : ndarray, shape (N,)
        Higher = ask first.

    Raises
    ------
    ValueError
        If ``method`` is unknown (the message lists the valid names), if
        ``"random"`` is asked for without ``rng``, or if ``probs`` is invalid.
    """
    try:
        func = STRATEGIES[method]
    except KeyError:
        raise ValueError(
            f"unknown acquisition method {method!r}; valid methods: {', '.join(sorted(STRATEGIES))}"
        ) from None
    if method in _NEEDS_RNG:
        if rng is None:
            raise ValueError(f"method {method!r} needs rng=np.random.default_rng(seed)")
        return func(probs, rng=rng)
    return func(probs)


def all_scores(probs: npt.ArrayLike, *, chunk_size: int = 100_000) -> dict[str, FloatArray]:
    """Every deterministic strategy's scores, computed chunk by chunk over N.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items; may be a memory-mapped
        array, as only ``chunk_size`` items are held in float64 at a time.
    chunk_size : int
        Items per chunk. The result does not depend on it.

    Returns
    -------
    scores : dict of str to ndarray, shape (N,)
        One entry per name in :data:`STRATEGIES` except ``"random"``, each
        equal to ``score(probs, name)``; higher = ask first.

    Raises
    ------
    ValueError
        If ``probs`` is invalid or ``chunk_size < 1``.
    """
    chunk_size = _check_count(chunk_size, "chunk_size", minimum=1)
    arr = _check_probs_shape(probs)
    n_items = arr.shape[1]
    out = {name: np.empty(n_items) for name in _KERNELS}
    for start in range(0, n_items, chunk_size):
        stop = min(start + chunk_size, n_items)
        p = _check_probs_values(arr[:, start:stop])  # [K, n, C]
        mean = p.mean(axis=0)  # [n, C]
        done: dict[_Kernel, np.ndarray] = {}
        for name, kernel in _KERNELS.items():
            if kernel not in done:
                done[kernel] = kernel(p, mean)
            out[name][start:stop] = done[kernel]
    return out


# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------


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
    if x.shape[0] > MINIBATCH_KMEANS_ABOVE:
        model = MiniBatchKMeans(
            n_clusters=n_clusters, n_init=n_init, random_state=seed, batch_size=4096
        )
    else:
        model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
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
        ``labeling.neighbours.knn_graph``); the first ``k`` columns are used.
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

    p = _prepare(probs)  # [K, N, C]
    if p.shape[1] != n_items:
        raise ValueError(f"probs has {p.shape[1]} items but vectors has {n_items}")
    mean = p.mean(axis=0)  # [N, C]
    blend = _rank_average(_margin(p, mean), _mutual_information(p, mean))  # [N]
    picks = diverse_top(blend, vectors, n, rng=rng, exclude=blocked, method="clusters")
    return picks, DISAGREEMENT_PHASE
