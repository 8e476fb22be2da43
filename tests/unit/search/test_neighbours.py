"""Tests for labeling.search.neighbours and .index: exact and approximate cosine search, kNN graph."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from labeling.device import DeviceUnavailableError
from labeling.search import index as index_mod
from labeling.search import neighbours
from labeling.search.index import NeighbourIndex, UnknownItemError
from labeling.search.neighbours import knn_graph, normalize, recall_at_k, torch_knn


def clustered(n: int, dim: int, *, n_clusters: int, noise: float, seed: int) -> np.ndarray:
    """Gaussian blobs around random centres, float32 (n, dim)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    members = rng.integers(0, n_clusters, size=n)
    return (centres[members] + noise * rng.standard_normal((n, dim))).astype(np.float32)


def brute_knn(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine neighbours with numpy, float64."""
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ b.T.astype(np.float64)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order


@pytest.fixture
def small() -> np.ndarray:
    return clustered(600, 24, n_clusters=6, noise=0.8, seed=1)


@pytest.fixture
def item_ids() -> np.ndarray:
    """Non-contiguous, unordered item ids for 600 rows."""
    return np.random.default_rng(2).permutation(600).astype(np.int64) * 7 + 1000


# --------------------------------------------------------------------------- #
def test_normalize_unit_rows_zero_rows_stay_zero():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    out = normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], rtol=1e-6)
    assert x[0, 0] == 3.0  # input untouched


def test_normalize_rejects_1d():
    with pytest.raises(ValueError, match="2-D"):
        normalize(np.ones(3))


def test_flat_search_returns_item_ids_and_exact_sims(small, item_ids):
    index = NeighbourIndex.build(small, item_ids, device="cpu")
    assert index.kind == "flat" and len(index) == 600
    queries = clustered(20, 24, n_clusters=6, noise=0.8, seed=3)
    sims, ids = index.search(queries, 5)
    exp_sims, exp_rows = brute_knn(small, queries, 5)
    assert sims.dtype == np.float32 and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, item_ids[exp_rows])
    np.testing.assert_allclose(sims, exp_sims, atol=1e-5)


def test_search_pads_missing_results():
    x = clustered(3, 8, n_clusters=1, noise=1.0, seed=0)
    sims, ids = NeighbourIndex.build(x, [5, 6, 7], device="cpu").search(x[:1], 5)
    assert ids[0, 0] == 5
    np.testing.assert_array_equal(ids[0, 3:], [-1, -1])
    assert np.isneginf(sims[0, 3:]).all() and np.isfinite(sims[0, :3]).all()


def test_empty_index_finds_nothing():
    index = NeighbourIndex.build(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    sims, ids = index.search(np.ones((2, 4), np.float32), 3)
    assert len(index) == 0 and (ids == -1).all() and np.isneginf(sims).all()


def test_hnsw_recall_at_10_vs_exact():
    data = clustered(20_300, 64, n_clusters=50, noise=2.0, seed=4)
    base, queries = data[:20_000], data[20_000:]
    ids = np.arange(20_000, dtype=np.int64)
    _, exact = NeighbourIndex.build(base, ids, kind="flat", device="cpu").search(queries, 10)
    hnsw = NeighbourIndex.build(base, ids, kind="hnsw", device="cpu")
    assert hnsw.kind == "hnsw"
    _, approx = hnsw.search(queries, 10)
    assert recall_at_k(approx, exact) >= 0.95


def test_ivf_recall_at_10_vs_exact():
    data = clustered(5_100, 32, n_clusters=20, noise=1.5, seed=5)
    base, queries = data[:5_000], data[5_000:]
    ids = np.arange(5_000, dtype=np.int64)
    _, exact = NeighbourIndex.build(base, ids, kind="flat", device="cpu").search(queries, 10)
    _, approx = NeighbourIndex.build(base, ids, kind="ivf", device="cpu").search(queries, 10)
    assert recall_at_k(approx, exact) >= 0.9


def test_auto_kind_switches_at_threshold(small, item_ids):
    below = NeighbourIndex.build(small, item_ids, device="cpu", exact_threshold=601)
    above = NeighbourIndex.build(small, item_ids, device="cpu", exact_threshold=600)
    assert (below.kind, above.kind) == ("flat", "hnsw")


@pytest.mark.parametrize(("block", "base_block"), [(7, 50), (1000, 100_000), (1, 7)])
def test_torch_knn_equals_faiss_flat(small, block, base_block):
    queries = clustered(40, 24, n_clusters=6, noise=0.8, seed=6)
    index = faiss.IndexFlatIP(24)
    index.add(normalize(small))
    exp_sims, exp_idx = index.search(normalize(queries), 10)
    sims, idx = torch_knn(small, queries, 10, block=block, base_block=base_block)
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(sims, exp_sims, atol=1e-5)


def test_torch_knn_pads_when_k_exceeds_base():
    base = clustered(4, 8, n_clusters=1, noise=1.0, seed=7)
    sims, idx = torch_knn(base, base[:2], 6, base_block=3)
    assert (idx[:, :4] >= 0).all() and (idx[:, 4:] == -1).all()
    assert np.isneginf(sims[:, 4:]).all()
    np.testing.assert_array_equal(idx[:, 0], [0, 1])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_remove_keeps_other_ids_valid(kind):
    x = clustered(2_000, 16, n_clusters=8, noise=0.8, seed=8)
    ids = np.arange(2_000, dtype=np.int64) * 3 + 11
    index = NeighbourIndex.build(x, ids, kind=kind, device="cpu", nlist=16)
    gone = ids[::10]  # 10 %: below the compaction fraction
    index.remove(gone)
    assert len(index) == 1_800
    kept_rows = np.setdiff1d(np.arange(2_000), np.arange(0, 2_000, 10))
    _, found = index.search(x[kept_rows[:200]], 5)
    # Every remaining item still finds itself, under its own id.
    np.testing.assert_array_equal(found[:, 0], ids[kept_rows[:200]])
    _, found_gone = index.search(x[::10][:200], 5)
    assert not np.isin(found_gone, gone).any()
    with pytest.raises(UnknownItemError):
        index.search_ids(gone[:1], 3)
    with pytest.raises(UnknownItemError):
        index.remove(gone[:1])


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_remove_beyond_compaction_fraction_rebuilds(kind):
    x = clustered(1_000, 16, n_clusters=4, noise=0.8, seed=9)
    ids = np.arange(1_000, dtype=np.int64) + 500
    index = NeighbourIndex.build(x, ids, kind=kind, device="cpu", nlist=8)
    index.remove(ids[:400])
    assert len(index) == 600 and len(index._ids) == 600  # compacted
    np.testing.assert_array_equal(index.item_ids, ids[400:])
    _, found = index.search(x[400:], 1)
    np.testing.assert_array_equal(found[:, 0], ids[400:])


def test_remove_unknown_id_removes_nothing(small, item_ids):
    index = NeighbourIndex.build(small, item_ids, device="cpu")
    with pytest.raises(UnknownItemError):
        index.remove([item_ids[0], 999_999])
    assert len(index) == 600


def test_add_then_search(small, item_ids):
    index = NeighbourIndex.build(small[:500], item_ids[:500], device="cpu")
    index.add(small[500:], item_ids[500:])
    assert len(index) == 600
    _, found = index.search(small[500:], 1)
    np.testing.assert_array_equal(found[:, 0], item_ids[500:])
    with pytest.raises(ValueError, match="already"):
        index.add(small[:1], item_ids[:1])


def test_search_ids_excludes_self_even_with_duplicate():
    x = clustered(50, 8, n_clusters=2, noise=0.5, seed=10)
    x[1] = x[0]  # an exact duplicate ties with the query itself
    ids = np.arange(50, dtype=np.int64) + 100
    index = NeighbourIndex.build(x, ids, device="cpu")
    sims, found = index.search_ids([100, 101], 3)
    assert found[0, 0] == 101 and found[1, 0] == 100
    assert not (found[0] == 100).any() and not (found[1] == 101).any()
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-6)
    _, with_self = index.search_ids([105], 3, exclude_self=False)
    assert with_self[0, 0] == 105


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(item_ids=[0, 0, 1]), "unique"),
        (dict(item_ids=[0, -1, 2]), "non-negative"),
        (dict(item_ids=[0, 1]), "item ids"),
        (dict(kind="annoy"), "kind"),
        (dict(device="tpu"), "device"),
        (dict(vectors=np.array([[1.0, np.nan]] * 3)), "NaN"),
    ],
)
def test_build_rejects_bad_input(kwargs, message):
    args = dict(vectors=np.eye(3, 2, dtype=np.float32), item_ids=[0, 1, 2]) | kwargs
    with pytest.raises(ValueError, match=message):
        NeighbourIndex.build(args.pop("vectors"), args.pop("item_ids"), **args)


def test_search_rejects_wrong_dimension(small, item_ids):
    index = NeighbourIndex.build(small, item_ids, device="cpu")
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.ones((1, 5), np.float32), 3)


@pytest.mark.skipif(torch.cuda.is_available() or faiss.get_num_gpus() > 0, reason="has a GPU")
def test_cuda_without_gpu_raises(small, item_ids):
    with pytest.raises(DeviceUnavailableError):
        NeighbourIndex.build(small, item_ids, device="cuda")


def test_torch_backend_when_faiss_has_no_gpu(small, item_ids, monkeypatch):
    # Stand in for a CUDA machine with faiss-cpu: the torch path, run on the CPU.
    monkeypatch.setattr(index_mod, "_torch_cuda_available", lambda: True)
    monkeypatch.setattr(index_mod, "_torch_cuda_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    index = NeighbourIndex.build(small, item_ids, device="auto", exact_threshold=10)
    assert (index.backend, index.kind) == ("torch", "flat")
    reference = NeighbourIndex.build(small, item_ids, device="cpu", kind="flat")
    s1, i1 = index.search_ids(item_ids[:30], 8)
    s2, i2 = reference.search_ids(item_ids[:30], 8)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    index.remove(item_ids[:30])
    _, found = index.search(small[:30], 8)
    assert not np.isin(found, item_ids[:30]).any()
    with pytest.raises(ValueError, match="CPU only"):
        NeighbourIndex.build(small, item_ids, device="cuda", kind="hnsw")


def test_faiss_gpu_path_moves_flat_index(small, item_ids, monkeypatch):
    moved = []

    def fake_to_gpus(index):
        moved.append(type(index).__name__)
        return index

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", fake_to_gpus)
    index = NeighbourIndex.build(small, item_ids)
    assert index.backend == "faiss-gpu" and moved == ["IndexFlatIP"]
    cpu = NeighbourIndex.build(small, item_ids, device="cpu", kind="hnsw")
    assert cpu.backend == "faiss-cpu" and moved == ["IndexFlatIP"]


# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("batch_size", [1, 7, 128, 4096])
def test_knn_graph_equals_brute_numpy(small, batch_size):
    sims, idx = knn_graph(small, 6, batch_size=batch_size)
    exp_sims, exp_idx = brute_knn(small, small, 7)
    assert sims.shape == idx.shape == (600, 6)
    assert not (idx == np.arange(600)[:, None]).any()
    np.testing.assert_array_equal(idx, exp_idx[:, 1:])
    np.testing.assert_allclose(sims, exp_sims[:, 1:], atol=1e-5)


def test_knn_graph_batch_size_does_not_change_result(small):
    reference = knn_graph(small, 10, batch_size=600)
    for batch_size in (1, 13, 256):
        sims, idx = knn_graph(small, 10, batch_size=batch_size)
        np.testing.assert_array_equal(idx, reference[1])
        np.testing.assert_allclose(sims, reference[0], atol=1e-6)


def test_knn_graph_with_prebuilt_hnsw_index(small):
    index = NeighbourIndex.build(small, np.arange(600), kind="hnsw", device="cpu")
    _, idx = knn_graph(small, 10, index=index)
    _, exact = knn_graph(small, 10)
    assert not (idx == np.arange(600)[:, None]).any()
    assert recall_at_k(idx, exact) >= 0.95


def test_knn_graph_rejects_mismatched_index(small, item_ids):
    index = NeighbourIndex.build(small, item_ids, device="cpu")
    with pytest.raises(ValueError, match="0 .. N-1"):
        knn_graph(small, 5, index=index)


# --------------------------------------------------------------------------- #
def test_recall_at_k_known_values():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, 1], [5, 0, 0, -1]])
    assert recall_at_k(approx, exact) == pytest.approx((3 + 1) / 8)
    assert recall_at_k(exact, exact) == 1.0
    # Missing exact entries are not counted.
    assert recall_at_k([[1, 2]], [[1, -1]]) == 1.0


def test_recall_at_k_rejects_row_mismatch():
    with pytest.raises(ValueError):
        recall_at_k(np.zeros((2, 3)), np.zeros((3, 3)))


def test_drop_self_keeps_order_and_drops_last_when_self_missing():
    sims = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], dtype=np.float32)
    ids = np.array([[4, 1, 2], [5, 6, 7]])
    s, i = neighbours._drop_self(sims, ids, np.array([1, 9]), 2)
    np.testing.assert_array_equal(i, [[4, 2], [5, 6]])
    np.testing.assert_array_equal(s, np.array([[0.9, 0.7], [0.9, 0.8]], dtype=np.float32))
