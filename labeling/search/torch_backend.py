"""Exact cosine k-nearest neighbours by blockwise matrix products in torch.

The search behind `labeling.search.index.NeighbourIndex` on a CUDA machine without faiss's GPU build
(and, in tests, on the CPU): queries and base vectors are taken a block at a time, so memory stays
bounded whatever the sizes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

DEFAULT_BLOCK = 4096
"""Queries per block: bounds the temporary memory of one search call."""

DEFAULT_BASE_BLOCK = 65_536
"""Base vectors per block in `torch_knn`: a (4096, 65536) float32 block is 1 GiB."""


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def torch_knn(
    base: npt.ArrayLike | torch.Tensor,
    queries: npt.ArrayLike | torch.Tensor,
    k: int,
    *,
    block: int = DEFAULT_BLOCK,
    base_block: int = DEFAULT_BASE_BLOCK,
    device: str | torch.device | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Exact cosine k-nearest neighbours by blockwise matrix products in torch.

    Queries are processed ``block`` at a time against ``base_block`` base rows
    at a time; a running top-``k`` is merged across base blocks, so memory is
    bounded by ``block * base_block`` similarities whatever the sizes. Runs on
    whichever device holds ``base`` (or ``device``), CPU included.

    Parameters
    ----------
    base : array_like or torch.Tensor, shape (N, D)
        Vectors searched. Normalised block by block (zero rows stay zero).
    queries : array_like or torch.Tensor, shape (Q, D)
        Query vectors, normalised the same way.
    k : int
        Neighbours per query.
    block : int, optional
        Queries per block.
    base_block : int, optional
        Base rows per block.
    device : str or torch.device, optional
        Device to compute on. Defaults to ``base``'s device when it is a
        tensor, else the CPU.

    Returns
    -------
    sims : numpy.ndarray of float32, shape (Q, k)
        Cosine similarities, best first; ``-inf`` where ``k > N``.
    idx : numpy.ndarray of int64, shape (Q, k)
        Row positions in ``base``; ``-1`` where ``k > N``.

    Raises
    ------
    ValueError
        If shapes disagree or ``k``, ``block`` or ``base_block`` is not positive.
    """
    k = _check_k(k)
    if block < 1 or base_block < 1:
        raise ValueError("block and base_block must be positive")
    if device is None:
        device = base.device if isinstance(base, torch.Tensor) else torch.device("cpu")
    base_t = torch.as_tensor(base, dtype=torch.float32, device=device)
    queries_t = torch.as_tensor(queries, dtype=torch.float32)
    if base_t.ndim != 2 or queries_t.ndim != 2 or base_t.shape[1] != queries_t.shape[1]:
        raise ValueError(
            f"base (N, D) and queries (Q, D) must share D, got "
            f"{tuple(base_t.shape)} and {tuple(queries_t.shape)}"
        )
    n_base, n_queries = base_t.shape[0], queries_t.shape[0]
    sims = np.full((n_queries, k), -np.inf, dtype=np.float32)
    idx = np.full((n_queries, k), -1, dtype=np.int64)
    kk = min(k, n_base)
    if kk == 0 or n_queries == 0:
        return sims, idx
    with torch.no_grad():
        for q0 in range(0, n_queries, block):
            q = torch.nn.functional.normalize(
                queries_t[q0 : q0 + block].to(device), dim=1
            )
            best_s = torch.empty((q.shape[0], 0), dtype=torch.float32, device=device)
            best_i = torch.empty((q.shape[0], 0), dtype=torch.int64, device=device)
            for b0 in range(0, n_base, base_block):
                b = torch.nn.functional.normalize(base_t[b0 : b0 + base_block], dim=1)
                s = q @ b.T  # (q, b) similarities of this block
                s_top, i_top = torch.topk(s, min(kk, s.shape[1]), dim=1)
                cand_s = torch.cat([best_s, s_top], dim=1)
                cand_i = torch.cat([best_i, i_top + b0], dim=1)
                best_s, pos = torch.topk(cand_s, min(kk, cand_s.shape[1]), dim=1)
                best_i = torch.gather(cand_i, 1, pos)
            sims[q0 : q0 + q.shape[0], :kk] = best_s.cpu().numpy()
            idx[q0 : q0 + q.shape[0], :kk] = best_i.cpu().numpy()
    return sims, idx



class _TorchBackend:
    """Exact search with `torch_knn` on a CUDA (or, in tests, CPU) device."""

    kind = "flat"
    on_gpu = True

    def __init__(self, vectors: npt.NDArray[np.float32], *, device: torch.device) -> None:
        self.device = device
        self.base = torch.as_tensor(vectors, device=device)

    def add(self, vectors: npt.NDArray[np.float32]) -> None:
        self.base = torch.cat([self.base, torch.as_tensor(vectors, device=self.device)])

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        return torch_knn(self.base, queries, k, block=len(queries) or 1)
