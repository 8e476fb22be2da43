import multiprocessing
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from storage.vectors import VectorStore, VectorStoreError

DIM = 8


def vecs_for(ids, dim=DIM, offset=0.0):
    """Vectors whose every entry encodes the id, so rows can be checked against ids."""
    ids = np.asarray(ids, dtype=np.float32)
    return np.repeat(ids[:, None] + offset, dim, axis=1).astype(np.float32)


@pytest.fixture
def store(tmp_path):
    return VectorStore(tmp_path / "vec", "resnet18.random0.64px", DIM)


def chunk_files(store):
    return sorted(p.name for p in store.path.glob("chunk-*.npz"))


def test_batches_then_matrix_equals_concatenation(store):
    batches = [np.arange(0, 5), np.arange(10, 13), np.arange(5, 10)]
    rng = np.random.default_rng(0)
    mats = [rng.normal(size=(len(b), DIM)).astype(np.float32) for b in batches]
    for ids, m in zip(batches, mats):
        store.add(ids, m)
    assert chunk_files(store), "appends should land in chunk files before a merge"
    ids, vectors = store.matrix()
    np.testing.assert_array_equal(ids, np.concatenate(batches))
    np.testing.assert_array_equal(vectors, np.concatenate(mats))
    assert vectors.dtype == np.float32
    assert isinstance(vectors, np.memmap) and not vectors.flags.writeable
    assert chunk_files(store) == []
    np.testing.assert_array_equal(store.ids(), np.concatenate(batches))
    assert len(store) == 13


def test_matrix_without_mmap_loads_into_memory(store):
    store.add([1, 2], vecs_for([1, 2]))
    ids, vectors = store.matrix(mmap=False)
    assert not isinstance(vectors, np.memmap)
    np.testing.assert_array_equal(vectors, vecs_for([1, 2]))


def test_reopen_sees_same_content_and_checks_key_and_dim(store, tmp_path):
    store.add([4, 2], vecs_for([4, 2]))
    again = VectorStore(store.path, store.key, DIM)
    np.testing.assert_array_equal(again.get([2, 4]), vecs_for([2, 4]))
    assert again.version == store.version
    with pytest.raises(VectorStoreError, match="8-d"):
        VectorStore(store.path, store.key, DIM + 1)
    with pytest.raises(VectorStoreError, match="resnet18"):
        VectorStore(store.path, "other.key", DIM)
    with pytest.raises(ValueError, match="key"):
        VectorStore(tmp_path / "bad", "has/slash", DIM)


def test_get_returns_rows_in_the_order_asked(store):
    store.add([7, 3, 9], vecs_for([7, 3, 9]))
    store.add([1], vecs_for([1]))
    np.testing.assert_array_equal(store.get([9, 1, 7, 9]), vecs_for([9, 1, 7, 9]))
    assert store.get([]).shape == (0, DIM)


def test_get_missing_ids_raises_keyerror_naming_them(store):
    store.add([1, 2], vecs_for([1, 2]))
    with pytest.raises(KeyError, match="1 ids .*: 42"):
        store.get([2, 42])


def test_has_mask(store):
    store.add([1, 2, 3], vecs_for([1, 2, 3]))
    np.testing.assert_array_equal(store.has([3, 4, 1, 1]), [True, False, True, True])
    assert store.has([]).shape == (0,)


def test_adding_an_existing_id_replaces_its_vector(store):
    store.add([1, 2, 3], vecs_for([1, 2, 3]))
    store.compact()
    store.add([2], vecs_for([2], offset=100.0))
    assert len(store) == 3
    np.testing.assert_array_equal(store.get([1, 2, 3]), vecs_for([1, 102, 3]))
    ids, vectors = store.matrix()
    assert sorted(ids.tolist()) == [1, 2, 3]


@pytest.mark.parametrize(
    "ids, vectors, match",
    [
        ([1, 2], np.zeros((2, DIM + 1), np.float32), "shape"),
        ([1, 2], np.zeros((2,), np.float32), "shape"),
        ([1, 2], np.zeros((3, DIM), np.float32), "2 ids but 3"),
        ([1, 2], np.zeros((2, DIM), np.int32), "floating"),
        ([1, 1], np.zeros((2, DIM), np.float32), "duplicate"),
        ([1.5, 2], np.zeros((2, DIM), np.float32), "integers"),
        ([1, 2], np.array([[0] * DIM, [np.nan] * DIM], np.float32), "1 vectors .*NaN.*ids 2"),
        ([1, 2], np.full((2, DIM), np.inf), "2 vectors"),
        ([1, 2], np.full((2, DIM), 1e300), "inf"),  # overflows float32
    ],
)
def test_invalid_adds_are_rejected_and_change_nothing(store, ids, vectors, match):
    store.add([9], vecs_for([9]))
    before = store.version
    with pytest.raises(ValueError, match=match):
        store.add(ids, vectors)
    assert store.version == before
    np.testing.assert_array_equal(store.ids(), [9])


def test_float64_is_stored_as_float32(store):
    store.add([1], np.full((1, DIM), 0.5, np.float64))
    assert store.get([1]).dtype == np.float32


def test_version_changes_with_content_only(store):
    v0 = store.version
    store.add([1, 2], vecs_for([1, 2]))
    v1 = store.version
    assert v1 != v0
    store.compact()
    assert store.version == v1, "a merge does not change content"
    store.add([3], vecs_for([3]))
    v2 = store.version
    assert v2 not in (v0, v1)
    assert store.remove([99]) == 0
    assert store.version == v2
    assert store.remove([1, 99]) == 1
    assert store.version not in (v0, v1, v2)
    assert store.version.startswith(store.key)


def test_version_differs_between_stores_of_same_key(tmp_path):
    a = VectorStore(tmp_path / "a", "k", DIM)
    b = VectorStore(tmp_path / "b", "k", DIM)
    assert a.version != b.version


def test_remove(store):
    store.add([1, 2, 3, 4], vecs_for([1, 2, 3, 4]))
    store.add([5], vecs_for([5]))  # still in a chunk
    assert store.remove([2, 5, 5, 77]) == 2
    ids, vectors = store.matrix()
    np.testing.assert_array_equal(ids, [1, 3, 4])
    np.testing.assert_array_equal(vectors, vecs_for([1, 3, 4]))
    with pytest.raises(KeyError, match="5"):
        store.get([5])
    assert store.remove([1, 3, 4]) == 3
    ids, vectors = store.matrix()
    assert ids.shape == (0,) and vectors.shape == (0, DIM)
    store.add([8], vecs_for([8]))
    np.testing.assert_array_equal(store.get([8]), vecs_for([8]))


def test_empty_store(store):
    ids, vectors = store.matrix()
    assert ids.shape == (0,) and ids.dtype == np.int64
    assert vectors.shape == (0, DIM) and vectors.dtype == np.float32
    assert len(store) == 0
    store.add([], np.zeros((0, DIM), np.float32))
    assert chunk_files(store) == []


def test_leftover_tmp_files_from_a_crash_are_ignored_then_cleaned(store):
    store.add([1, 2], vecs_for([1, 2]))
    # a writer died half-way through a chunk and through a merge
    (store.path / "chunk-000000099-2.npz.123-abcd.tmp").write_bytes(b"half a zip")
    (store.path / "vectors.000042.npy.123-abcd.tmp").write_bytes(b"\x93NUMPY garbage")
    version = store.version
    np.testing.assert_array_equal(store.ids(), [1, 2])
    store.add([3], vecs_for([3]))
    assert store.version != version
    ids, vectors = store.matrix()
    np.testing.assert_array_equal(ids, [1, 2, 3])
    np.testing.assert_array_equal(vectors, vecs_for([1, 2, 3]))
    assert not list(store.path.glob("*.tmp"))


def test_chunk_left_behind_after_a_merge_is_not_applied_again(store, tmp_path):
    store.add([1, 2], vecs_for([1, 2]))
    (first,) = store.path.glob("chunk-*.npz")
    saved = tmp_path / first.name
    shutil.copy(first, saved)
    store.add([1], vecs_for([1], offset=50.0))
    store.compact()
    # crash between the switch of meta.json and the deletion of merged chunks
    shutil.copy(saved, store.path / first.name)
    np.testing.assert_array_equal(store.get([1, 2]), vecs_for([51, 2]))
    np.testing.assert_array_equal(store.ids(), [2, 1])


def test_appends_merge_automatically_after_max_chunks(tmp_path):
    store = VectorStore(tmp_path / "v", "k", DIM, max_chunks=3)
    for i in range(3):
        store.add([i], vecs_for([i]))
    assert chunk_files(store) == []
    assert len(list(store.path.glob("vectors.*.npy"))) == 1
    np.testing.assert_array_equal(store.get([0, 1, 2]), vecs_for([0, 1, 2]))


def _writer(directory, key, n_batches):
    store = VectorStore(directory, key, DIM, max_chunks=4)
    for b in range(n_batches):
        ids = np.arange(b * 5, b * 5 + 5)
        store.add(ids, vecs_for(ids))


@pytest.mark.skipif(sys.platform == "win32", reason="needs fork")
def test_concurrent_reader_never_sees_a_torn_state(tmp_path):
    directory = tmp_path / "v"
    reader = VectorStore(directory, "k", DIM)
    proc = multiprocessing.get_context("fork").Process(target=_writer, args=(directory, "k", 60))
    proc.start()
    seen = 0
    while proc.is_alive() or seen == 0:
        ids, vectors = reader.matrix()
        assert len(ids) == len(vectors)
        np.testing.assert_array_equal(vectors[:, 0], ids.astype(np.float32))
        seen += 1
    proc.join(timeout=30)
    assert proc.exitcode == 0
    ids, vectors = reader.matrix()
    np.testing.assert_array_equal(np.sort(ids), np.arange(300))
    np.testing.assert_array_equal(vectors[:, 0], ids.astype(np.float32))


def _mapped_rss_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_gather_rows_copies_and_releases_the_mapped_pages(tmp_path):
    from storage.vector_files import gather_rows

    rng = np.random.default_rng(0)
    data = rng.normal(size=(40_000, 256)).astype(np.float32)  # 39 MiB
    path = tmp_path / "v.npy"
    np.save(path, data)
    mapped = np.load(path, mmap_mode="r")
    rows = np.concatenate([np.arange(0, 40_000, 3), [5, 5, 39_999]])
    got = gather_rows(mapped, rows, block_rows=4096)
    np.testing.assert_array_equal(got, data[rows])
    assert got.dtype == np.float32 and got.flags.writeable
    if Path("/proc/self/smaps").exists():
        assert _mapped_rss_kib(path) < 8 * 1024  # at most about one block of 4 MiB stays resident
        np.asarray(mapped[rows]).sum()  # the plain fancy index leaves the whole file resident
        assert _mapped_rss_kib(path) > 30 * 1024
    np.testing.assert_array_equal(gather_rows(data, rows[:10]), data[rows[:10]])  # plain arrays too
