"""Label suggestions from the kNN graph: neighbour votes and label propagation.

All functions take the graph made by `labeling.neighbours.knn_graph`:
``graph_sims`` (N, k) cosine similarities and ``graph_idx`` (N, k) row
positions of each row's neighbours (``-1`` = missing), and ``labels`` (N,) with
the current human label of each row (``-1`` = unlabeled). They return class
probabilities ``(N, C)`` whose rows sum to 1.

- `knn_vote`: similarity-weighted vote of the labeled neighbours (the kNN
  classifier of "Rethinking Nearest Neighbors for Visual Classification").
- `label_propagation`: labels diffused over the whole graph (Zhou et al.,
  "Learning with Local and Global Consistency"), reaching items with no
  labeled neighbour.
- `blend`: ``lam * knn + (1 - lam) * head`` for the suggestion shown.
- `loo_knn_disagreement`: how strongly the neighbourhood contradicts each
  human label, for spotting label errors.

Self-edges are ignored, so an item's own label never votes for itself.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

LOG = logging.getLogger(__name__)

UNLABELED = -1
"""Value of ``labels`` for rows without a human label."""


def _check_graph(
    graph_sims: npt.ArrayLike,
    graph_idx: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_classes: int,
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]
]:
    """Validate inputs; return sims, idx, labels and the mask of usable edges."""
    sims = np.asarray(graph_sims, dtype=np.float64)
    idx = np.asarray(graph_idx)
    lab = np.asarray(labels)
    if sims.ndim != 2 or sims.shape != idx.shape:
        raise ValueError(
            f"graph_sims and graph_idx must both be (N, k), got {sims.shape} and {idx.shape}"
        )
    n = sims.shape[0]
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"graph_idx must be integers, got dtype {idx.dtype}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    idx = idx.astype(np.int64, copy=False)
    lab = lab.astype(np.int64, copy=False)
    if idx.size and (idx.min() < -1 or idx.max() >= n):
        raise ValueError(f"graph_idx must be in [-1, {n}), got [{idx.min()}, {idx.max()}]")
    if lab.size and (lab.min() < UNLABELED or lab.max() >= n_classes):
        raise ValueError(
            f"labels must be in [-1, {n_classes}), got [{lab.min()}, {lab.max()}]"
        )
    valid = (idx >= 0) & np.isfinite(sims) & (idx != np.arange(n)[:, None])
    return sims, idx, lab, valid


def _vote_mass(
    sims: npt.NDArray[np.float64],
    idx: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
    n_classes: int,
    *,
    temperature: float,
    min_sim: float,
) -> npt.NDArray[np.float64]:
    """Unnormalised vote mass per class, shape (N, C)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n = len(labels)
    neighbour_labels = labels[np.where(valid, idx, 0)]
    use = valid & (neighbour_labels >= 0) & (sims >= min_sim)
    # Subtracting the largest used similarity of each row rescales its votes
    # by a constant, which normalising cancels; it keeps exp() from overflowing.
    top = np.max(np.where(use, sims, -np.inf), axis=1, initial=-np.inf, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    weights = np.where(use, np.exp((np.where(use, sims, top) - top) / temperature), 0.0)
    rows = np.broadcast_to(np.arange(n)[:, None], sims.shape)
    flat = rows[use] * n_classes + neighbour_labels[use]
    mass = np.bincount(flat, weights=weights[use], minlength=n * n_classes)
    return mass.reshape(n, n_classes)


def _normalise_rows(mass: npt.NDArray[np.float64], n_classes: int) -> npt.NDArray[np.float32]:
    """Rows divided by their sum; rows without mass become uniform."""
    total = mass.sum(axis=1, keepdims=True)
    probs = np.full(mass.shape, 1.0 / n_classes)
    np.divide(mass, total, out=probs, where=total > 0)
    return probs.astype(np.float32)


def knn_vote(
    graph_sims: npt.ArrayLike,
    graph_idx: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_classes: int,
    *,
    temperature: float = 0.07,
    min_sim: float = 0.0,
) -> npt.NDArray[np.float32]:
    """Class probabilities from a similarity-weighted vote of labeled neighbours.

    Each labeled neighbour ``j`` of row ``i`` with similarity ``s_ij >=
    min_sim`` votes for its label with weight ``exp(s_ij / temperature)``.

    Parameters
    ----------
    graph_sims : array_like of float, shape (N, k)
        Similarity of each row to its neighbours (cosine, in [-1, 1]).
    graph_idx : array_like of int, shape (N, k)
        Row positions of the neighbours; ``-1`` = missing. Self-edges are
        ignored, so a labeled row is scored from its neighbours only.
    labels : array_like of int, shape (N,)
        Human label per row in ``[0, n_classes)``, or ``-1`` if unlabeled.
    n_classes : int
        Number of classes ``C``.
    temperature : float, optional
        Softness of the vote: small values let the closest labeled neighbour
        dominate, large values approach an unweighted majority vote.
    min_sim : float, optional
        Neighbours less similar than this do not vote.

    Returns
    -------
    numpy.ndarray of float32, shape (N, C)
        Rows sum to 1. Rows with no voting neighbour are uniform ``1 / C``.

    Raises
    ------
    ValueError
        On inconsistent shapes, out-of-range indices or labels, or
        ``temperature <= 0``.
    """
    sims, idx, lab, valid = _check_graph(graph_sims, graph_idx, labels, n_classes)
    mass = _vote_mass(
        sims, idx, lab, valid, n_classes, temperature=temperature, min_sim=min_sim
    )
    return _normalise_rows(mass, n_classes)


def label_propagation(
    graph_sims: npt.ArrayLike,
    graph_idx: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_classes: int,
    *,
    alpha: float = 0.99,
    n_iter: int = 20,
    symmetric: bool = True,
    power: float = 3.0,
) -> npt.NDArray[np.float32]:
    """Class probabilities by label propagation over the kNN graph.

    Local-and-global consistency (Zhou et al., 2004): with affinity ``W``,
    ``w_ij = max(s_ij, 0) ** power``, and ``S`` its normalisation, iterate
    ``F <- alpha * S @ F + (1 - alpha) * Y`` from ``F = Y`` (one-hot labels),
    resetting labeled rows to their label after each step. Work is a sparse
    product per step, ``O(N k C)``; nothing dense of size ``N x N`` is made.

    Parameters
    ----------
    graph_sims, graph_idx, labels, n_classes
        As in `knn_vote`.
    alpha : float, optional
        In ``(0, 1)``: weight of the neighbours against the item's own label.
    n_iter : int, optional
        Propagation steps; a label travels at most ``n_iter`` edges, so rows
        further from every label than that stay uniform.
    symmetric : bool, optional
        If true, symmetrise the graph (``W = max(W, W.T)``) and use
        ``S = D^-1/2 W D^-1/2``; else use the directed graph with
        ``S = D^-1 W`` (each row averages its own neighbours).
    power : float, optional
        Exponent that sharpens similarities into affinities.

    Returns
    -------
    numpy.ndarray of float32, shape (N, C)
        Rows sum to 1. Labeled rows are one-hot on their label; rows that no
        label reaches (another connected component, or more than ``n_iter``
        edges away) are uniform.

    Raises
    ------
    ValueError
        On inconsistent inputs, ``alpha`` outside ``(0, 1)`` or ``n_iter < 1``.
    """
    sims, idx, lab, valid = _check_graph(graph_sims, graph_idx, labels, n_classes)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be at least 1, got {n_iter}")
    n = len(lab)
    weights = np.clip(np.where(valid, sims, 0.0), 0.0, None) ** power
    keep = valid & (weights > 0)
    rows = np.broadcast_to(np.arange(n)[:, None], idx.shape)[keep]
    affinity = sp.csr_matrix((weights[keep], (rows, idx[keep])), shape=(n, n))
    # Repeated (row, col) pairs are summed by csr_matrix; a kNN graph has none.
    if symmetric:
        affinity = affinity.maximum(affinity.T).tocsr()
        degree = np.asarray(affinity.sum(axis=1)).ravel()
        inv_sqrt = np.zeros(n)
        np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
        step = sp.diags(inv_sqrt) @ affinity @ sp.diags(inv_sqrt)
    else:
        degree = np.asarray(affinity.sum(axis=1)).ravel()
        inv = np.zeros(n)
        np.divide(1.0, degree, out=inv, where=degree > 0)
        step = sp.diags(inv) @ affinity
    step = step.tocsr()

    labeled = lab >= 0
    seeds = np.zeros((n, n_classes))
    seeds[np.flatnonzero(labeled), lab[labeled]] = 1.0
    scores = seeds.copy()
    for _ in range(n_iter):
        scores = alpha * (step @ scores) + (1.0 - alpha) * seeds
        scores[labeled] = seeds[labeled]

    # Rows that no label reaches hold exactly zero (sparse products add
    # nothing to them) and become uniform here.
    probs = _normalise_rows(scores, n_classes)
    LOG.debug(
        "propagated %d labels over %d rows: %d rows reached",
        int(labeled.sum()), n, int((scores.sum(axis=1) > 0).sum()),
    )
    return probs


def blend(
    head_probs: npt.ArrayLike, knn_probs: npt.ArrayLike, *, lam: float
) -> npt.NDArray[np.float32]:
    """Interpolate classifier and neighbour probabilities: ``lam*knn + (1-lam)*head``.

    Parameters
    ----------
    head_probs : array_like, shape (N, C) or (K, N, C)
        Probabilities from the ensemble heads (one or K of them).
    knn_probs : array_like, shape (N, C)
        Probabilities from `knn_vote` or `label_propagation`.
    lam : float
        In ``[0, 1]``: 0 keeps the heads, 1 keeps the neighbours. The kNN
        side helps most while labels are few.

    Returns
    -------
    numpy.ndarray of float32, shape of ``head_probs``
        Still rows that sum to 1 when both inputs do.

    Raises
    ------
    ValueError
        If ``lam`` is outside ``[0, 1]`` or the shapes do not match.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    head = np.asarray(head_probs, dtype=np.float32)
    knn = np.asarray(knn_probs, dtype=np.float32)
    if knn.ndim != 2 or head.ndim not in (2, 3) or head.shape[-2:] != knn.shape:
        raise ValueError(
            f"head_probs (N, C) or (K, N, C) must match knn_probs (N, C), "
            f"got {head.shape} and {knn.shape}"
        )
    return (np.float32(lam) * knn + np.float32(1.0 - lam) * head).astype(np.float32)


def loo_knn_disagreement(
    graph_sims: npt.ArrayLike,
    graph_idx: npt.ArrayLike,
    labels: npt.ArrayLike,
    n_classes: int,
    *,
    temperature: float = 0.07,
    min_sim: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Share of each labeled item's neighbour vote that goes against its label.

    The vote is that of `knn_vote`, leaving the item out (its own label never
    votes), as in leave-one-out kNN.

    Parameters
    ----------
    graph_sims, graph_idx, labels, n_classes, temperature, min_sim
        As in `knn_vote`.

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
        In ``[0, 1]``; higher means the neighbourhood contradicts the human
        label more (a suspected label error). NaN for unlabeled items and for
        labeled items without any voting neighbour (no evidence either way).

    Raises
    ------
    ValueError
        As `knn_vote`.
    """
    sims, idx, lab, valid = _check_graph(graph_sims, graph_idx, labels, n_classes)
    mass = _vote_mass(
        sims, idx, lab, valid, n_classes, temperature=temperature, min_sim=min_sim
    )
    total = mass.sum(axis=1)
    out = np.full(len(lab), np.nan)
    scored = (lab >= 0) & (total > 0)
    rows = np.flatnonzero(scored)
    out[rows] = 1.0 - mass[rows, lab[rows]] / total[rows]
    return out
