"""Nearest neighbours in embedding space: L2 normalisation, the kNN graph, recall.

Similarity is the cosine of the angle between two embeddings, computed as the
inner product of L2-normalised vectors (`normalize`), so it lies in ``[-1, 1]``
and higher means closer.

`knn_graph` computes every item's ``k`` nearest other items in batches, so no
``N x N`` matrix is ever built; `labeling.model.propagation` votes and propagates
labels over it. The search itself is `labeling.search.index.NeighbourIndex`'s;
`recall_at_k` measures an approximate search against an exact one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from labeling.search.torch_backend import (  # noqa: F401  torch_knn and DEFAULT_BASE_BLOCK stay importable from here
    DEFAULT_BASE_BLOCK, DEFAULT_BLOCK, _check_k, torch_knn,
)

if TYPE_CHECKING:
    from labeling.search.index import NeighbourIndex

# -- Array helpers --
def normalize(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Return an L2-normalised float32 copy of ``vectors``.

    Parameters
    ----------
    vectors : array_like, shape (N, D)
        Embeddings, one per row.

    Returns
    -------
    numpy.ndarray of float32, shape (N, D)
        Each row divided by its Euclidean norm. Rows whose norm is zero stay
        zero, so their similarity to everything is 0. The input is not modified.

    Raises
    ------
    ValueError
        If ``vectors`` is not two-dimensional.
    """
    out = np.array(vectors, dtype=np.float32, copy=True)
    if out.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, D), got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _drop_self(
    sims: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    self_ids: npt.NDArray[np.int64],
    k: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Remove each row's own id from ``k + 1`` results, keeping order.

    The query item is not always first: an exact duplicate may tie with it.
    Where the item is absent (approximate search), the last result is dropped.
    """
    is_self = ids == self_ids[:, None]
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True
    # Keep the first match only, so a repeated id cannot drop two columns.
    first = np.argmax(is_self, axis=1)
    keep = np.ones_like(is_self)
    keep[np.arange(len(ids)), first] = False
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return (
        np.take_along_axis(sims, order, axis=1),
        np.take_along_axis(ids, order, axis=1),
    )


# -- Graph and evaluation --
def knn_graph(
    vectors: npt.ArrayLike,
    k: int,
    *,
    batch_size: int = DEFAULT_BLOCK,
    index: NeighbourIndex | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Each row's ``k`` most similar other rows (cosine), computed in batches.

    Parameters
    ----------
    vectors : array_like, shape (N, D)
        Embeddings.
    k : int
        Neighbours per row, self excluded.
    batch_size : int, optional
        Rows queried at a time; the result does not depend on it.
    index : NeighbourIndex, optional
        A prebuilt index over ``vectors`` whose item ids are the row positions
        ``0 .. N-1`` (e.g. ``NeighbourIndex.build(vectors, np.arange(N),
        kind="hnsw")``). By default one is built with ``kind="auto"``.

    Returns
    -------
    sims : numpy.ndarray of float32, shape (N, k)
        Cosine similarities, best first; ``-inf`` where missing (``k >= N``).
    idx : numpy.ndarray of int64, shape (N, k)
        Row positions of the neighbours; ``-1`` where missing. Never the row
        itself.

    Raises
    ------
    ValueError
        If ``index`` does not hold exactly the rows ``0 .. N-1``.
    """
    k = _check_k(k)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    # Rows are normalised batch by batch: no full copy of a memory-mapped input.
    vecs = np.asarray(vectors)
    if vecs.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, D), got shape {vecs.shape}")
    n = len(vecs)
    if index is None:
        from labeling.search.index import NeighbourIndex  # it imports this module

        index = NeighbourIndex.build(vecs, np.arange(n, dtype=np.int64))
    elif len(index) != n or not np.array_equal(index.item_ids, np.arange(n)):
        raise ValueError("index must hold the rows of `vectors` with item ids 0 .. N-1")
    sims = np.empty((n, k), dtype=np.float32)
    idx = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n), dtype=np.int64)
        s, i = index.search(vecs[rows], k + 1, block=batch_size)
        sims[rows], idx[rows] = _drop_self(s, i, rows, k)
    return sims, idx


def recall_at_k(approx_ids: npt.ArrayLike, exact_ids: npt.ArrayLike) -> float:
    """Fraction of the exact neighbours that the approximate search found.

    Parameters
    ----------
    approx_ids : array_like of int, shape (Q, k')
        Approximate results (ids or rows; ``-1`` = missing).
    exact_ids : array_like of int, shape (Q, k)
        Exact results; ``-1`` entries are not counted.

    Returns
    -------
    float
        In ``[0, 1]``; higher is better. 1.0 when there is nothing to find.

    Raises
    ------
    ValueError
        If the two have different numbers of rows.
    """
    approx = np.asarray(approx_ids, dtype=np.int64)
    exact = np.asarray(exact_ids, dtype=np.int64)
    if approx.ndim != 2 or exact.ndim != 2 or len(approx) != len(exact):
        raise ValueError(
            f"expected (Q, k) arrays with equal Q, got {approx.shape} and {exact.shape}"
        )
    found = 0
    total = 0
    step = max(1, 2**22 // max(1, approx.shape[1] * exact.shape[1]))
    for start in range(0, len(exact), step):
        e = exact[start : start + step]
        a = approx[start : start + step]
        valid = e >= 0
        hit = (e[:, :, None] == a[:, None, :]).any(axis=2) & valid
        found += int(hit.sum())
        total += int(valid.sum())
    return found / total if total else 1.0
