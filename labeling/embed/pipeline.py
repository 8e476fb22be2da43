"""Project-level steps between import and training: embed, load vectors, the cached kNN graph."""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labeling.project import Project, ProjectError
from labeling.search.graph import KnnGraph
from storage import items as items_q
from storage import rounds as rounds_q
from storage.vector_files import gather_rows
from storage.vectors import VectorStore

LOG = logging.getLogger(__name__)

GRAPH_K = 15
"""Neighbours per item in the cached kNN graph (propagation, neighbourhood votes, typicality)."""


@dataclass
class ProjectVectors:
    item_ids: np.ndarray  # (N,) int64, readable items that have a vector, ascending
    uris: list[str]
    vectors: np.ndarray  # (N, D) float32, row-aligned with item_ids
    key: str  # backbone fingerprint or precomputed key
    version: str


def embed_project(
    project: Project,
    *,
    backbone: str | None = None,
    weights: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    image_size: int | None = None,
    progress: bool | Callable[[int, int], None] = True,
) -> dict:
    """Embed every readable item not yet embedded with the project's backbone (resumable)."""
    from labeling.embed.backbones import DEFAULT_BACKBONE, get_backbone
    from labeling.device import pick_device
    from labeling.embed.run import embed_project_items

    with project.db.session() as con:  # one short transaction for what the job needs to know
        saved = rounds_q.get_setting(con, "backbone")
        saved_weights = rounds_q.get_setting(con, "backbone_weights")
        ids, uris = items_q.ok_items(con)
    name = backbone or saved or DEFAULT_BACKBONE
    if weights is None and name == saved and saved_weights not in (None, "default"):
        weights = saved_weights  # the weights file this project was embedded with, remembered
    kwargs = {"weights": weights}
    if image_size:
        kwargs["image_size"] = image_size
    loaded = get_backbone(name, **{k: v for k, v in kwargs.items() if v is not None})
    dev = pick_device(device)
    store = VectorStore(project.vectors_dir(loaded.fingerprint), key=loaded.fingerprint, dim=loaded.dim)
    paths = resolve_uris(project, uris)
    result = embed_project_items(store, ids, paths, loaded, device=dev, batch_size=batch_size, progress=progress)
    store.compact()
    finish_embedding(project, name, loaded, _failed_ids(result))
    with project.db.session() as con:  # the text tower (CLIP) and later runs load the same weights
        rounds_q.set_setting(con, "backbone_weights", weights_setting(weights))
    return {"backbone": name, "fingerprint": loaded.fingerprint, "device": str(dev),
            **{k: v for k, v in (result if isinstance(result, dict) else {}).items() if k != "failed_ids"}}


def weights_setting(weights) -> str:
    """How a project remembers its backbone's weights: ``default``, ``none`` or the file's absolute path."""
    if weights is None or str(weights).lower() in ("default", "none"):
        return "default" if weights is None else str(weights).lower()
    return str(Path(weights).expanduser().resolve())


def resolve_uris(project: Project, uris: list[str]) -> list[Path]:
    """``project.resolve_uri`` of many uris (same paths, same error), resolving each folder once."""
    root = str(project.root)
    prefix = root if root.endswith(os.sep) else root + os.sep
    real_dirs: dict[str, str] = {}
    out = []
    for uri in uris:
        joined = os.path.join(root, uri)
        folder, name = os.path.split(joined)
        path = None
        if name not in ("", ".", "..") and not os.path.islink(joined):
            real = real_dirs.get(folder)
            if real is None:
                real = real_dirs[folder] = os.path.realpath(folder)
            candidate = os.path.join(real, name)
            if candidate.startswith(prefix):
                path = Path(candidate)
        out.append(path if path is not None else project.resolve_uri(uri))  # links, odd names, escapes
    return out


def finish_embedding(project: Project, name: str, loaded, failed: list[int]) -> None:
    """After an embedding job (any engine): mark the items that could not be decoded unreadable, and make
    this backbone's vectors the project's (one transaction)."""
    with project.db.session() as con:
        if failed:
            info = items_q.items_by_ids(con, failed)
            for item_id in failed:
                it = info[item_id]
                items_q.update_item(con, item_id, items_q.NewItem(it["uri"], it["sha256"], it["width"], it["height"],
                                                                  "unreadable", "could not be decoded for embedding"))
        rounds_q.set_setting(con, "backbone", name)
        rounds_q.set_setting(con, "vector_key", loaded.fingerprint)
        rounds_q.set_setting(con, "vector_dim", str(loaded.dim))


def _failed_ids(result) -> list[int]:
    if isinstance(result, dict):
        return [int(i) for i in result.get("failed_ids", [])]
    return []


def import_embeddings(project: Project, path: str | Path, *, ids_path: str | Path | None = None) -> dict:
    """Use precomputed embeddings (``.npy`` + ids, or Parquet) keyed by item id or uri."""
    from labeling.embed.precomputed import load_precomputed

    keys, vectors = load_precomputed(Path(path), ids_path=None if ids_path is None else Path(ids_path))
    with project.db.session() as con:
        ids, uris = items_q.ok_items(con)
    by_uri = dict(zip(uris, ids.tolist()))
    known = set(ids.tolist())
    rows, item_ids, unknown = [], [], []
    for row, key in enumerate(keys):
        if isinstance(key, (int, np.integer)) or (isinstance(key, str) and key.isdigit() and int(key) in known):
            item_id = int(key)
            ok = item_id in known
        else:
            item_id = by_uri.get(str(key), -1)
            ok = item_id >= 0
        if ok:
            rows.append(row)
            item_ids.append(item_id)
        else:
            unknown.append(str(key))
    if not rows:
        raise ProjectError(f"none of the {len(keys)} embedding keys matches an item of the project")
    digest = hashlib.sha256(Path(path).read_bytes()[:1 << 20]).hexdigest()[:12]
    key = f"precomputed-{digest}"
    store = VectorStore(project.vectors_dir(key), key=key, dim=vectors.shape[1])
    store.add(np.asarray(item_ids, np.int64), np.asarray(vectors[rows], np.float32))
    store.compact()
    project.set_setting("backbone", "precomputed")
    project.set_setting("vector_key", key)
    project.set_setting("vector_dim", str(vectors.shape[1]))
    return {"imported": len(rows), "unknown_keys": unknown[:20], "n_unknown": len(unknown), "key": key}


def vector_source(project: Project) -> tuple[str, int, np.ndarray, list[str]]:
    """(vector key, dimension, readable item ids ascending, their uris): what :func:`vectors_of` needs
    from the database, read in one transaction."""
    with project.db.session() as con:
        key, dim = (rounds_q.get_setting(con, name) for name in ("vector_key", "vector_dim"))
        ids, uris = items_q.ok_items(con)
    if not key or not dim:
        raise ProjectError(f"{project.root} has no embeddings yet; run 'python -m labeling embed {project.root}'")
    return key, int(dim), np.asarray(ids, dtype=np.int64), list(uris)


def load_vectors(project: Project) -> ProjectVectors:
    """The active vectors of readable items, row-aligned with ascending item ids."""
    return vectors_of(project, *vector_source(project))


def vectors_of(project: Project, key: str, dim: int, ids: np.ndarray, uris: list[str]) -> ProjectVectors:
    """The stored vectors of the items ``ids`` (with ``uris``), from the vector files only (no database)."""
    store = VectorStore(project.vectors_dir(key), key=key, dim=int(dim))
    store_ids, mat = store.matrix()
    store_ids = np.asarray(store_ids, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    rows, keep = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(store_ids) and len(ids):
        order = np.argsort(store_ids, kind="stable")
        at = order[np.minimum(np.searchsorted(store_ids, ids, sorter=order), len(order) - 1)]
        found = store_ids[at] == ids
        rows, keep = at[found], np.flatnonzero(found)
    vectors = gather_rows(mat, rows) if len(rows) else np.zeros((0, int(dim)), np.float32)
    return ProjectVectors(ids[keep], [uris[k] for k in keep.tolist()], vectors, key, store.version)


def vector_version(project: Project) -> str | None:
    """The version of the project's active vectors (changes whenever vectors are added or removed), or
    None before any embedding; a cheap read of the store's metadata, no vectors loaded. Every page run
    asks, so the answer is kept until the store's folder or its metadata file changes (a new chunk
    is a new file in the folder; a compaction rewrites the metadata)."""
    settings = project.db.cached("settings", rounds_q.all_settings)
    key, dim = settings.get("vector_key"), settings.get("vector_dim")
    if not key or not dim:
        return None
    folder = project.vectors_dir(key)
    try:
        stamp = tuple((st.st_mtime_ns, st.st_size) for st in (os.stat(folder), os.stat(folder / "meta.json")))
    except OSError:
        stamp = None
    hit = _VERSIONS.get(str(folder))
    if stamp is not None and hit is not None and hit[0] == stamp:
        return hit[1]
    version = VectorStore(folder, key=key, dim=int(dim)).version
    if stamp is not None:
        _VERSIONS[str(folder)] = (stamp, version)
    return version


_VERSIONS: dict[str, tuple[tuple, str]] = {}
"""Vector store folder -> (its and its metadata file's stat, version): see :func:`vector_version`."""


def knn_graph_cached(project: Project, pv: ProjectVectors, *, k: int = GRAPH_K) -> KnnGraph:
    """The kNN graph of the active vectors, cached per vector version on disk and on ``project.caches``.

    The same read-only :class:`KnnGraph` object comes back on every call of one process while the
    cached file is unchanged, so what is derived from it (the propagation operator) is built once;
    a new vector version replaces it.
    """
    tag = hashlib.sha256(f"{pv.key}|{pv.version}|{len(pv.item_ids)}|{k}".encode()).hexdigest()[:16]
    path = project.cache_dir() / f"graph-{tag}.npz"
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        stamp = None
    memo = project.caches.get("knn_graph", (str(path), stamp))
    if stamp is not None and memo is not None and np.array_equal(memo.item_ids, pv.item_ids):
        return memo
    graph = None
    if stamp is not None:
        with np.load(path) as z:
            if np.array_equal(z["item_ids"], pv.item_ids):
                graph = z["sims"], z["idx"]
    if graph is None:
        from labeling.search.neighbours import knn_graph  # torch: only to build the graph, not to read it

        k_eff = min(k, max(1, len(pv.item_ids) - 1))
        graph = knn_graph(pv.vectors, k_eff)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, sims=graph[0], idx=graph[1], item_ids=pv.item_ids)
        os.replace(tmp, path)
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    out = KnnGraph(graph[0], graph[1], item_ids=np.array(pv.item_ids, copy=True), version=pv.version)
    project.caches.put("knn_graph", (str(path), stamp), out)  # one graph per project: a new version replaces it
    return out


def cluster_memo(project: Project, pv: ProjectVectors) -> Callable[[str, Callable[[], np.ndarray]], np.ndarray]:
    """The cold start's clusterings of these vectors (``labeling.active.coldstart.ClusterMemo``), kept in the
    project's cache folder beside the kNN graph: rounds a label apart share one (3.4 of a 4.7 s round on
    the 3,000-image demo was its k-means). Keyed by the vector version and the rows' item ids."""
    ids = hashlib.blake2b(np.ascontiguousarray(pv.item_ids, dtype=np.int64).tobytes(), digest_size=8).hexdigest()
    tag = hashlib.sha256(f"{pv.key}|{pv.version}|{ids}".encode()).hexdigest()[:16]

    def memo(key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        path = project.cache_dir() / f"clusters-{tag}-{key}.npy"
        try:
            return np.load(path)
        except (FileNotFoundError, ValueError, OSError):
            got = np.asarray(compute())
            part = path.with_name(f".{path.name}.{os.getpid()}")
            with open(part, "wb") as fh:  # written whole, then renamed: a reader never sees half a file
                np.save(fh, got, allow_pickle=False)
            os.replace(part, path)
            return got
    return memo
