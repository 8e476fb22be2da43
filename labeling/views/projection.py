"""The 2-D map of a project: PCA at once, UMAP in the background, both cached per vector version.

A page asks :func:`get_layout` for coordinates. It gets the UMAP layout when one is cached for the
current vectors, otherwise a PCA layout (a fraction of a second) while a :class:`MapBuilder`
computes UMAP in a background thread; nothing the page does waits for it. Layouts are stored as
``.npz`` files in the project's cache folder, keyed by the vector key, the vector version and the
method, and written to a temporary name then renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from labeling.embed.pipeline import ProjectVectors, load_vectors
from labeling.project import Project
from labeling.search.neighbours import normalize
from labeling.service import LabelingService
from storage import items as items_q
from storage import labels as labels_q

LOG = logging.getLogger(__name__)

Layout = npt.NDArray[np.float32]
"""Item coordinates, shape (N, 2), float32."""

METHODS = ("pca", "umap")
COLOR_BY = ("label", "pseudo_label", "disagreement", "annotator")
"""The columns the map can be coloured by."""
DISAGREEMENT_SCORES = ("bald", "margin", "typicality")
"""Round scores used as the map's disagreement, first present wins (typicality before any labels)."""
UMAP_PCA_DIMS = 50
"""Vectors wider than this are reduced by PCA before UMAP (faster, and it denoises)."""
NO_VALUE = "(none)"
"""The colour category of items without a label, pseudo-label or annotator."""
SOURCE = "lasso"


# ---- layouts -------------------------------------------------------------------------------
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
        unit = normalize(x)
        reducer = gpu_umap(n_components=2, n_neighbors=neighbours, metric="euclidean", random_state=seed,
                           output_type="numpy")
        return np.asarray(reducer.fit_transform(unit), dtype=np.float32)
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, metric="cosine", random_state=seed)
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)


# ---- cache ---------------------------------------------------------------------------------
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


# ---- background UMAP -----------------------------------------------------------------------
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


class MapBuilders:
    """One :class:`MapBuilder` per project folder (the server keeps one of these).

    Parameters
    ----------
    build : callable, optional
        Passed to every builder; :func:`umap_2d` when omitted.
    """

    def __init__(self, *, build: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._builders: dict[str, MapBuilder] = {}

    def __repr__(self) -> str:
        return f"MapBuilders(projects={sorted(self._builders)!r})"

    def get(self, project: Project) -> MapBuilder:
        """The builder of ``project``, created on first use."""
        key = str(project.root)
        with self._lock:
            if key not in self._builders:
                self._builders[key] = MapBuilder(project, build=self._build)
            return self._builders[key]


def get_layout(
    service: LabelingService, *, builder: MapBuilder | None = None
) -> tuple[np.ndarray, Layout, str]:
    """The map of the active vectors: UMAP when cached, else PCA (cached too).

    Parameters
    ----------
    service : LabelingService
        The project.
    builder : MapBuilder, optional
        When given and no UMAP layout is cached, its background build is started (idempotent).

    Returns
    -------
    item_ids : ndarray, shape (N,), int64
    xy : ndarray, shape (N, 2), float32
        Row-aligned with ``item_ids``.
    method : {"umap", "pca"}
    """
    project = service.project
    pv = load_vectors(project)
    cache = ProjectionCache(project)
    xy = cache.load(pv, "umap")
    if xy is not None:
        return pv.item_ids, xy, "umap"
    xy = cache.load(pv, "pca")
    if xy is None:
        xy = pca_2d(pv.vectors)
        cache.save(pv, "pca", xy)
    if builder is not None:
        builder.start(pv)
    return pv.item_ids, xy, "pca"


# ---- what the map shows --------------------------------------------------------------------
def _checked_inputs(xy: npt.ArrayLike, item_ids: npt.ArrayLike, color_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(item ids as int64, xy as float32), after checking ``color_by`` and the shapes."""
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown color_by {color_by!r}; valid: {', '.join(COLOR_BY)}")
    ids = np.asarray(item_ids, dtype=np.int64)
    xy = np.asarray(xy, dtype=np.float32)
    if xy.shape != (len(ids), 2):
        raise ValueError(f"xy shape {xy.shape} does not match {len(ids)} item ids")
    return ids, xy


def _model_columns(service: LabelingService, ids: np.ndarray, names: dict) -> tuple[list, np.ndarray, np.ndarray, str | None]:
    """(pseudo labels, confidence, disagreement score, the score's name) from the newest round, per item."""
    n = len(ids)
    pseudo: list[str | None] = [None] * n
    confidence = np.full(n, np.nan, dtype=np.float32)
    disagreement = np.full(n, np.nan, dtype=np.float32)
    score_name = None
    got = service.predictions()
    if got is not None:
        _rnd, p = got
        row_of = p.row_of()
        rows = np.array([row_of.get(int(i), -1) for i in ids], dtype=np.int64)
        have = rows >= 0
        score_name = next((s for s in DISAGREEMENT_SCORES if s in p.scores), None)
        confidence[have] = p.confidence[rows[have]]
        if score_name is not None:
            disagreement[have] = p.scores[score_name][rows[have]]
        for k in np.flatnonzero(have):
            c = int(p.pseudo[rows[k]])
            pseudo[k] = names.get(c) if c >= 0 else None
    return pseudo, confidence, disagreement, score_name


def map_frame(
    service: LabelingService,
    xy: npt.ArrayLike,
    item_ids: npt.ArrayLike,
    *,
    color_by: str = "label",
) -> pd.DataFrame:
    """One row per item with everything the map plots and hovers.

    Parameters
    ----------
    service : LabelingService
        The project.
    xy : array_like, shape (N, 2)
        Coordinates, row-aligned with ``item_ids``.
    item_ids : array_like, shape (N,)
        The items.
    color_by : {"label", "pseudo_label", "disagreement", "annotator"}
        Which column is copied into ``color``.

    Returns
    -------
    DataFrame
        Columns ``item_id, x, y, uri, sha256, label, pseudo_label, confidence, disagreement,
        annotator, color``. ``label`` and ``annotator`` are None for unlabeled items,
        ``pseudo_label`` is None before a round with labels; ``confidence`` and ``disagreement``
        are NaN for items the newest round did not score. ``color`` is categorical text
        (``NO_VALUE`` for None) except for disagreement, where it is the score (higher = the model
        is less sure). ``frame.attrs["disagreement"]`` names the score used (or None).

    Raises
    ------
    ValueError
        For an unknown ``color_by`` or mismatched shapes.
    """
    ids, xy = _checked_inputs(xy, item_ids, color_by)
    with service.project.db.session() as con:
        info = items_q.items_by_ids(con, ids.tolist())
        state = labels_q.current_state(con)
        names = dict(labels_q.classes(con))
    current = {int(r.item_id): (r.class_id, r.user_name) for r in state if r.kind == "label"}
    pseudo, confidence, disagreement, score_name = _model_columns(service, ids, names)
    labels = [names.get(int(current[i][0])) if int(i) in current else None for i in ids.tolist()]
    annotators = [current[i][1] if int(i) in current else None for i in ids.tolist()]
    frame = pd.DataFrame({
        "item_id": ids,
        "x": xy[:, 0],
        "y": xy[:, 1],
        "uri": [info[i]["uri"] if i in info else None for i in ids.tolist()],
        "sha256": [info[i]["sha256"] if i in info else None for i in ids.tolist()],
        "label": labels,
        "pseudo_label": pseudo,
        "confidence": confidence,
        "disagreement": disagreement,
        "annotator": annotators,
    })
    if color_by == "disagreement":
        frame["color"] = frame["disagreement"]
    else:
        frame["color"] = frame[color_by].fillna(NO_VALUE).astype(str)
    frame.attrs["disagreement"] = score_name
    return frame


def thumbnails(service: LabelingService, item_ids: Sequence[int]) -> list[tuple[int, Path, str]]:
    """``(item_id, image file, uri)`` of each known item in order; the thumbnail when one was made."""
    project = service.project
    with project.db.session() as con:
        info = items_q.items_by_ids(con, item_ids)
    out = []
    for i in item_ids:
        it = info.get(int(i))
        if it is None:
            continue
        thumb = project.thumb_path(it["sha256"]) if it["sha256"] else None
        path = thumb if thumb is not None and thumb.exists() else project.resolve_uri(it["uri"])
        out.append((int(i), path, it["uri"]))
    return out


_ID_SPLIT = re.compile(r"[\s,;]+")


def parse_item_ids(text: str) -> list[int]:
    """Item ids typed as text (``"3, 7 12"``), in order, without repeats.

    Raises
    ------
    ValueError
        When a token is not a whole number.
    """
    out: list[int] = []
    for token in _ID_SPLIT.split(text.strip()):
        if not token:
            continue
        if not token.isdigit():
            raise ValueError(f"{token!r} is not an item id (a whole number)")
        if int(token) not in out:
            out.append(int(token))
    return out


def label_selection(service: LabelingService, item_ids: Sequence[int], label: str, *, user: str) -> str:
    """Label every selected item ``label`` as one batch with source ``"lasso"``; returns the batch id.

    The class is created when it is new. Repeated ids are labeled once.

    Raises
    ------
    ValueError
        When nothing is selected or the label is blank.
    LookupError
        When an item id is unknown or unreadable (nothing is written).
    """
    ids = list(dict.fromkeys(int(i) for i in item_ids))
    if not ids:
        raise ValueError("select at least one item")
    name = (label or "").strip()
    if not name:
        raise ValueError("a class name is required")
    got = service.predictions()
    model_round = None if got is None else int(got[0]["id"])
    return service.label(ids, name, user=user, source=SOURCE, model_round=model_round)
