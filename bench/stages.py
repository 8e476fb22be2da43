"""Benchmarks of the pipeline's heavy stages: embedding throughput against a bare forward loop, a
round's peak memory in a fresh process, and the map's UMAP layout against PCA (rows as in
:mod:`bench.suite`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.suite import ROOT, clock, clustered, row


def embedding(work: Path, n_images: int, *, device: str = "cpu") -> list[dict]:
    """Import + embed of the bundled demo images end to end (images/s), against a bare forward loop
    of the same model (same size, batch size, threads, channels_last, bf16 autocast on CUDA) over
    pre-decoded tensors. On CPU the bare loop runs with the allocator settings the app's loop runs
    with (``labeling.embed.run.steady_heap``), so that both pay the same for memory."""
    import contextlib as cl

    import torch

    from labeling.embed.backbones import DEFAULT_BACKBONE, get_backbone
    from labeling.data.demo import write_images
    from labeling.embed.run import steady_heap
    from labeling.data.importer import import_folder
    from labeling.embed.pipeline import embed_project
    from labeling.project import Project

    root = work / "embed"
    written = write_images(root / "images", limit=n_images)
    n_images = len(written)  # class-balanced: can be a few under the limit
    project = Project(root, create=True)
    import_s, _ = clock(import_folder, project, root / "images", progress=False)
    embed_s, _ = clock(embed_project, project, device=device, progress=False)
    ours = n_images / (import_s + embed_s)
    bb = get_backbone(DEFAULT_BACKBONE)
    from labeling.data.images import load_rgb

    decode_s, batch = clock(lambda: torch.stack([bb.transform(load_rgb(p)) for p, _ in written]))
    dev = torch.device(device)
    model = bb.model.eval().to(dev, memory_format=torch.channels_last)
    cuda = dev.type == "cuda"
    with torch.inference_mode(), (steady_heap if dev.type == "cpu" else cl.nullcontext()):
        model(batch[:8].to(dev).contiguous(memory_format=torch.channels_last))  # warm-up
        t0 = time.perf_counter()
        for s in range(0, len(batch), 64):
            xb = batch[s:s + 64].to(dev).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else cl.nullcontext():
                model(xb).float().cpu()
        bare = n_images / (time.perf_counter() - t0)
    share = ours / bare
    return [row("embedding throughput", f"{n_images:,} demo images, {bb.name} at {bb.image_size} px, "
                f"{'CUDA bf16' if cuda else 'CPU'}", ours, "img/s", "bare forward loop, pre-decoded tensors",
                bare, ratio=share, ratio_means="of the bare loop", target=">= 0.8 of the bare loop",
                met=share >= 0.8, note=f"import (hash, thumbnail, database) {import_s:.1f} s + embed (decode, "
                                       f"model, vector store) {embed_s:.1f} s; bare loop {n_images / bare:.1f} s; "
                                       f"decoding and preprocessing alone, serially, {decode_s:.1f} s")]


MEMORY_CHILD = r"""
import json, sys, threading, time
root, device = sys.argv[1], sys.argv[2]
def status(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0
peak = {"anon": 0}
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak["anon"] = max(peak["anon"], status("RssAnon:"))
        time.sleep(0.005)
from labeling.project import Project
from labeling.model.rounds import train_round
project = Project(root)
before = status("VmRSS:")
t = threading.Thread(target=sample, daemon=True); t.start()
train_round(project, device=device, cv=False)
stop.set(); t.join()
print(json.dumps({"peak": status("VmHWM:"), "before": before, "peak_anon": peak["anon"]}))
"""


def memory(root: Path, *, device: str = "cpu") -> list[dict]:
    """Peak resident memory of one round (``train_round``, graph cached) in a fresh process, against
    the size of the vectors. Reports the whole process (ru_maxrss: Python, torch and the file pages
    of the memory-mapped vector store included) and, in the note, the round's own growth and the
    peak of anonymous memory (sampled every 5 ms)."""
    from labeling.embed.pipeline import load_vectors
    from labeling.project import Project

    from storage import labels as labels_q

    project = Project(root)
    pv = load_vectors(project)
    size = pv.vectors.nbytes
    n, d = pv.vectors.shape
    with project.db.session() as con:
        n_classes, n_labels = len(labels_q.classes(con)), len(labels_q.current_labels(con)[0])
    del pv, project
    res = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(root), device], capture_output=True, text=True,
                         timeout=3600, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
    if res.returncode != 0:
        raise RuntimeError(f"memory child failed: {res.stderr[-2000:]}")
    got = json.loads(res.stdout.strip().splitlines()[-1])
    ratio = got["peak"] / size
    return [row("round peak memory", f"{n:,} x {d}, {n_classes} classes, {n_labels:,} labels", got["peak"] / 2**30, "GiB",
                "the vectors' own size", size / 2**30, ratio=ratio, ratio_means="x the vectors",
                target="<= 2.5x the vectors at 1M x 512", met=(ratio <= 2.5) if n >= 1_000_000 else None,
                note=(f"process before the round {got['before'] / 2**30:.2f} GiB; round's growth "
                      f"{(got['peak'] - got['before']) / size:.2f}x the vectors; peak anonymous memory "
                      f"{got['peak_anon'] / size:.2f}x"))]


def map_layout(n: int, d: int = 512) -> list[dict]:
    """The Map page's UMAP layout (PCA to 50, then UMAP, in a fresh process as the app builds it,
    numba compilation included), against the PCA 2-D layout the page shows until it is ready."""
    from labeling.views.layouts import gpu_umap_class, pca_2d, umap_2d_in_subprocess

    x, _ = clustered(n, d, 20, seed=11)
    pca, _ = clock(pca_2d, x)
    ours, xy = clock(umap_2d_in_subprocess, x)
    assert xy.shape == (n, 2)
    engine = "cuML UMAP on the GPU" if gpu_umap_class() is not None else "umap-learn on the CPU"
    return [row("map (UMAP)", f"{n:,} x {d}", ours, "s", "PCA to 2-D", pca, ratio=ours / pca,
                ratio_means="x the PCA time", target="< 180 s at 100k on 2 cores",
                met=(ours < 180) if n >= 100_000 else None, note=engine)]
