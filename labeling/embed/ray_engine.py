"""The embedding job on Ray Data: the same vectors in the same store as ``embed``, on many workers.

``python -m labeling embed DIR --engine ray [--address ADDR]`` runs :func:`embed_project_ray`:

1. The driver (the machine holding the project) lists the items the project's vector store lacks,
   exactly as the local engine does, so a run resumes where the last one stopped.
2. A Ray dataset of ``(item_id, path)`` rows goes through ``map_batches`` to a pool of actors. Each
   actor loads the backbone once and embeds its batches with :func:`labeling.embed.run.embed_paths`,
   the local engine's own decode, preprocessing and forward pass (``channels_last``, inference
   mode, bf16 autocast on CUDA), so the vectors are those the local engine computes.
3. The driver writes every batch to the store as it arrives (``VectorStore.add``: one chunk file,
   written then renamed), then compacts once at the end, and marks unreadable files as the local
   engine does.

Workers read the images by path: on a cluster, the project folder must be mounted at the same path
on every node (shared or network file system). Ray is optional: ``pip install "quorum[ray]"``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from labeling.project import Project, ProjectError
from storage import items as items_q
from storage.vectors import VectorStore

LOG = logging.getLogger(__name__)

DEFAULT_CPUS_PER_WORKER = 2
"""CPU cores each CPU actor asks for (and torch threads it uses)."""


class RayUnavailable(ProjectError):
    """Ray is not installed, or the cluster cannot be reached."""


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is a separate extra of ray)
    except ImportError as exc:
        raise RayUnavailable(f"the ray engine needs Ray Data: pip install 'ray[data]>=2.40' "
                             f"(or the project's extra: pip install 'quorum[ray]'); {exc}") from exc
    return ray


class EmbedWorker:
    """A Ray actor: one backbone, loaded once, embedding batches of ``{"item_id", "path"}`` rows."""

    def __init__(self, backbone: str, weights: str | None, image_size: int | None, device: str,
                 threads: int) -> None:
        import torch

        from labeling.embed.backbones import get_backbone
        from labeling.device import pick_device

        if threads > 0:
            torch.set_num_threads(threads)
        kwargs: dict[str, Any] = {}
        if weights is not None:
            kwargs["weights"] = weights
        if image_size:
            kwargs["image_size"] = image_size
        self.backbone = get_backbone(backbone, **kwargs)
        self.device = pick_device(device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from labeling.embed.run import embed_paths

        paths = [str(p) for p in batch["path"]]
        vectors, ok = embed_paths(paths, self.backbone, device=self.device, batch_size=max(1, len(paths)),
                                  num_workers=0, progress=False)
        return {"item_id": np.asarray(batch["item_id"], np.int64), "vector": vectors, "ok": ok}


def connect(address: str | None = None, **init_kwargs) -> Any:
    """Connect to the Ray cluster at ``address`` (``ray://host:10001``, ``host:6379`` or ``auto``),
    else to ``RAY_ADDRESS`` when set, else start a local Ray instance. Reuses a live connection."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    target = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=target, ignore_reinit_error=True, log_to_driver=False, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot connect to Ray at {target or 'a new local instance'}: {exc}") from exc
    return ray


def _check_args(batch_size: int, device: str) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")


def _backbone_kwargs(weights: str | None, image_size: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if weights is not None:
        kwargs["weights"] = weights
    if image_size:
        kwargs["image_size"] = image_size
    return kwargs


def _pool(resources: dict, device: str, workers: int | None, cpus_per_worker: int) -> tuple[bool, int]:
    """(GPU actors?, how many actors) for the cluster's ``resources``."""
    gpus = int(resources.get("GPU", 0))
    if device == "cuda" and gpus == 0:
        raise RayUnavailable("device 'cuda' asked for, but the Ray cluster has no GPU; use --device cpu or auto")
    use_gpu = gpus > 0 and device in ("auto", "cuda")
    if workers is None:
        workers = gpus if use_gpu else max(1, int(resources.get("CPU", 1)) // max(1, cpus_per_worker))
    return use_gpu, max(1, int(workers))


def _drain(ds, store: VectorStore, report) -> tuple[int, list[int]]:
    """Write each embedded batch to the store as it arrives: (vectors written, item ids that failed)."""
    embedded = 0
    failed: list[int] = []
    done = 0
    for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
        got_ids = np.asarray(out["item_id"], np.int64)
        good = np.asarray(out["ok"], bool)
        if good.any():  # one chunk per batch, as the local engine writes them
            store.add(got_ids[good], np.asarray(out["vector"], np.float32)[good])
        embedded += int(good.sum())
        failed += [int(i) for i in got_ids[~good]]
        done += len(got_ids)
        report(done, len(got_ids))
    return embedded, failed


def embed_project_ray(
    project: Project,
    *,
    backbone: str | None = None,
    weights: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    image_size: int | None = None,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: int = DEFAULT_CPUS_PER_WORKER,
    progress: bool | Callable[[int, int], None] = True,
    init_kwargs: dict | None = None,
) -> dict:
    """Embed every readable item not yet embedded, on Ray Data; resumable, like the local engine.

    Parameters
    ----------
    project : Project
    backbone, weights, image_size, batch_size
        As for :func:`labeling.embed.pipeline.embed_project`. ``weights`` must be a path every worker
        can read (or a name the workers can resolve offline).
    device : {"auto", "cpu", "cuda"}
        ``auto`` uses GPU actors (one GPU each) when the cluster has GPUs, else CPU actors.
    address : str, optional
        Ray cluster address; default ``RAY_ADDRESS``, else a local instance.
    workers : int, optional
        Actors in the pool; default one per GPU, or cluster CPUs // ``cpus_per_worker``.
    cpus_per_worker : int
        CPU cores per CPU actor (its torch threads).
    progress : bool or callable
        True shows a tqdm bar; a callable gets ``(done, total)`` after each batch.
    init_kwargs : dict, optional
        Extra ``ray.init`` arguments when a local instance is started (e.g. ``num_cpus``).

    Returns
    -------
    dict
        ``backbone``, ``fingerprint``, ``device``, ``engine`` ("ray"), ``workers``, ``total``,
        ``already``, ``embedded``, ``failed``.
    """
    from labeling.embed.backbones import DEFAULT_BACKBONE, get_backbone
    from labeling.embed.run import _progress
    from labeling.embed.pipeline import finish_embedding

    _check_args(batch_size, device)
    ray = connect(address, **(init_kwargs or {}))
    name = backbone or project.setting("backbone") or DEFAULT_BACKBONE
    # loaded here too: the store's key and dim, and a clear error early
    loaded = get_backbone(name, **_backbone_kwargs(weights, image_size))
    store = VectorStore(project.vectors_dir(loaded.fingerprint), key=loaded.fingerprint, dim=loaded.dim)
    with project.db.session() as con:
        ids, uris = items_q.ok_items(con)
    ids = np.asarray(ids, np.int64)
    todo = np.flatnonzero(~store.has(ids)) if len(ids) else np.zeros(0, np.int64)
    resources = ray.cluster_resources()
    use_gpu, workers = _pool(resources, device, workers, cpus_per_worker)
    LOG.info("%d of %d items already embedded with %s; %d to go on %d Ray %s workers", len(ids) - len(todo),
             len(ids), loaded.fingerprint, len(todo), workers, "GPU" if use_gpu else "CPU")
    embedded = 0
    failed: list[int] = []
    if len(todo):
        rows = [{"item_id": int(ids[i]), "path": str(project.resolve_uri(uris[i]))} for i in todo]
        threads = 0 if use_gpu else max(1, cpus_per_worker)
        ds = ray.data.from_items(rows).map_batches(
            EmbedWorker,
            fn_constructor_kwargs={"backbone": name, "weights": weights, "image_size": image_size,
                                   "device": "cuda" if use_gpu else "cpu", "threads": threads},
            batch_size=batch_size, batch_format="numpy", concurrency=workers,
            num_gpus=1 if use_gpu else 0, num_cpus=1 if use_gpu else max(1, min(cpus_per_worker,
                                                                                int(resources.get("CPU", 1)))))
        report = _progress(progress, len(rows), f"{loaded.name} (ray)")
        try:
            embedded, failed = _drain(ds, store, report)
        finally:
            report.close()
        store.compact()
    finish_embedding(project, name, loaded, failed)
    return {"backbone": name, "fingerprint": loaded.fingerprint, "device": "cuda" if use_gpu else "cpu",
            "engine": "ray", "workers": workers, "total": int(len(ids)), "already": int(len(ids) - len(todo)),
            "embedded": embedded, "failed": len(failed)}
