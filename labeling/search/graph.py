"""The kNN graph of a vector version: each row's ``k`` nearest rows and their cosine similarities.

One object per vector version, shared by propagation, typicality and the neighbourhood view. What is
derived from a graph (the propagation operator) is kept on the graph itself (:meth:`KnnGraph.derived`),
so it lives exactly as long as the graph and no module holds it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import numpy as np


class KnnGraph:
    """``sims (N, k)`` float32 and ``idx (N, k)`` row indices (self excluded, -1 where absent), read-only.

    Unpacks like the ``(sims, idx)`` pair it replaces: ``sims, idx = graph`` and ``graph[0]``.
    """

    __slots__ = ("sims", "idx", "item_ids", "version", "_derived", "_lock")

    def __init__(self, sims: np.ndarray, idx: np.ndarray, *, item_ids: np.ndarray | None = None,
                 version: str = "") -> None:
        if sims.shape != idx.shape or sims.ndim != 2:
            raise ValueError(f"sims and idx must be (N, k) of one shape; got {sims.shape} and {idx.shape}")
        for a in (sims, idx):
            a.flags.writeable = False
        self.sims, self.idx = sims, idx
        self.item_ids = item_ids
        self.version = version
        self._derived: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.sims, self.idx))

    def __getitem__(self, i: int) -> np.ndarray:
        return (self.sims, self.idx)[i]

    def __len__(self) -> int:
        return 2

    @property
    def n(self) -> int:
        return int(self.sims.shape[0])

    def derived(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """What ``build()`` makes of this graph, made once per ``key`` and kept while the graph lives."""
        with self._lock:
            if key in self._derived:
                return self._derived[key]
        value = build()
        with self._lock:
            return self._derived.setdefault(key, value)

    def __repr__(self) -> str:
        return f"KnnGraph(n={self.n}, k={self.sims.shape[1]}, version={self.version!r})"
