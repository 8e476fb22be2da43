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

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from labeling.active import kernels as K
from labeling.active.kernels import SUM_ATOL

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


class EmptyPoolError(ValueError):
    """Raised when items are requested but none is eligible."""


_KERNELS: Mapping[str, K.Kernel] = MappingProxyType(
    {
        "least_confidence": K.least_confidence,
        "margin": K.margin,
        "entropy": K.entropy,
        "vote_entropy": K.vote_entropy,
        "consensus_entropy": K.entropy,
        "bald": K.mutual_information,
        "mutual_information": K.mutual_information,
        "kl_to_consensus": K.kl_to_consensus,
        "t_similarity": K.t_disagreement,
        "most_confident": K.confidence,
    }
)
"""Deterministic strategy name -> kernel; used by :func:`all_scores`."""


def _run(kernel: K.Kernel, probs: npt.ArrayLike, weights: npt.ArrayLike | None) -> np.ndarray:
    p = K.prepare(probs)  # [K, N, C]
    w = K.check_weights(weights, p.shape[0])  # [K]
    return kernel(p, w, K.weighted_mean(p, w))


# --------------------------------------------------------------------------
# Public measures
# --------------------------------------------------------------------------


def least_confidence(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """One minus the largest mean class probability.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, 1 - 1/C]``; higher = less confident = ask first.
    """
    return _run(K.least_confidence, probs, weights)


def margin(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """One minus the gap between the two largest mean class probabilities.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    scores : ndarray, shape (N,)
        ``1 - (p1 - p2)`` in ``[0, 1]``, all zeros when ``C == 1``;
        higher = closer call = ask first.
    """
    return _run(K.margin, probs, weights)


def entropy(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """Entropy of the mean class distribution, in nats.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log C]``; higher = more uncertain = ask first.
    """
    return _run(K.entropy, probs, weights)


def consensus_entropy(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """Entropy of the committee's consensus (mean) distribution, in nats.

    The committee name for :func:`entropy`; the values are identical.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log C]``; higher = ask first.
    """
    return _run(K.entropy, probs, weights)


def vote_entropy(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
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
    return _run(K.vote_entropy, probs, weights)


def mutual_information(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """BALD: entropy of the mean minus the mean entropy of the heads.

    High where each head is confident but the heads disagree; zero where all
    heads give the same distribution, however flat (Houlsby et al., 2011).

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log min(K, C)]``, in nats; higher = ask first.
    """
    return _run(K.mutual_information, probs, weights)


def kl_to_consensus(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """Largest ``KL(head || consensus)`` over the heads, in nats.

    The query-by-committee "max disagreement": the *mean* KL to the consensus
    would equal :func:`mutual_information` exactly, so the maximum is used
    to single out items where one head strongly dissents.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, log K]`` (the consensus holds at least ``1/K`` of each
        head's mass); higher = one head far from the consensus = ask first.
    """
    return _run(K.kl_to_consensus, probs, weights)


def t_similarity(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """T-similarity: mean inner product of the heads' probability vectors.

    ``s[n] = 2 / (K (K - 1)) * sum_{i<j} <probs[i, n], probs[j, n]>``; with a
    single head, ``<probs[0, n], probs[0, n]>`` (what K identical heads give).
    From Odonnat et al., "Leveraging Ensemble Diversity for Robust
    Self-Training in the Presence of Sample Selection Bias", 2024.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    similarity : ndarray, shape (N,)
        A confidence, not a score: in ``[0, 1]``, 1 when every head puts all
        its mass on the same class, low when heads disagree. Rank items with
        :func:`t_disagreement`.
    """
    return _run(K.t_similarity, probs, weights)


def t_disagreement(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """One minus :func:`t_similarity`.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    scores : ndarray, shape (N,)
        In ``[0, 1]``; higher = heads disagree more = ask first.
    """
    return _run(K.t_disagreement, probs, weights)


def confidence(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """Largest mean class probability (the pseudo-label's probability).

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    confidence : ndarray, shape (N,)
        In ``[1/C, 1]``; higher = more confident.
    """
    return _run(K.confidence, probs, weights)


def most_confident(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> FloatArray:
    """Score that shows the most confident pseudo-labels first (for review).

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.

    Returns
    -------
    scores : ndarray, shape (N,)
        Equal to :func:`confidence`, in ``[1/C, 1]``; higher = shown first.
    """
    return _run(K.confidence, probs, weights)


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
    rng = K.check_rng(rng)
    n_items = K.prepare(probs).shape[1]
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
    probs: npt.ArrayLike, method: str, *, rng: np.random.Generator | None = None,
    weights: npt.ArrayLike | None = None,
) -> FloatArray:
    """Score items with the strategy named ``method``.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (the round's weights); uniform when omitted.
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
    return func(probs, weights=weights)


def all_scores(probs: npt.ArrayLike, *, weights: npt.ArrayLike | None = None,
               chunk_size: int = 8_192) -> dict[str, FloatArray]:
    """Every deterministic strategy's scores, computed chunk by chunk over N.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of K heads for N items; may be a memory-mapped
        array, as only ``chunk_size`` items are held in float64 at a time.
    weights : array_like, shape (K,), optional
        Each member's share of the mean (a round passes its own weights, so every score reads
        the distribution the person is shown); uniform when omitted.
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
    chunk_size = K.check_count(chunk_size, "chunk_size", minimum=1)
    arr = K.check_probs_shape(probs)
    w = K.check_weights(weights, arr.shape[0])  # [K]
    n_items = arr.shape[1]
    out = {name: np.empty(n_items) for name in _KERNELS}
    for start in range(0, n_items, chunk_size):
        stop = min(start + chunk_size, n_items)
        p = K.check_probs_values(arr[:, start:stop])  # [K, n, C]
        mean = K.weighted_mean(p, w)  # [n, C]
        done = K.shared_entropies(p, w, mean)
        for name, kernel in _KERNELS.items():
            if kernel not in done:
                done[kernel] = kernel(p, w, mean)
            out[name][start:stop] = done[kernel]
    return out
