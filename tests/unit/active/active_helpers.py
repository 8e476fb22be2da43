"""Probability pools and vector blobs with known answers, shared by the active-learning tests."""
from __future__ import annotations

import numpy as np

from labeling.active import acquisition as acq

UNCERTAINTY_METHODS = (
    "least_confidence",
    "margin",
    "entropy",
    "vote_entropy",
    "consensus_entropy",
    "bald",
    "mutual_information",
    "kl_to_consensus",
    "t_similarity",
)
DETERMINISTIC_METHODS = tuple(name for name in acq.STRATEGIES if name != "random")


def _peaked(c: int, cls: int, top: float = 0.9) -> np.ndarray:
    """A distribution with ``top`` on ``cls`` and the rest spread evenly."""
    row = np.full(c, (1.0 - top) / (c - 1))
    row[cls] = top
    return row


def _pool_with_one_uncertain_row(n_items: int, uncertain: int) -> np.ndarray:
    """K=3 identical confident heads everywhere but one row where they disagree."""
    k = c = 3
    probs = np.empty((k, n_items, c))
    for n in range(n_items):
        probs[:, n] = _peaked(c, n % c)
    for head in range(k):
        probs[head, uncertain] = _peaked(c, head)  # each head sure of a different class
    return probs


def _one_hot(votes: np.ndarray, c: int) -> np.ndarray:
    """(K, N) class votes -> (K, N, C) one-hot probabilities."""
    return np.eye(c)[votes]


def _blobs(rng: np.random.Generator, *, n_blobs: int = 5, per_blob: int = 100, dim: int = 8):
    """Well-separated Gaussian blobs on orthogonal axes; returns (X, blob, centres)."""
    centres = 10.0 * np.eye(dim)[:n_blobs]
    x = np.concatenate([c + rng.normal(size=(per_blob, dim)) for c in centres])
    blob = np.repeat(np.arange(n_blobs), per_blob)
    return x, blob, centres


def _cosine_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return 1.0 - np.sum(x * y, axis=-1)
