"""A crash-safe, append-friendly store of float32 vectors keyed by int64 item ids.

One store holds the vectors of one backbone fingerprint, in one directory::

    meta.json                 key, dim, store uid, current generation, row count, last change
    ids.<gen>.npy             int64 (N,) item ids, row-aligned with
    vectors.<gen>.npy         float32 (N, dim), memory-mappable
    chunk-<seq>-<rows>.npz    appended batches not yet merged (``ids``, ``vectors``)
    .lock                     advisory lock file

Why it is shaped like this:

- Appends are small and frequent (one per embedding batch), so each goes to its own chunk
  file, written to a temporary name, flushed and renamed: a crash loses at most the batch
  being written, and a leftover ``*.tmp`` is never read.
- :meth:`VectorStore.compact` merges the base and the chunks into a new *generation* of
  ``ids``/``vectors`` files and then switches ``meta.json`` to it with one atomic rename. Two
  files cannot be replaced atomically together, so each generation has its own names; the
  switch is the single rename of ``meta.json``.
- Writers take an exclusive lock and readers a shared one while they open files, so a reader
  never pairs the ids of one generation with the vectors of another. A reader's memory map
  stays valid after a later compaction deletes the file (POSIX keeps the data until unmapped).
- :attr:`VectorStore.version` is ``<key>-<uid>-<n>`` where ``n`` counts content changes; it
  changes on every add or effective remove and never on a compaction, so caches keyed by it
  (kNN graphs, maps) survive compactions.

Row order: a new id is appended at the end; writing an existing id again drops its old row
and appends the new one.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import numpy.typing as npt

from storage.vector_files import atomic_write, atomic_write_matrix, copy_rows

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_CHUNKS = 256
"""Chunks kept before an add merges them: bounds the files a reader opens for :meth:`has`."""
MIN_COMPACT_ROWS = 4096
"""Chunk rows that trigger a merge once they also reach the base size. Growing the threshold
with the base keeps the total copying of a long embedding run linear in its size."""

_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_CHUNK = re.compile(r"^chunk-(\d+)-(\d+)\.npz$")
_BASE = re.compile(r"^(?:ids|vectors)\.(\d+)\.npy$")


class VectorStoreError(ValueError):
    """The store's files are inconsistent or belong to another key or dimension."""


class VectorStore:
    """Vectors of one backbone fingerprint, row-aligned with int64 item ids.

    Parameters
    ----------
    directory : str or Path
        The store's own directory; created when missing.
    key : str
        Backbone fingerprint the vectors belong to (letters, digits, ``_``, ``.``, ``-``).
        Reopening a directory with another key or dim raises :class:`VectorStoreError`.
    dim : int
        Vector length.
    max_chunks : int, optional
        Merge appended chunks once there are this many.

    Notes
    -----
    Safe for several processes at once: writers serialise on a lock file; readers never see a
    half-written file.
    """

    def __init__(self, directory: str | os.PathLike[str], key: str, dim: int, *,
                 max_chunks: int = MAX_CHUNKS) -> None:
        if not _KEY.match(key):
            raise ValueError(f"vector store key must be 1-200 of [A-Za-z0-9_.-], got {key!r}")
        if int(dim) <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
        self.path = Path(directory)
        self.key = key
        self.dim = int(dim)
        self.max_chunks = max_chunks
        self.path.mkdir(parents=True, exist_ok=True)
        with self._lock(shared=False):
            meta_file = self.path / "meta.json"
            if meta_file.exists():
                meta = self._read_meta()
                if meta["key"] != key or meta["dim"] != self.dim:
                    raise VectorStoreError(
                        f"{self.path} holds vectors of {meta['key']} ({meta['dim']}-d), "
                        f"not {key} ({self.dim}-d)"
                    )
            else:
                self._write_meta({"format": FORMAT_VERSION, "key": key, "dim": self.dim,
                                  "uid": uuid.uuid4().hex[:12], "generation": 0, "rows": 0,
                                  "seq": 0})

    def __repr__(self) -> str:
        return f"VectorStore({str(self.path)!r}, key={self.key!r}, dim={self.dim})"

    def __len__(self) -> int:
        return len(self.ids())

    # ------------------------------------------------------------------ reading

    @property
    def version(self) -> str:
        """``<key>-<uid>-<n>``: changes whenever the stored content changes."""
        with self._lock(shared=True):
            meta = self._read_meta()
            chunks = self._live_chunks(meta)
        return f"{self.key}-{meta['uid']}-{_last_seq(meta, chunks)}"

    def ids(self) -> npt.NDArray[np.int64]:
        """All stored item ids, in row order of :meth:`matrix`.

        Returns
        -------
        ndarray of int64, shape (N,)
        """
        with self._lock(shared=True):
            meta = self._read_meta()
            parts = [self._base_ids(meta)] + [self._chunk_ids(p) for _, _, p in self._live_chunks(meta)]
        all_ids = np.concatenate(parts)
        return all_ids[_latest_rows(all_ids)]

    def has(self, ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which of ``ids`` have a stored vector.

        Parameters
        ----------
        ids : array-like of int, shape (M,)

        Returns
        -------
        ndarray of bool, shape (M,)
        """
        query = _as_ids(ids, allow_duplicates=True)
        return np.isin(query, self.ids())

    def matrix(self, *, mmap: bool = True) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """All ids and vectors, row-aligned; merges pending chunks first.

        Parameters
        ----------
        mmap : bool, default True
            Return the vectors as a read-only memory map instead of loading them.

        Returns
        -------
        ids : ndarray of int64, shape (N,), read-only
        vectors : ndarray of float32, shape (N, dim); read-only when ``mmap``
        """
        with self._lock(shared=True):
            meta = self._read_meta()
            if not self._live_chunks(meta):
                return self._open_base(meta, mmap=mmap)
        with self._lock(shared=False):
            meta, _ = self._compact_locked(self._read_meta())
            return self._open_base(meta, mmap=mmap)

    def get(self, ids: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Vectors of ``ids``, in the order asked.

        Parameters
        ----------
        ids : array-like of int, shape (M,)

        Returns
        -------
        ndarray of float32, shape (M, dim)

        Raises
        ------
        KeyError
            Some ids have no vector; the message names the first of them.
        """
        query = _as_ids(ids, allow_duplicates=True)
        stored, vectors = self.matrix(mmap=True)
        order = np.argsort(stored, kind="stable")
        pos = np.searchsorted(stored, query, sorter=order)
        pos = np.minimum(pos, max(len(stored) - 1, 0))
        found = (stored[order[pos]] == query) if len(stored) else np.zeros(len(query), bool)
        if not found.all():
            missing = query[~found]
            raise KeyError(f"{len(missing)} ids have no vector in {self.key}: "
                           f"{', '.join(map(str, missing[:10]))}{' …' if len(missing) > 10 else ''}")
        rows = order[pos]
        return np.asarray(vectors[rows], dtype=np.float32) if len(rows) else np.zeros((0, self.dim), np.float32)

    # ------------------------------------------------------------------ writing

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Store vectors; an id already present gets the new vector.

        Parameters
        ----------
        ids : array-like of int, shape (M,)
            Unique within the call.
        vectors : array-like of float, shape (M, dim)
            Finite; stored as float32.

        Raises
        ------
        ValueError
            Wrong shape or dim, non-float or non-finite values, duplicate ids.
        """
        ids_arr = _as_ids(ids, allow_duplicates=False)
        vec = np.asarray(vectors)
        if vec.ndim != 2 or vec.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (M, {self.dim}), got {vec.shape}")
        if len(vec) != len(ids_arr):
            raise ValueError(f"{len(ids_arr)} ids but {len(vec)} vectors")
        if not np.issubdtype(vec.dtype, np.floating):
            raise ValueError(f"vectors must be floating point, got {vec.dtype}")
        with np.errstate(over="ignore"):  # values beyond float32 become inf, rejected below
            vec = np.ascontiguousarray(vec, dtype=np.float32)
        bad = ~np.isfinite(vec).all(axis=1)
        if bad.any():
            raise ValueError(f"{int(bad.sum())} vectors have NaN or inf values (ids "
                             f"{', '.join(map(str, ids_arr[bad][:5]))})")
        if len(ids_arr) == 0:
            return
        with self._lock(shared=False):
            meta = self._read_meta()
            chunks = self._live_chunks(meta)
            seq = _last_seq(meta, chunks) + 1
            target = self.path / f"chunk-{seq:09d}-{len(ids_arr)}.npz"
            atomic_write(target, lambda fh: np.savez(fh, ids=ids_arr, vectors=vec))
            chunks.append((seq, len(ids_arr), target))
            pending = sum(rows for _, rows, _ in chunks)
            if len(chunks) >= self.max_chunks or pending >= max(meta["rows"], MIN_COMPACT_ROWS):
                self._compact_locked(meta)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Delete the vectors of ``ids``; unknown ids are ignored.

        Returns
        -------
        int
            How many vectors were removed.
        """
        drop = _as_ids(ids, allow_duplicates=True)
        if len(drop) == 0:
            return 0
        with self._lock(shared=False):
            _, removed = self._compact_locked(self._read_meta(), drop=drop)
        return removed

    def compact(self) -> None:
        """Merge pending chunks into a new generation of the base files."""
        with self._lock(shared=False):
            self._compact_locked(self._read_meta())

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _lock(self, *, shared: bool) -> Iterator[None]:
        with open(self.path / ".lock", "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            else:  # byte-range lock, exclusive only; LK_LOCK retries for about 10 s
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                else:
                    fh.seek(0)
                    msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)

    def _read_meta(self) -> dict:
        path = self.path / "meta.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise VectorStoreError(f"cannot read {path}: {exc}") from exc
        if meta.get("format") != FORMAT_VERSION:
            raise VectorStoreError(f"{path} has format {meta.get('format')}, expected {FORMAT_VERSION}")
        return meta

    def _write_meta(self, meta: dict) -> None:
        data = json.dumps(meta, indent=1, sort_keys=True).encode("utf-8")
        atomic_write(self.path / "meta.json", lambda fh: fh.write(data))

    def _live_chunks(self, meta: dict) -> list[tuple[int, int, Path]]:
        """Chunks newer than the base, as (seq, rows, path), oldest first."""
        found = []
        for entry in os.scandir(self.path):
            m = _CHUNK.match(entry.name)
            if m and int(m.group(1)) > meta["seq"]:
                found.append((int(m.group(1)), int(m.group(2)), Path(entry.path)))
        return sorted(found)

    def _base_files(self, generation: int) -> tuple[Path, Path]:
        return self.path / f"ids.{generation:06d}.npy", self.path / f"vectors.{generation:06d}.npy"

    def _base_ids(self, meta: dict) -> np.ndarray:
        if meta["rows"] == 0:
            return np.zeros(0, np.int64)
        ids = np.load(self._base_files(meta["generation"])[0])
        if ids.shape != (meta["rows"],):
            raise VectorStoreError(f"{self.path}: ids file has shape {ids.shape}, meta says {meta['rows']} rows")
        return ids

    @staticmethod
    def _chunk_ids(path: Path) -> np.ndarray:
        with np.load(path) as z:
            return z["ids"]

    def _open_base(self, meta: dict, *, mmap: bool) -> tuple[np.ndarray, np.ndarray]:
        ids = self._base_ids(meta)
        if meta["rows"] == 0:
            vectors = np.zeros((0, self.dim), np.float32)
        else:
            vectors = np.load(self._base_files(meta["generation"])[1], mmap_mode="r" if mmap else None)
            if vectors.shape != (meta["rows"], self.dim) or vectors.dtype != np.float32:
                raise VectorStoreError(f"{self.path}: vectors file has shape {vectors.shape} "
                                       f"{vectors.dtype}, expected ({meta['rows']}, {self.dim}) float32")
        ids.flags.writeable = False
        if mmap:
            vectors.flags.writeable = False
        return ids, vectors

    def _compact_locked(self, meta: dict, *, drop: np.ndarray | None = None) -> tuple[dict, int]:
        """Merge base + live chunks (minus ``drop``) into a new generation.

        The caller holds the write lock. Returns the new meta and how many rows were dropped.
        """
        chunks = self._live_chunks(meta)
        base_ids = self._base_ids(meta)
        chunk_ids, chunk_vecs = [], []
        for _, _, path in chunks:
            with np.load(path) as z:
                chunk_ids.append(z["ids"])
                chunk_vecs.append(z["vectors"])
        all_ids = np.concatenate([base_ids] + chunk_ids)
        keep = _latest_rows(all_ids)
        removed = 0
        if drop is not None:
            dropped = np.isin(all_ids[keep], drop)
            removed = int(dropped.sum())
            keep = keep[~dropped]
        if not chunks and removed == 0:
            self._cleanup(meta)
            return meta, 0
        n_base = len(base_ids)
        gen = meta["generation"] + 1
        ids_file, vec_file = self._base_files(gen)
        new_ids = all_ids[keep]
        atomic_write(ids_file, lambda fh: np.save(fh, new_ids))
        from_base = keep[keep < n_base]
        from_chunks = keep[keep >= n_base] - n_base
        old_vectors = (np.load(self._base_files(meta["generation"])[1], mmap_mode="r")
                       if n_base else np.zeros((0, self.dim), np.float32))
        new_chunk_vecs = (np.concatenate(chunk_vecs)[from_chunks] if chunk_vecs
                          else np.zeros((0, self.dim), np.float32))
        atomic_write_matrix(vec_file, (len(keep), self.dim),
                            copy_rows(old_vectors, from_base, new_chunk_vecs))
        del old_vectors
        seq = _last_seq(meta, chunks) + (1 if removed else 0)
        meta = dict(meta, generation=gen, rows=len(keep), seq=seq)
        self._write_meta(meta)
        self._cleanup(meta)
        LOG.debug("compacted %s: %d rows, %d chunks merged, %d removed", self.path, len(keep),
                  len(chunks), removed)
        return meta, removed

    def _cleanup(self, meta: dict) -> None:
        """Delete merged chunks, older generations and leftovers of crashed writers."""
        current = set(self._base_files(meta["generation"]))
        for entry in os.scandir(self.path):
            name = entry.name
            chunk = _CHUNK.match(name)
            base = _BASE.match(name)
            stale = (name.endswith(".tmp") or (chunk is not None and int(chunk.group(1)) <= meta["seq"])
                     or (base is not None and Path(entry.path) not in current))
            if stale:
                try:
                    os.unlink(entry.path)
                except OSError as exc:  # e.g. still memory-mapped on Windows; retried next time
                    LOG.debug("could not delete %s: %s", entry.path, exc)


def _last_seq(meta: dict, chunks: list[tuple[int, int, Path]]) -> int:
    return max([meta["seq"]] + [seq for seq, _, _ in chunks])


def _latest_rows(all_ids: np.ndarray) -> np.ndarray:
    """Sorted positions of the last occurrence of each id."""
    if len(all_ids) == 0:
        return np.zeros(0, np.int64)
    _, first_in_reversed = np.unique(all_ids[::-1], return_index=True)
    return np.sort(len(all_ids) - 1 - first_in_reversed)


def _as_ids(ids: npt.ArrayLike, *, allow_duplicates: bool) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if not allow_duplicates:
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"duplicate ids in one call: {', '.join(map(str, uniq[counts > 1][:5]))}")
    return arr
