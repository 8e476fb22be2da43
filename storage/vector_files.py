"""Row blocks and files of :class:`storage.vectors.VectorStore`: copy rows out, write files safely.

- :func:`gather_rows` copies rows out of a (memory-mapped) matrix block by block, releasing the
  pages it read, so a large base file and its copy are never resident together.
- :func:`copy_rows` fills a new matrix from rows of an old one plus a tail, a block at a time.
- :func:`atomic_write` and :func:`atomic_write_matrix` write through a temporary file beside the
  target, flush it to disk and rename it over the target, so a crash never leaves a half file.
"""
from __future__ import annotations

import mmap
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import numpy.typing as npt

__all__ = ["COPY_BLOCK_ROWS", "atomic_write", "atomic_write_matrix", "copy_rows", "gather_rows"]

COPY_BLOCK_ROWS = 65_536
"""Rows copied at a time during a merge, so a large base is never loaded whole."""


def gather_rows(matrix: np.ndarray, rows: npt.ArrayLike, *, block_rows: int = 65_536) -> npt.NDArray[np.float32]:
    """``matrix[rows]`` as a new float32 array, copied block by block.

    When ``matrix`` is a memory map (as `VectorStore.matrix` returns), the pages each block read are
    released from this process after copying it, so the file's pages and the copy are never resident
    together: at 1M x 512 that is 1.9 GiB less at the peak of loading a round's vectors.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), matrix.shape[1]), dtype=np.float32)
    mapped = getattr(matrix, "_mmap", None)
    release = getattr(mapped, "madvise", None) if hasattr(mmap, "MADV_DONTNEED") else None
    for start in range(0, len(rows), block_rows):
        out[start:start + block_rows] = matrix[rows[start:start + block_rows]]
        if release is not None:
            release(mmap.MADV_DONTNEED)  # file-backed and read-only: the pages are re-read if needed
    return out


def copy_rows(old: np.ndarray, rows: np.ndarray, tail: np.ndarray) -> Callable[[np.ndarray], None]:
    def fill(out: np.ndarray) -> None:
        for start in range(0, len(rows), COPY_BLOCK_ROWS):
            block = rows[start:start + COPY_BLOCK_ROWS]
            out[start:start + len(block)] = old[block]
        out[len(rows):] = tail
    return fill


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file, flush it to disk, then rename it over ``path``."""
    tmp = _tmp_name(path)
    done = False
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_matrix(path: Path, shape: tuple[int, int], fill: Callable[[np.ndarray], None]) -> None:
    """Write a float32 ``.npy`` of ``shape`` block by block, then rename it over ``path``."""
    if shape[0] == 0:
        atomic_write(path, lambda fh: np.save(fh, np.zeros(shape, np.float32)))
        return
    tmp = _tmp_name(path)
    done = False
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        fill(out)
        out.flush()
        del out
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
