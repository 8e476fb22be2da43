"""The map engine: PCA/UMAP layouts, their cache, the background builder, the map frame, lasso labels."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import two_blobs

from labeling.embed.pipeline import ProjectVectors, load_vectors
from labeling.views.layouts import MapBuilder, ProjectionCache, pca_2d, umap_2d
from labeling.views.bulk import label_selection
from labeling.views.colors import NONE_COLOR, class_color
from labeling.views.projection import COLOR_BY, NO_VALUE, get_layout, map_frame
from labeling.service import LabelingService
from storage import labels as labels_q


def _pv(n: int = 50, *, version: str = "k-abc-1") -> ProjectVectors:
    ids = np.arange(1, n + 1, dtype=np.int64)
    return ProjectVectors(ids, [f"img/{i}.png" for i in ids], two_blobs(n, 8), "k", version)


# ---- PCA / UMAP ------------------------------------------------------------------------------
def test_pca_2d__shape_dtype_and_deterministic():
    x = two_blobs()
    a, b = pca_2d(x), pca_2d(x)
    assert a.shape == (200, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    # The first component separates the two blobs completely.
    first = a[:, 0]
    assert max(first[:100]) < min(first[100:]) or min(first[:100]) > max(first[100:])


@pytest.mark.parametrize("shape", [(0, 5), (1, 5), (5, 1)])
def test_pca_2d__degenerate_inputs_give_zeros(shape):
    out = pca_2d(np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape))
    assert out.shape == (shape[0], 2)
    if shape[0] <= 1:
        assert not out.any()
    else:
        assert not out[:, 1].any()


def test_pca_2d__rejects_1d():
    with pytest.raises(ValueError, match="2-D"):
        pca_2d(np.ones(5))


def test_umap_2d__tiny_input_falls_back_to_pca():
    x = two_blobs(3, 4)
    np.testing.assert_array_equal(umap_2d(x), pca_2d(x))


# ---- cache -----------------------------------------------------------------------------------
def test_cache__round_trip_and_keyed_by_version_and_method(small_project):
    cache = ProjectionCache(small_project)
    pv = _pv()
    assert cache.load(pv, "pca") is None
    xy = pca_2d(pv.vectors)
    path = cache.save(pv, "pca", xy)
    assert path.parent == small_project.cache_dir() and path.suffix == ".npz"
    np.testing.assert_array_equal(cache.load(pv, "pca"), xy)
    assert cache.load(pv, "umap") is None  # method is part of the key
    newer = _pv(version="k-abc-2")
    assert cache.path(newer, "pca") != path
    assert cache.load(newer, "pca") is None  # a new vector version misses
    assert not list(small_project.cache_dir().glob("*.tmp*"))  # atomic: no temporary file left


def test_cache__rejects_wrong_shape_and_method(small_project):
    cache = ProjectionCache(small_project)
    with pytest.raises(ValueError, match="does not match"):
        cache.save(_pv(), "pca", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="unknown method"):
        cache.path(_pv(), "tsne")


# ---- background builder ------------------------------------------------------------------------
def test_map_builder__injected_build_reaches_ready_once(small_project):
    calls = []
    release = threading.Event()

    def build(x):
        calls.append(len(x))
        release.wait(10)
        return np.full((len(x), 2), 7.0, np.float32)

    builder = MapBuilder(small_project, build=build)
    pv = _pv()
    assert builder.status() == "missing"
    assert builder.start(pv) == "building"
    assert builder.start(pv) == "building"  # idempotent while running
    release.set()
    assert builder.wait(10) == "ready"
    assert builder.start(pv) == "ready"  # cached: nothing rebuilt
    assert calls == [50]
    np.testing.assert_array_equal(ProjectionCache(small_project).load(pv, "umap"), np.full((50, 2), 7.0))
    builder.start(pv, force=True)
    assert builder.wait(10) == "ready" and calls == [50, 50]


def test_map_builder__failure_is_reported_and_not_retried(small_project):
    calls = []

    def build(x):
        calls.append(1)
        raise ValueError("bad vectors")

    builder = MapBuilder(small_project, build=build)
    builder.start(_pv())
    status = builder.wait(10)
    assert status.startswith("failed:") and "bad vectors" in status
    assert builder.start(_pv()).startswith("failed:") and calls == [1]


# ---- layout, frame, labels on the demo project -------------------------------------------------
def test_get_layout__pca_first_then_cached_umap(demo_project):
    service = LabelingService(demo_project)
    pv = load_vectors(service.project)
    builder = MapBuilder(service.project, build=lambda x: np.ones((len(x), 2), np.float32))
    ids, xy, method = get_layout(service, builder=builder)
    assert method == "pca" and xy.shape == (len(pv.item_ids), 2)
    np.testing.assert_array_equal(ids, pv.item_ids)
    np.testing.assert_array_equal(ProjectionCache(service.project).load(pv, "pca"), xy)  # PCA cached too
    assert builder.wait(30) == "ready"
    ids2, xy2, method2 = get_layout(service, builder=builder)
    assert method2 == "umap" and (xy2 == 1).all()


def test_map_frame__columns_and_labeled_item(demo_project):
    service = LabelingService(demo_project)
    ids, xy, _ = get_layout(service)
    label_selection(service, [int(ids[0])], "cat", user="ann")
    frame = map_frame(service, xy, ids, color_by="label")
    assert list(frame.columns) == ["item_id", "x", "y", "uri", "sha256", "label", "pseudo_label", "confidence",
                                   "disagreement", "annotator", "color"]
    assert len(frame) == len(ids)
    first = frame.iloc[0]
    assert first["label"] == "cat" and first["annotator"] == "ann" and first["color"] == "cat"
    assert frame["label"].iloc[1:].isna().all() and (frame["color"].iloc[1:] == NO_VALUE).all()
    # The demo's round is a cold start: no pseudo-labels, typicality as the disagreement score.
    assert frame.attrs["disagreement"] == "typicality"
    assert frame["pseudo_label"].isna().all() and np.isfinite(frame["disagreement"]).all()
    dis = map_frame(service, xy, ids, color_by="disagreement")
    np.testing.assert_array_equal(dis["color"].to_numpy(), dis["disagreement"].to_numpy())
    assert map_frame(service, xy, ids, color_by="annotator").iloc[0]["color"] == "ann"
    cat_id = {n: i for i, n in service.class_names().items()}["cat"]
    assert frame.attrs["colors"] == {NO_VALUE: NONE_COLOR, "cat": class_color(cat_id)}  # unlabeled drawn first
    with pytest.raises(ValueError, match="color_by"):
        map_frame(service, xy, ids, color_by="size")
    assert set(COLOR_BY) == {"label", "pseudo_label", "disagreement", "annotator"}
