"""Acquisition: which items a person should label next.

Every measure is a pure function of the ensemble's probabilities
``probs`` of shape ``(K, N, C)`` (K heads, N items, C classes) and returns
``scores`` of shape ``(N,)`` where **higher means ask a person first**.
``STRATEGIES`` maps a name to each measure and :func:`score` looks one up.

Turning scores into a batch (top-n, diversity, cold start, the default
policy) lives in :mod:`labeling.active.selection`.

Entropies are in nats; ``0 * log 0`` is taken as 0 (``scipy.special.xlogy``).
Every function that takes ``probs`` raises ``ValueError`` unless it is 3-D
with at least one head and class, finite, non-negative, and each row sums to
1 within :data:`SUM_ATOL`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
from scipy.special import xlogy

__all__ = [
    "STRATEGIES",
    "EmptyPoolError",
    "all_scores",
    "confidence",
    "consensus_entropy",
    "entropy",
    "kl_to_consensus",
    "least_confidence",
    "margin",
    "most_confident",
    "mutual_information",
    "random_scores",
    "score",
    "t_disagreement",
    "t_similarity",
    "vote_entropy",
]

FloatArray = npt.NDArray[np.floating]
IndexArray = npt.NDArray[np.int64]

SUM_ATOL = 1e-3
"""Tolerance on ``|sum_c probs[k, n, c] - 1|``.

Loose enough for float32 softmax outputs over thousands of classes, tight
enough to reject logits or unnormalised scores passed by mistake.
"""



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
    if not np.may_share_memory(p, arr):  # p is our own float64 copy: normalise it in place
        p /= sums[..., None]
        return p  # [K, N, C]
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
    # Row blocks: a whole-matrix isfinite would allocate N x D booleans (512 MB at 1M x 512).
    for start in range(0, arr.shape[0], _FINITE_BLOCK):
        if not np.isfinite(arr[start:start + _FINITE_BLOCK]).all():
            raise ValueError("vectors contains NaN or infinite values")
    return arr


_FINITE_BLOCK = 65_536


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
    return np.maximum(kl.max(axis=0), 0.0)  # [N]: the head furthest from consensus


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
    """Largest ``KL(head || consensus)`` over the heads, in nats.

    The query-by-committee "max disagreement": the *mean* KL to the consensus
    would equal :func:`mutual_information` exactly, so the maximum is used
    to single out items where one head strongly dissents.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log K]`` (the consensus holds at least ``1/K`` of each
        head's mass); higher = one head far from the consensus = ask first.
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


def all_scores(probs: npt.ArrayLike, *, chunk_size: int = 8_192) -> dict[str, FloatArray]:
    """Every deterministic strategy's scores, computed chunk by chunk over N.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items; may be a memory-mapped
        array, as only ``chunk_size`` items are held in float64 at a time.
    chunk_size : int
        Items per chunk. The result does not depend on it. Chunks that fit in the CPU caches are
        about twice as fast as 100k-item chunks (6 heads x 100 classes, 2 cores).

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
        done = _shared_entropies(p, mean)
        for name, kernel in _KERNELS.items():
            if kernel not in done:
                done[kernel] = kernel(p, mean)
            out[name][start:stop] = done[kernel]
    return out


def _shared_entropies(p: np.ndarray, mean: np.ndarray) -> dict[_Kernel, np.ndarray]:
    """Entropy, BALD and KL to consensus with their common terms computed once.

    ``xlogy(p, p)`` over all K heads is the costliest array in :func:`all_scores` (100 classes,
    100k items: 60M entries); BALD and KL both need it, and BALD and entropy both need the
    consensus entropy. Same operations in the same order as the single kernels, so the
    scores are identical to theirs.
    """
    plogp = xlogy(p, p)  # [K, n, C]
    consensus = 0.0 - np.sum(xlogy(mean, mean), axis=-1)  # [n], as _entropy_rows(mean)
    heads = 0.0 - np.sum(plogp, axis=-1)  # [K, n], as _entropy_rows(p)
    kl = np.sum(plogp - xlogy(p, mean[None]), axis=-1)  # [K, n]
    return {
        _entropy: consensus,
        _mutual_information: np.maximum(consensus - heads.mean(axis=0), 0.0),
        _kl_to_consensus: np.maximum(kl.max(axis=0), 0.0),
    }


# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------
