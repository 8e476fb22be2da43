"""UMAP layouts for real: the engine choice (cuML or umap-learn) and a real background build."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import two_blobs

from labeling.embed.pipeline import ProjectVectors
from labeling.views.layouts import MapBuilder, ProjectionCache, umap_2d


def test_umap_2d__uses_cuml_on_a_gpu_machine_and_umap_learn_elsewhere(monkeypatch):
    """Which engine runs. The GPU run itself needs cuML and a GPU; here a stand-in records its call."""
    import sys
    import types

    import torch

    import labeling.views.layouts as layouts

    calls = []

    class FakeGpuUmap:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def fit_transform(self, x):
            calls.append(np.linalg.norm(x, axis=1))
            return x[:, :2] * 2

    fake = types.ModuleType("cuml.manifold")
    fake.UMAP = FakeGpuUmap
    monkeypatch.setitem(sys.modules, "cuml", types.ModuleType("cuml"))
    monkeypatch.setitem(sys.modules, "cuml.manifold", fake)
    x = two_blobs(40, 8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert layouts.gpu_umap_class() is None  # cuML without a GPU: the CPU engine
    with pytest.raises(ValueError, match="cuML or a CUDA GPU"):
        umap_2d(x, engine="cuml")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert layouts.gpu_umap_class() is FakeGpuUmap
    xy = umap_2d(x, n_neighbors=10, seed=3)
    assert calls[0] == dict(n_components=2, n_neighbors=10, metric="euclidean", random_state=3, output_type="numpy")
    np.testing.assert_allclose(calls[1], 1.0, rtol=1e-5)  # unit rows: euclidean ranks as cosine does
    assert xy.shape == (40, 2) and xy.dtype == np.float32
    calls.clear()
    cpu = umap_2d(x, n_neighbors=10, engine="umap-learn")  # the CPU engine even where cuML could run
    assert not calls and cpu.shape == (40, 2)
    with pytest.raises(ValueError, match="engine"):
        umap_2d(x, engine="tsne")


@pytest.mark.slow
def test_map_builder__real_umap_on_randomtwo_blobs(small_project):
    ids = np.arange(1, 201, dtype=np.int64)
    pv = ProjectVectors(ids, [str(i) for i in ids], two_blobs(200, 64), "k", "k-umap-1")
    builder = MapBuilder(small_project)
    builder.start(pv)
    assert builder.wait(240) == "ready"
    xy = ProjectionCache(small_project).load(pv, "umap")
    assert xy.shape == (200, 2) and np.isfinite(xy).all()
    # The two blobs stay apart: each point's nearest other point is in its own blob.
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert ((d.argmin(1) < 100) == (np.arange(200) < 100)).mean() > 0.95
