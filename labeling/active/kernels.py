"""Validation and the score kernels of :mod:`labeling.active.acquisition`.

A kernel takes validated float64 ``p`` ``[K, N, C]``, the members' weights ``w`` ``[K]`` (summing
to 1) and their weighted mean ``mean`` ``[N, C]``, and returns scores ``[N]``. The mean is the same
distribution a round shows as its suggestion and confidence, so a score ranks by what the person
sees. Public functions (in ``acquisition``) validate once, then call a kernel.
"""
from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.special import xlogy

SUM_ATOL = 1e-3
"""Tolerance on ``|sum_c probs[k, n, c] - 1|``.

Loose enough for float32 softmax outputs over thousands of classes, tight
enough to reject logits or unnormalised scores passed by mistake.
"""

FINITE_BLOCK = 65_536
"""Rows checked for finiteness at a time (a whole-matrix check would allocate N x D booleans)."""


def check_probs_shape(probs: npt.ArrayLike) -> np.ndarray:
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


def check_probs_values(arr: np.ndarray) -> np.ndarray:
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


def prepare(probs: npt.ArrayLike) -> np.ndarray:
    return check_probs_values(check_probs_shape(probs))


def check_weights(weights: npt.ArrayLike | None, k: int) -> np.ndarray:
    """The members' weights as float64 ``[K]`` summing to 1 (uniform when ``None``)."""
    if weights is None:
        return np.full(k, 1.0 / k)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (k,):
        raise ValueError(f"weights must have shape ({k},), one per member; got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


def weighted_mean(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_k w[k] p[k]``, ``[N, C]``."""
    return np.tensordot(w, p, axes=1)


def check_scores(scores: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"scores must be 1-D with shape (N,); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("scores contains NaN or infinite values")
    return arr


def check_vectors(vectors: npt.ArrayLike, n_rows: int | None = None) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"vectors must be 2-D with shape (N, D); got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"vectors has {arr.shape[0]} rows but {n_rows} items were scored")
    for start in range(0, arr.shape[0], FINITE_BLOCK):
        if not np.isfinite(arr[start:start + FINITE_BLOCK]).all():
            raise ValueError("vectors contains NaN or infinite values")
    return arr


def check_mask(mask: npt.ArrayLike | None, n_items: int, name: str) -> np.ndarray:
    if mask is None:
        return np.zeros(n_items, dtype=bool)
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise ValueError(f"{name} must be a boolean mask; got dtype {arr.dtype}")
    if arr.shape != (n_items,):
        raise ValueError(f"{name} must have shape ({n_items},); got {arr.shape}")
    return arr


def check_count(value: int, name: str, *, minimum: int = 0) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}") from None
    if count < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {count}")
    return count


def check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
            f"got {type(rng).__name__}"
        )
    return rng


# --------------------------------------------------------------------------
# Kernels: p [K, N, C], w [K], mean [N, C] in; scores [N] out.
# --------------------------------------------------------------------------


def entropy_rows(p: np.ndarray) -> np.ndarray:
    return 0.0 - np.sum(xlogy(p, p), axis=-1)  # [...]; 0.0 - x turns -0.0 into 0.0


def least_confidence(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return 1.0 - mean.max(axis=-1)  # [N]


def margin(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    if mean.shape[-1] == 1:
        return np.zeros(mean.shape[0])
    top2 = -np.partition(-mean, 1, axis=-1)[:, :2]  # [N, 2] largest first
    return 1.0 - (top2[:, 0] - top2[:, 1])  # [N]


def entropy(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return entropy_rows(mean)  # [N]


def vote_entropy(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    _, n, c = p.shape
    votes = p.argmax(axis=-1)  # [K, N]
    counts = np.zeros((n, c))  # [N, C]: each member's vote counts with its weight
    rows = np.arange(n)
    equal = bool(np.all(w == w[0]))  # equal weights: whole votes, so a unanimous row is exactly 0
    for weight, head_votes in zip(w, votes):  # K is small
        counts[rows, head_votes] += 1.0 if equal else weight
    return entropy_rows(counts / len(w) if equal else counts)  # [N]


def mutual_information(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    expected_entropy = w @ entropy_rows(p)  # [N]
    # Non-negative by concavity of entropy; clip rounding noise.
    return np.maximum(entropy_rows(mean) - expected_entropy, 0.0)  # [N]


def kl_to_consensus(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    live = w > 0  # mean >= w[k] p[k], so log(mean) is finite wherever a weighted member has mass
    kl = np.sum(xlogy(p[live], p[live]) - xlogy(p[live], mean[None]), axis=-1)  # [K', N]
    return np.maximum(kl.max(axis=0), 0.0)  # [N]: the member furthest from consensus


def t_similarity(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    # sum_{i != j} w_i w_j <p_i, p_j> / sum_{i != j} w_i w_j  (uniform w: the mean pairwise product)
    pairs = 1.0 - float(np.sum(w**2))
    if pairs <= 1e-12:  # one member (or all weight on one): its inner product with itself
        return np.clip(np.sum(mean**2, axis=-1), 0.0, 1.0)  # [N]
    own = np.einsum("k,knc->n", w**2, p**2)  # [N]
    return np.clip((np.sum(mean**2, axis=-1) - own) / pairs, 0.0, 1.0)  # [N]


def t_disagreement(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return 1.0 - t_similarity(p, w, mean)  # [N]


def confidence(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return mean.max(axis=-1)  # [N]


Kernel = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def shared_entropies(p: np.ndarray, w: np.ndarray, mean: np.ndarray) -> dict[Kernel, np.ndarray]:
    """Entropy, BALD and KL to consensus with their common terms computed once.

    ``xlogy(p, p)`` over all K members is the costliest array of a round's scores (100 classes,
    100k items: 60M entries); BALD and KL both need it, and BALD and entropy both need the
    consensus entropy. Same operations as the single kernels, so the scores equal theirs.
    """
    plogp = xlogy(p, p)  # [K, n, C]
    consensus = 0.0 - np.sum(xlogy(mean, mean), axis=-1)  # [n], as entropy_rows(mean)
    heads = 0.0 - np.sum(plogp, axis=-1)  # [K, n], as entropy_rows(p)
    live = w > 0
    kl = np.sum(plogp[live] - xlogy(p[live], mean[None]), axis=-1)  # [K', n]
    return {
        entropy: consensus,
        mutual_information: np.maximum(consensus - w @ heads, 0.0),
        kl_to_consensus: np.maximum(kl.max(axis=0), 0.0),
    }
