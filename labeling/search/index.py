"""`NeighbourIndex`: cosine-similarity search over items, keyed by item id.

Similarity is the inner product of L2-normalised vectors (`labeling.search.neighbours.normalize`),
so it lies in ``[-1, 1]`` and higher means closer. Results are *item ids*, never row positions.
Small collections use an exact flat faiss index; large ones an approximate HNSW (or IVF) index.
On CUDA machines the exact search runs on the GPU: through faiss when its GPU build is installed,
otherwise through a blockwise matrix product in torch (`labeling.search.torch_backend`).

The backends (`labeling.search.faiss_backend`, `labeling.search.torch_backend`) search over row
positions; `NeighbourIndex` maps them to item ids and handles additions and removals. The kNN
graph built on top of it is in `labeling.search.neighbours`.
"""

from __future__ import annotations

import logging
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt
import torch

from labeling.device import DeviceUnavailableError
from labeling.search.faiss_backend import _FaissBackend
from labeling.search.neighbours import _drop_self, normalize
from labeling.search.torch_backend import DEFAULT_BLOCK, _check_k, _TorchBackend

__all__ = [
    "COMPACT_FRACTION",
    "EXACT_THRESHOLD",
    "Device",
    "Kind",
    "NeighbourIndex",
    "UnknownItemError",
]

LOG = logging.getLogger(__name__)

EXACT_THRESHOLD = 50_000
"""Collections smaller than this use exact (flat) search when ``kind="auto"``.

Exact search is fast enough below it: faiss ``IndexFlatIP`` answers 100 queries
against 20,000 x 512 vectors in about 0.09 s on two CPU cores, and exact results
need no build time and no recall tuning. Above it HNSW is used on the CPU.
"""

COMPACT_FRACTION = 0.25
"""Approximate indexes are rebuilt once this fraction of their rows is removed.

HNSW cannot delete vectors, so removed items are filtered out at search time;
filtering many of them costs recall and time, hence the rebuild.
"""

Kind = Literal["auto", "flat", "hnsw", "ivf"]
Device = Literal["auto", "cpu", "cuda"]
_KINDS = ("auto", "flat", "hnsw", "ivf")
_DEVICES = ("auto", "cpu", "cuda")


class UnknownItemError(KeyError):
    """Raised when item ids are not (or no longer) in a `NeighbourIndex`."""


# -- Input checks --
def _as_vectors(vectors: npt.ArrayLike, name: str = "vectors") -> npt.NDArray[np.float32]:
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = normalize(arr)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def _as_ids(item_ids: npt.ArrayLike, name: str = "item_ids") -> npt.NDArray[np.int64]:
    arr = np.asarray(item_ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


# -- Backends --
def _torch_cuda_available() -> bool:
    return torch.cuda.is_available()


def _torch_cuda_device() -> torch.device:
    return torch.device("cuda")


# -- The index --
class NeighbourIndex:
    """Cosine-similarity nearest-neighbour search over items, keyed by item id.

    Build one with `NeighbourIndex.build`. Results are item ids (int64) and
    cosine similarities; ``-1`` and ``-inf`` mark missing results (fewer than
    ``k`` items, or filtered out).

    Exact indexes hold a normalised copy of the vectors in faiss (or on the
    GPU) and one on the host for `search_ids`, so budget about twice the size
    of the float32 vectors.

    Searches may run from several threads; `add` and `remove` must not run
    while anything else uses the index.

    Attributes
    ----------
    kind : {"flat", "hnsw", "ivf"}
        The index type in use (``"auto"`` resolved).
    backend : {"faiss-cpu", "faiss-gpu", "torch"}
        Where search runs.
    """

    def __init__(
        self,
        vectors: npt.NDArray[np.float32],
        item_ids: npt.NDArray[np.int64],
        backend: _FaissBackend | _TorchBackend,
        backend_name: str,
        rebuild_options: dict[str, object],
    ) -> None:
        # Use `build`; this is its plumbing.
        self._vectors = vectors
        self._ids = item_ids
        self._alive = np.ones(len(item_ids), dtype=bool)
        self._backend = backend
        self.backend = backend_name
        self._rebuild_options = rebuild_options
        self._reindex()

    # -- construction ------------------------------------------------------- #
    @classmethod
    def build(
        cls,
        vectors: npt.ArrayLike,
        item_ids: npt.ArrayLike,
        *,
        kind: Kind = "auto",
        exact_threshold: int = EXACT_THRESHOLD,
        device: Device = "auto",
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 80,
        nlist: int | None = None,
        nprobe: int = 32,
        seed: int = 0,
    ) -> "NeighbourIndex":
        """Build an index over ``vectors`` keyed by ``item_ids``.

        Parameters
        ----------
        vectors : array_like, shape (N, D)
            Embeddings (any scale: they are L2-normalised here). Not modified.
        item_ids : array_like of int, shape (N,)
            Unique non-negative item ids, row-aligned with ``vectors``.
        kind : {"auto", "flat", "hnsw", "ivf"}, optional
            ``"auto"`` picks exact flat search when a GPU is used or when
            ``N < exact_threshold``, else HNSW.
        exact_threshold : int, optional
            Size below which ``kind="auto"`` stays exact; see `EXACT_THRESHOLD`.
        device : {"auto", "cpu", "cuda"}, optional
            ``"auto"`` uses a GPU for flat search when one is present: the faiss
            GPU index when faiss has GPUs, else exact search in torch on CUDA.
            HNSW and IVF run on the CPU.
        hnsw_m : int, optional
            HNSW graph degree; more is better recall and more memory.
        ef_search : int, optional
            HNSW search breadth; more is better recall and slower search.
        ef_construction : int, optional
            HNSW build breadth.
        nlist : int, optional
            IVF lists; default about ``4 * sqrt(N)``.
        nprobe : int, optional
            IVF lists visited per query.
        seed : int, optional
            Seed for IVF training (sampling and k-means).

        Returns
        -------
        NeighbourIndex

        Raises
        ------
        ValueError
            On bad shapes, non-finite vectors, duplicate or negative ids, or an
            unknown ``kind`` / ``device``; or ``device="cuda"`` with HNSW/IVF.
        DeviceUnavailableError
            If ``device="cuda"`` and neither faiss nor torch sees a GPU.
        """
        vecs = _as_vectors(vectors)
        ids = _as_ids(item_ids)
        if len(ids) != len(vecs):
            raise ValueError(f"{len(vecs)} vectors but {len(ids)} item ids")
        if len(ids) and ids.min() < 0:
            raise ValueError("item ids must be non-negative (-1 marks missing results)")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("item ids must be unique")
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
        resolved, backend_name = _select_backend(
            kind, len(vecs), device=device, exact_threshold=exact_threshold
        )
        options: dict[str, object] = dict(
            kind=resolved,
            backend_name=backend_name,
            hnsw_m=hnsw_m,
            ef_search=ef_search,
            ef_construction=ef_construction,
            nlist=nlist,
            nprobe=nprobe,
            seed=seed,
        )
        backend = _make_backend(vecs, **options)
        LOG.info(
            "built %s neighbour index on %s: %d x %d", resolved, backend_name, *vecs.shape
        )
        return cls(vecs, ids, backend, backend_name, options)

    # -- bookkeeping -------------------------------------------------------- #
    def _reindex(self) -> None:
        self._order = np.argsort(self._ids, kind="stable")
        self._sorted_ids = self._ids[self._order]

    def _rows_of(self, item_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        pos = np.searchsorted(self._sorted_ids, item_ids)
        pos = np.minimum(pos, max(len(self._sorted_ids) - 1, 0))
        if len(self._sorted_ids) == 0:
            found = np.zeros(len(item_ids), dtype=bool)
            rows = np.zeros(len(item_ids), dtype=np.int64)
        else:
            found = self._sorted_ids[pos] == item_ids
            rows = self._order[pos]
            found &= self._alive[rows]
        if not found.all():
            missing = item_ids[~found]
            raise UnknownItemError(
                f"{len(missing)} item id(s) not in the index, e.g. {missing[:5].tolist()}"
            )
        return rows

    @property
    def kind(self) -> str:
        """The index type in use: ``"flat"``, ``"hnsw"`` or ``"ivf"``."""
        return self._backend.kind

    @property
    def item_ids(self) -> npt.NDArray[np.int64]:
        """Ids of the items in the index, shape (len(self),), in insertion order."""
        return self._ids[self._alive]

    def __len__(self) -> int:
        return int(self._alive.sum())

    def __repr__(self) -> str:
        return (
            f"NeighbourIndex(kind={self.kind!r}, backend={self.backend!r}, "
            f"n={len(self)}, dim={self._vectors.shape[1]})"
        )

    def vectors_of(self, item_ids: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Normalised vectors of ``item_ids``, shape (len(item_ids), D).

        Raises
        ------
        UnknownItemError
            If an id is not in the index.
        """
        return self._vectors[self._rows_of(_as_ids(item_ids))]

    # -- queries ------------------------------------------------------------ #
    def search(
        self, queries: npt.ArrayLike, k: int, *, block: int = DEFAULT_BLOCK
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Find the ``k`` most similar items to each query vector.

        Parameters
        ----------
        queries : array_like, shape (Q, D)
            Query embeddings (normalised here).
        k : int
            Results per query.
        block : int, optional
            Queries searched per call to the backend.

        Returns
        -------
        sims : numpy.ndarray of float32, shape (Q, k)
            Cosine similarities, best first; ``-inf`` where missing.
        ids : numpy.ndarray of int64, shape (Q, k)
            Item ids; ``-1`` where missing.

        Raises
        ------
        ValueError
            If ``queries`` do not have the index's dimension, or ``k < 1``.
        """
        k = _check_k(k)
        q = _as_vectors(queries, "queries")
        if q.shape[1] != self._vectors.shape[1]:
            raise ValueError(
                f"queries have dimension {q.shape[1]}, index has {self._vectors.shape[1]}"
            )
        sims = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        if len(self) == 0:
            return sims, ids
        for start in range(0, len(q), block):
            s, rows = self._backend.search(q[start : start + block], k)
            found = rows >= 0
            sims[start : start + block] = np.where(found, s, -np.inf)
            ids[start : start + block] = np.where(found, self._ids[np.where(found, rows, 0)], -1)
        return sims, ids

    def search_ids(
        self,
        item_ids: npt.ArrayLike,
        k: int,
        *,
        exclude_self: bool = True,
        block: int = DEFAULT_BLOCK,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Find the ``k`` most similar items to items already in the index.

        Parameters
        ----------
        item_ids : array_like of int, shape (Q,)
            Items to query with.
        k : int
            Results per item.
        exclude_self : bool, optional
            Leave each item out of its own results (an exact duplicate of it
            is still returned).
        block : int, optional
            Queries searched per call to the backend.

        Returns
        -------
        sims : numpy.ndarray of float32, shape (Q, k)
        ids : numpy.ndarray of int64, shape (Q, k)
            As in `search`.

        Raises
        ------
        UnknownItemError
            If an id is not in the index.
        """
        k = _check_k(k)
        query_ids = _as_ids(item_ids)
        queries = self.vectors_of(query_ids)
        if not exclude_self:
            return self.search(queries, k, block=block)
        sims, ids = self.search(queries, k + 1, block=block)
        return _drop_self(sims, ids, query_ids, k)

    # -- updates ------------------------------------------------------------ #
    def add(self, vectors: npt.ArrayLike, item_ids: npt.ArrayLike) -> None:
        """Add items. The index kind is kept even if the size crosses a threshold.

        Raises
        ------
        ValueError
            On bad shapes, or ids that are negative or already present.
        """
        vecs = _as_vectors(vectors)
        ids = _as_ids(item_ids)
        if len(vecs) != len(ids) or vecs.shape[1] != self._vectors.shape[1]:
            raise ValueError(
                f"expected ({len(ids)}, {self._vectors.shape[1]}) vectors, got {vecs.shape}"
            )
        if len(ids) and ids.min() < 0:
            raise ValueError("item ids must be non-negative")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self._ids).any():
            raise ValueError("item ids must be unique and not already in the index")
        self._backend.add(vecs)
        self._vectors = np.concatenate([self._vectors, vecs])
        self._ids = np.concatenate([self._ids, ids])
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        if not self._alive.all():
            self._backend.set_alive(self._alive)
        self._reindex()

    def remove(self, item_ids: npt.ArrayLike) -> None:
        """Remove items; the ids of all other items stay valid.

        Exact indexes are compacted at once. HNSW and IVF hide removed rows at
        search time and are rebuilt when `COMPACT_FRACTION` of rows is removed.

        Raises
        ------
        UnknownItemError
            If an id is not in the index (nothing is removed then).
        """
        ids = np.unique(_as_ids(item_ids))
        rows = self._rows_of(ids)
        self._alive[rows] = False
        dead = 1.0 - self._alive.mean() if len(self._alive) else 0.0
        if self.kind == "flat" or dead >= COMPACT_FRACTION:
            self._compact()
        else:
            self._backend.set_alive(self._alive)
        LOG.debug("removed %d items, %d left", len(ids), len(self))

    def _compact(self) -> None:
        self._vectors = self._vectors[self._alive]
        self._ids = self._ids[self._alive]
        self._alive = np.ones(len(self._ids), dtype=bool)
        options = dict(self._rebuild_options)
        if options["kind"] == "ivf" and options["nlist"] is None:
            # Keep the list count chosen at build time.
            options["nlist"] = self._backend.index.nlist
        if options["kind"] == "ivf" and len(self._ids) < options["nlist"]:
            options["kind"] = "flat"
        self._backend = _make_backend(self._vectors, **options)
        self._reindex()


def _select_backend(
    kind: str, n: int, *, device: str, exact_threshold: int
) -> tuple[str, str]:
    """Resolve ``kind="auto"`` and the device into (kind, backend name)."""
    faiss_gpu = faiss.get_num_gpus() > 0
    torch_gpu = (not faiss_gpu) and _torch_cuda_available()
    has_gpu = faiss_gpu or torch_gpu
    if device == "cuda" and not has_gpu:
        raise DeviceUnavailableError(
            "device='cuda' but neither faiss nor torch sees a CUDA GPU; use device='cpu'"
        )
    use_gpu = device == "cuda" or (device == "auto" and has_gpu)
    if kind == "auto":
        if use_gpu:
            kind = "flat"  # exact search on a GPU beats approximate search on a CPU
        else:
            kind = "flat" if n < exact_threshold else "hnsw"
    if kind != "flat":
        if device == "cuda":
            raise ValueError(f"kind={kind!r} runs on the CPU only; use kind='flat' on CUDA")
        return kind, "faiss-cpu"
    if use_gpu:
        return kind, "faiss-gpu" if faiss_gpu else "torch"
    return kind, "faiss-cpu"


def _make_backend(
    vectors: npt.NDArray[np.float32], *, kind: str, backend_name: str, **options: object
) -> _FaissBackend | _TorchBackend:
    if backend_name == "torch":
        return _TorchBackend(vectors, device=_torch_cuda_device())
    return _FaissBackend(vectors, kind=kind, on_gpu=backend_name == "faiss-gpu", **options)
