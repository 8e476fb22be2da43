"""Layouts of the map: PCA at once, UMAP (cuML on a GPU, umap-learn otherwise) in a spawned process,
cached per vector version, and the background builder that computes UMAP without blocking a page.

Layouts are stored as ``.npz`` files in the project's cache folder, keyed by the vector key, the
vector version and the method, and written to a temporary name then renamed, so a reader never sees
half a file. Used by :mod:`labeling.views.projection`; imports ``labeling.embed`` and ``labeling.search``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from labeling.embed.pipeline import ProjectVectors, load_vectors
from labeling.project import Project

LOG = logging.getLogger(__name__)


Layout = npt.NDArray[np.float32]
"""Item coordinates, shape (N, 2), float32."""


METHODS = ("pca", "umap")


UMAP_PCA_DIMS = 50
"""Vectors wider than this are reduced by PCA before UMAP (faster, and it denoises)."""


def pca_2d(vectors: npt.ArrayLike, *, seed: int = 0) -> Layout:
    """Project vectors onto their first two principal components.

    Parameters
    ----------
    vectors : array_like, shape (N, D)
        One row per item.
    seed : int
        Seed of the randomized solver used for large inputs; the result is deterministic.

    Returns
    -------
    ndarray, shape (N, 2), float32
        Coordinates; columns are zero where N or D leave fewer than two components.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, D), got shape {x.shape}")
    n, d = x.shape
    out = np.zeros((n, 2), dtype=np.float32)
    k = min(2, n, d)
    if n < 2 or k == 0:
        return out
    out[:, :k] = PCA(n_components=k, random_state=seed).fit_transform(x)
    return out


def gpu_umap_class():
    """cuML's ``UMAP`` when cuML is installed and torch sees a CUDA GPU, else None."""
    try:
        from cuml.manifold import UMAP
    except Exception:  # not installed, or installed without a usable CUDA runtime
        return None
    try:
        import torch

        return UMAP if torch.cuda.is_available() else None
    except Exception:
        return None


def umap_2d(vectors: npt.ArrayLike, *, n_neighbors: int = 15, seed: int = 0, engine: str = "auto") -> Layout:
    """A UMAP layout of the vectors (cosine metric), seeded.

    Parameters
    ----------
    vectors : array_like, shape (N, D)
        One row per item. When D > 50 they are reduced to 50 dimensions by PCA first.
    n_neighbors : int
        UMAP's neighbourhood size; capped at N - 1.
    seed : int
        ``random_state`` of UMAP (which then runs single-threaded and reproducibly).
    engine : {"auto", "cuml", "umap-learn"}
        ``auto``: cuML's GPU UMAP when it is installed and a GPU is visible (`gpu_umap_class`),
        umap-learn on the CPU otherwise. cuML gets unit-length rows and the euclidean metric, which
        orders neighbours as the cosine metric does.

    Returns
    -------
    ndarray, shape (N, 2), float32
        Coordinates. Fewer than 4 items fall back to :func:`pca_2d` (UMAP needs a graph).
    """
    from sklearn.decomposition import PCA

    if engine not in ("auto", "cuml", "umap-learn"):
        raise ValueError(f"unknown UMAP engine {engine!r}; valid: auto, cuml, umap-learn")
    gpu_umap = gpu_umap_class() if engine != "umap-learn" else None
    if engine == "cuml" and gpu_umap is None:
        raise ValueError("engine 'cuml' asked for, but cuML or a CUDA GPU is missing; use engine='auto'")
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, D), got shape {x.shape}")
    n, d = x.shape
    if n < 4:
        return pca_2d(x, seed=seed)
    if d > UMAP_PCA_DIMS and n > UMAP_PCA_DIMS:
        x = PCA(n_components=UMAP_PCA_DIMS, random_state=seed).fit_transform(x).astype(np.float32)
    neighbours = int(min(n_neighbors, n - 1))
    if gpu_umap is not None:
        from labeling.search.neighbours import normalize  # torch: only for the GPU layout

        unit = normalize(x)
        reducer = gpu_umap(n_components=2, n_neighbors=neighbours, metric="euclidean", random_state=seed,
                           output_type="numpy")
        return np.asarray(reducer.fit_transform(unit), dtype=np.float32)
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, metric="cosine", random_state=seed)
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)


class ProjectionCache:
    """Layouts of one project, one ``.npz`` per (vector key, vector version, method).

    Parameters
    ----------
    project : Project
        Its ``cache_dir()`` holds the files.
    """

    def __init__(self, project: Project) -> None:
        self.project = project

    def __repr__(self) -> str:
        return f"ProjectionCache({str(self.project.cache_dir())!r})"

    def path(self, pv: ProjectVectors, method: str) -> Path:
        """The file of ``method``'s layout for these vectors."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        tag = hashlib.sha256(f"{pv.key}|{pv.version}|{len(pv.item_ids)}".encode()).hexdigest()[:16]
        return self.project.cache_dir() / f"map-{method}-{tag}.npz"

    def load(self, pv: ProjectVectors, method: str) -> Layout | None:
        """The cached layout row-aligned with ``pv.item_ids``, or None when there is none."""
        path = self.path(pv, method)
        if not path.exists():
            return None
        with np.load(path) as z:  # plain arrays only, no pickles
            if not np.array_equal(z["item_ids"], pv.item_ids):
                return None
            return np.asarray(z["xy"], dtype=np.float32)

    def save(self, pv: ProjectVectors, method: str, xy: npt.ArrayLike) -> Path:
        """Store a layout atomically (temporary file, then rename); returns its path."""
        xy = np.asarray(xy, dtype=np.float32)
        if xy.shape != (len(pv.item_ids), 2):
            raise ValueError(f"layout shape {xy.shape} does not match {len(pv.item_ids)} items")
        path = self.path(pv, method)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(fh, xy=xy, item_ids=pv.item_ids)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def remove(self, pv: ProjectVectors, method: str) -> None:
        """Forget a cached layout (no error when there is none)."""
        self.path(pv, method).unlink(missing_ok=True)


def umap_2d_in_subprocess(vectors: npt.ArrayLike, *, n_neighbors: int = 15, seed: int = 0) -> Layout:
    """:func:`umap_2d` in a separate process.

    UMAP's first call compiles numba code for most of a minute while holding the interpreter
    lock; in a thread of the app's server that would freeze every page. A spawned process keeps
    the server responsive.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(umap_2d, np.asarray(vectors, dtype=np.float32), n_neighbors=n_neighbors, seed=seed).result()


class MapBuilder:
    """Builds the UMAP layout of one project in a background thread, once per vector version.

    Parameters
    ----------
    project : Project
        The project whose vectors are mapped.
    build : callable, optional
        ``build(vectors (N, D)) -> (N, 2)``; :func:`umap_2d` when omitted.
    """

    def __init__(self, project: Project, *, build: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.project = project
        self.cache = ProjectionCache(project)
        self._build = build or umap_2d_in_subprocess
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._version: str | None = None
        self._state = "missing"

    def __repr__(self) -> str:
        return f"MapBuilder({str(self.project.root)!r}, version={self._version!r}, status={self.status()!r})"

    def status(self) -> str:
        """``"missing"``, ``"building"``, ``"ready"`` or ``"failed: <reason>"`` for the last version started."""
        with self._lock:
            return self._state

    @property
    def version(self) -> str | None:
        """The vector version of the last build started."""
        return self._version

    def start(self, pv: ProjectVectors | None = None, *, force: bool = False) -> str:
        """Build the UMAP layout of ``pv`` (default: the active vectors) unless done or under way.

        Idempotent: a second call for the same vector version starts nothing, and neither does a
        call after a failure unless ``force``. ``force`` also rebuilds a cached layout. Returns
        the status after the call.
        """
        pv = pv if pv is not None else load_vectors(self.project)
        with self._lock:
            same = self._version == pv.version
            if same and self._thread is not None and self._thread.is_alive():
                return self._state
            if not force:
                if self.cache.load(pv, "umap") is not None:
                    self._version, self._state = pv.version, "ready"
                    return self._state
                if same and self._state.startswith("failed"):
                    return self._state
            if self._thread is not None and self._thread.is_alive():
                # An older version is still building; its result is cached under its own key.
                LOG.info("map build of %s still running; starting %s", self._version, pv.version)
            self._version, self._state = pv.version, "building"
            self._thread = threading.Thread(target=self._run, args=(pv,), name=f"quorum-map-{pv.version}",
                                            daemon=True)
            self._thread.start()
            return self._state

    def wait(self, timeout: float | None = None) -> str:
        """Block until the current build ends (or ``timeout`` seconds pass); returns the status."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def _run(self, pv: ProjectVectors) -> None:
        # Anything not caught below still ends the build as failed (and reaches the thread's log).
        state = "failed: unexpected error, see the server log"
        try:
            xy = self._build(pv.vectors)
            self.cache.save(pv, "umap", xy)
            state = "ready"
        except (ValueError, TypeError, ArithmeticError, RuntimeError, MemoryError, OSError, ImportError) as exc:
            LOG.error("map build failed: %s\n%s", exc, traceback.format_exc(limit=5))
            state = f"failed: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                if self._version == pv.version:
                    self._state = state
