"""The faiss backend of `labeling.search.index.NeighbourIndex`: flat, HNSW or IVF, CPU or GPU.

It searches over row positions, by inner product of the (already normalised) vectors; removed
rows are filtered out at search time (HNSW, IVF) until the index is rebuilt. Mapping rows to item
ids, and choosing between this and the torch backend (`labeling.search.torch_backend`), is
`NeighbourIndex`'s job.
"""

from __future__ import annotations

import faiss
import numpy as np
import numpy.typing as npt

__all__ = ["GPU_MAX_K", "IVF_TRAIN_PER_LIST"]

GPU_MAX_K = 2048
"""Largest ``k`` that faiss GPU indexes accept."""

IVF_TRAIN_PER_LIST = 64
"""Training vectors per IVF list (k-means sample). faiss's own cap is 256, which at 1M x 512
with 2,000 lists makes k-means train on 512k vectors (about 26 TFLOP, many minutes on two
cores); 64 per list keeps the lists as balanced (faiss asks for at least 39) at a quarter of
the cost."""


class _FaissBackend:
    """A faiss index over row positions; removed rows are filtered or compacted."""

    def __init__(
        self,
        vectors: npt.NDArray[np.float32],
        *,
        kind: str,
        on_gpu: bool,
        hnsw_m: int,
        ef_search: int,
        ef_construction: int,
        nlist: int | None,
        nprobe: int,
        seed: int,
    ) -> None:
        self.kind = kind
        self.on_gpu = on_gpu
        self._ef_search = ef_search
        self._nprobe = nprobe
        dim = vectors.shape[1]
        if kind == "flat":
            index: faiss.Index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
        else:  # ivf
            index = self._train_ivf(vectors, nlist=nlist, seed=seed)
            self._nprobe = min(nprobe, index.nlist)
        if on_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(vectors)
        self.index = index
        self._bitmap: npt.NDArray[np.uint8] | None = None
        self._params: faiss.SearchParameters | None = self._make_params(None)

    @staticmethod
    def _train_ivf(
        vectors: npt.NDArray[np.float32], *, nlist: int | None, seed: int
    ) -> faiss.Index:
        n, dim = vectors.shape
        if nlist is None:
            # ~4 sqrt(N) lists, with at least 39 training points per list
            # (faiss warns below that).
            nlist = int(np.clip(4 * np.sqrt(n), 1, max(1, n // 39)))
        if n < nlist:
            raise ValueError(f"IVF with nlist={nlist} needs at least {nlist} vectors, got {n}")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        max_train = IVF_TRAIN_PER_LIST * nlist
        if n > max_train:
            rng = np.random.default_rng(seed)
            train = vectors[np.sort(rng.choice(n, size=max_train, replace=False))]
        else:
            train = vectors
        index.train(train)
        # faiss's Python wrapper keeps `quantizer` alive with `index`.
        return index

    def _make_params(self, sel: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=sel, efSearch=self._ef_search)
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=sel, nprobe=self._nprobe)
        return None

    def set_alive(self, alive: npt.NDArray[np.bool_]) -> None:
        """Search only rows where ``alive`` (approximate kinds only)."""
        # The selector reads this buffer: keep a reference for its lifetime.
        self._bitmap = np.packbits(alive, bitorder="little")
        self._selector = faiss.IDSelectorBitmap(len(alive), faiss.swig_ptr(self._bitmap))
        self._params = self._make_params(self._selector)

    def add(self, vectors: npt.NDArray[np.float32]) -> None:
        self.index.add(vectors)

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        if self.on_gpu and k > GPU_MAX_K:
            raise ValueError(f"faiss GPU search supports k <= {GPU_MAX_K}, got {k}")
        if self._params is None:
            sims, rows = self.index.search(queries, k)
        else:
            sims, rows = self.index.search(queries, k, params=self._params)
        return sims, rows.astype(np.int64, copy=False)
