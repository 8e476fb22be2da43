import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from labeling.device import DeviceUnavailableError, pick_device
from labeling.embed.backbones import get_backbone
from labeling.embed.precomputed import load_precomputed
from labeling.embed.run import EmbedDataset, embed_paths, embed_project_items
from storage.vectors import VectorStore

N_GOOD = 12
CORRUPT = 5  # position of the corrupt file among the paths


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i in range(N_GOOD):
        pixels = rng.integers(0, 256, (16 + i, 20, 3), dtype=np.uint8)
        path = folder / f"img{i:02d}.png"
        Image.fromarray(pixels).save(path)
        out.append(path)
    bad = folder / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    out.insert(CORRUPT, bad)
    return out


@pytest.fixture(scope="module")
def backbone():
    return get_backbone("efficientnet_lite0", image_size=64)


@pytest.fixture(scope="module")
def reference(paths, backbone):
    return embed_paths(paths, backbone, device="cpu", batch_size=4, progress=False)


class Stop(Exception):
    pass


def test_shape_and_ok_mask(reference, backbone, paths):
    vectors, ok = reference
    assert vectors.shape == (len(paths), backbone.dim) and vectors.dtype == np.float32
    assert ok.dtype == bool
    assert np.flatnonzero(~ok).tolist() == [CORRUPT]
    assert not vectors[CORRUPT].any()
    good = vectors[ok]
    assert np.isfinite(good).all()
    assert np.abs(good[0] - good[1]).max() > 1e-3


def test_deterministic_and_independent_of_batch_size(reference, backbone, paths):
    again, ok_again = embed_paths(paths, backbone, device="cpu", batch_size=4, progress=False)
    np.testing.assert_array_equal(again, reference[0])
    big, ok_big = embed_paths(paths, backbone, device="cpu", batch_size=16, progress=False)
    np.testing.assert_allclose(big, reference[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ok_big, reference[1])


def test_worker_processes_give_the_same_vectors(reference, backbone, paths):
    vectors, ok = embed_paths(paths, backbone, device="cpu", batch_size=4, num_workers=2, progress=False)
    np.testing.assert_array_equal(vectors, reference[0])
    np.testing.assert_array_equal(ok, reference[1])


def test_progress_callable_and_on_batch(reference, backbone, paths):
    calls, batches = [], []
    embed_paths(paths, backbone, device="cpu", batch_size=5, progress=lambda d, t: calls.append((d, t)),
                on_batch=lambda rows, vecs, ok: batches.append((rows, vecs, ok)))
    assert calls == [(5, 13), (10, 13), (13, 13)]
    rows = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(rows, np.arange(len(paths)))
    np.testing.assert_allclose(np.concatenate([b[1] for b in batches]), reference[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), reference[1])


def test_tqdm_bar_can_be_shown(backbone, paths, capsys):
    embed_paths(paths[:2], backbone, device="cpu", progress=True)
    assert "2/2" in capsys.readouterr().err


def test_empty_input(backbone):
    vectors, ok = embed_paths([], backbone, device="cpu", progress=False)
    assert vectors.shape == (0, backbone.dim) and ok.shape == (0,)


def test_dataset_with_injected_loader(backbone, paths):
    ds = EmbedDataset(paths, backbone.transform, loader=lambda p: Image.open(p).convert("RGB"))
    index, tensor, ok = ds[CORRUPT]
    assert (index, ok) == (CORRUPT, False)
    assert tensor.shape == (3, 64, 64) and not tensor.any()
    index, tensor, ok = ds[0]
    assert (index, ok) == (0, True) and tensor.shape == (3, 64, 64) and tensor.any()


def test_embed_project_items_is_resumable(reference, backbone, paths, tmp_path):
    store = VectorStore(tmp_path / "vec", backbone.fingerprint, backbone.dim)
    ids = np.arange(100, 100 + len(paths))
    first = embed_project_items(store, ids, paths, backbone, device="cpu", batch_size=4, progress=False)
    assert first == {"total": 13, "already": 0, "embedded": 12, "failed": 1, "failed_ids": [100 + CORRUPT]}
    version = store.version
    second = embed_project_items(store, ids, paths, backbone, device="cpu", batch_size=4, progress=False)
    assert (second["already"], second["embedded"], second["failed"]) == (12, 0, 1)
    assert store.version == version
    good = ids[reference[1]]
    np.testing.assert_allclose(store.get(good), reference[0][reference[1]], rtol=1e-4, atol=1e-4)


def test_interrupted_run_resumes_with_the_rest(reference, backbone, paths, tmp_path):
    store = VectorStore(tmp_path / "vec", backbone.fingerprint, backbone.dim)
    ids = np.arange(len(paths))

    def crash_after_first_batch(done, total):
        raise Stop

    with pytest.raises(Stop):
        embed_project_items(store, ids, paths, backbone, device="cpu", batch_size=4,
                            progress=crash_after_first_batch)
    np.testing.assert_array_equal(np.sort(store.ids()), [0, 1, 2, 3])
    seen = []
    rest = embed_project_items(store, ids, paths, backbone, device="cpu", batch_size=4,
                               progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (9, 9)
    assert (rest["already"], rest["embedded"], rest["failed"]) == (4, 8, 1)
    np.testing.assert_allclose(store.get(ids[reference[1]]), reference[0][reference[1]], rtol=1e-4, atol=1e-4)


def test_embed_project_items_validates_inputs(backbone, paths, tmp_path):
    store = VectorStore(tmp_path / "vec", backbone.fingerprint, backbone.dim)
    with pytest.raises(ValueError, match="as long as paths"):
        embed_project_items(store, [1, 2], paths, backbone, device="cpu", progress=False)
    with pytest.raises(ValueError, match="duplicates"):
        embed_project_items(store, [1, 1], paths[:2], backbone, device="cpu", progress=False)
    other = VectorStore(tmp_path / "other", "resnet18.random0.64px", 512)
    with pytest.raises(ValueError, match="does not belong"):
        embed_project_items(other, [1], paths[:1], backbone, device="cpu", progress=False)


def test_pick_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert pick_device("CPU") == torch.device("cpu")
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available.*--device cpu"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu-please")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


# ----------------------------------------------------------------------------- precomputed


@pytest.fixture
def matrix():
    return np.arange(12, dtype=np.float64).reshape(4, 3)


def test_npy_with_integer_ids(tmp_path, matrix):
    np.save(tmp_path / "e.npy", matrix)
    np.save(tmp_path / "ids.npy", np.array([7, 3, 9, 1]))
    keys, vectors = load_precomputed(tmp_path / "e.npy", ids_path=tmp_path / "ids.npy")
    assert keys.dtype == np.int64 and keys.tolist() == [7, 3, 9, 1]
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, matrix)


def test_npy_with_txt_and_csv_ids(tmp_path, matrix):
    np.save(tmp_path / "e.npy", matrix)
    (tmp_path / "ids.txt").write_text("a.png\nb.png\n sub/c.png\nd.png\n\n")
    keys, _ = load_precomputed(tmp_path / "e.npy", ids_path=tmp_path / "ids.txt")
    assert keys == ["a.png", "b.png", "sub/c.png", "d.png"]
    pd.DataFrame({"uri": ["a", "b", "c", "d"], "x": 1}).to_csv(tmp_path / "u.csv", index=False)
    keys, _ = load_precomputed(tmp_path / "e.npy", ids_path=tmp_path / "u.csv")
    assert keys == ["a", "b", "c", "d"]
    pd.DataFrame({"item_id": [4, 5, 6, 7]}).to_csv(tmp_path / "i.csv", index=False)
    keys, _ = load_precomputed(tmp_path / "e.npy", ids_path=tmp_path / "i.csv")
    assert keys.tolist() == [4, 5, 6, 7]
    np.save(tmp_path / "s.npy", np.array(["p", "q", "r", "s"]))
    keys, _ = load_precomputed(tmp_path / "e.npy", ids_path=tmp_path / "s.npy")
    assert keys == ["p", "q", "r", "s"]


def test_parquet_embedding_list_column(tmp_path, matrix):
    table = pa.table({"uri": ["a", "b", "c", "d"], "embedding": [list(r) for r in matrix]})
    pq.write_table(table, tmp_path / "e.parquet")
    keys, vectors = load_precomputed(tmp_path / "e.parquet")
    assert keys == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(vectors, matrix)


def test_parquet_numeric_columns(tmp_path, matrix):
    frame = pd.DataFrame(matrix, columns=["f0", "f1", "f2"])
    frame.insert(0, "item_id", [10, 11, 12, 13])
    frame["note"] = "text"
    frame.to_parquet(tmp_path / "e.parquet")
    keys, vectors = load_precomputed(tmp_path / "e.parquet")
    assert keys.tolist() == [10, 11, 12, 13]
    np.testing.assert_array_equal(vectors, matrix)


def _npy(tmp_path, arr, ids):
    np.save(tmp_path / "e.npy", arr)
    np.save(tmp_path / "ids.npy", np.asarray(ids))
    return tmp_path / "e.npy", tmp_path / "ids.npy"


@pytest.mark.parametrize(
    "arr, ids, match",
    [
        (np.zeros(4), [1, 2, 3, 4], "2-D"),
        (np.zeros((2, 2, 2)), [1, 2], "2-D"),
        (np.zeros((4, 3)), [1, 2, 3], "4 embedding rows but 3 ids"),
        (np.zeros((0, 3)), np.zeros(0, np.int64), "no embeddings"),
        (np.array([[0, 1.0], [np.nan, 1], [2, 3], [np.inf, 0]]), [5, 6, 7, 8],
         r"2 rows have NaN or inf values \(first ids: 6, 8\)"),
        (np.zeros((3, 2)), [4, 9, 4], r"1 ids occur more than once \(first: 4\)"),
        (np.array([["a", "b"]]), [1], "numeric"),
    ],
)
def test_precomputed_validation_errors(tmp_path, arr, ids, match):
    path, ids_path = _npy(tmp_path, arr, ids)
    with pytest.raises(ValueError, match=match):
        load_precomputed(path, ids_path=ids_path)


def test_precomputed_file_errors(tmp_path, matrix):
    np.save(tmp_path / "e.npy", matrix)
    with pytest.raises(ValueError, match="needs an ids file"):
        load_precomputed(tmp_path / "e.npy")
    with pytest.raises(FileNotFoundError):
        load_precomputed(tmp_path / "missing.npy", ids_path=tmp_path / "ids.npy")
    (tmp_path / "e.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported embeddings file type .h5"):
        load_precomputed(tmp_path / "e.h5")
    (tmp_path / "ids.txt").write_text("a\n\nb\nc\n")
    with pytest.raises(ValueError, match="line 2 is empty"):
        load_precomputed(tmp_path / "e.npy", ids_path=tmp_path / "ids.txt")
    pd.DataFrame({"name": list("abcd")}).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(ValueError, match="no key column; expected one of item_id, uri"):
        load_precomputed(tmp_path / "e.npy", ids_path=tmp_path / "n.csv")
    pq.write_table(pa.table({"key": ["a"], "embedding": [[1.0, 2.0]]}), tmp_path / "k.parquet")
    with pytest.raises(ValueError, match="no key column"):
        load_precomputed(tmp_path / "k.parquet")
    pq.write_table(pa.table({"uri": ["a", "b"], "embedding": [[1.0, 2.0], [1.0]]}), tmp_path / "r.parquet")
    with pytest.raises(ValueError, match="different lengths"):
        load_precomputed(tmp_path / "r.parquet")


# ------------------------------------------------------------------ in-process decoding


@pytest.fixture(scope="module")
def mixed_paths(tmp_path_factory):
    """Images of every kind the split preprocessing treats differently: RGB, grey (also 16-bit,
    with transparency, with alpha), palette, CMYK, EXIF-rotated, tiny, non-square; one corrupt."""
    folder = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(7)

    def noise(w, h, c=3):
        shape = (h, w, c) if c > 1 else (h, w)
        return rng.integers(0, 256, shape, dtype=np.uint8)

    images = {
        "rgb.png": Image.fromarray(noise(40, 30)),
        "grey.png": Image.fromarray(noise(28, 28, 1)),
        "grey-wide.png": Image.fromarray(noise(90, 20, 1)),
        "grey16.png": Image.fromarray(rng.integers(0, 65535, (25, 33), dtype=np.uint16)),
        "grey-alpha.png": Image.fromarray(noise(20, 20, 2), "LA"),
        "palette.png": Image.fromarray(noise(30, 30)).convert("P"),
        "dot.png": Image.fromarray(noise(1, 1, 1)),
        "big.jpg": Image.fromarray(noise(300, 200)),
    }
    out = []
    for name, im in images.items():
        path = folder / name
        im.save(path)
        out.append(path)
    trns = folder / "grey-trns.png"
    Image.fromarray(noise(16, 16, 1)).save(trns, transparency=7)
    cmyk = folder / "cmyk.jpg"
    Image.new("CMYK", (16, 12), (10, 20, 30, 40)).save(cmyk)
    rot = folder / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(noise(40, 20, 1)).save(rot, exif=exif)
    bad = folder / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return out + [trns, cmyk, rot, bad]


@pytest.mark.parametrize("thread", [True, False])
@pytest.mark.parametrize("size", [64, 112])
def test_in_process_batches_equal_the_per_image_transform(mixed_paths, thread, size):
    from labeling.embed.run import _in_process_batches
    from labeling.data.images import load_rgb

    backbone = get_backbone("efficientnet_lite0", image_size=size)
    expected, good = [], []
    for path in mixed_paths:
        try:
            expected.append(backbone.transform(load_rgb(path)))
            good.append(True)
        except ValueError:
            expected.append(None)
            good.append(False)
    blank = torch.zeros_like(next(x for x in expected if x is not None))
    expected = torch.stack([blank if x is None else x for x in expected])
    batches = list(_in_process_batches(mixed_paths, backbone.transform, 5, None, thread=thread))
    rows = torch.cat([b[0] for b in batches])
    images = torch.cat([b[1] for b in batches])
    assert rows.tolist() == list(range(len(mixed_paths)))
    assert torch.cat([b[2] for b in batches]).tolist() == good
    assert images.dtype == torch.float32 and images.shape == expected.shape
    assert torch.equal(images, expected)  # the same numbers, not merely close
    assert all(b[1].is_contiguous(memory_format=torch.channels_last) for b in batches)


def test_in_process_embedding_equals_worker_processes(mixed_paths, backbone):
    here, ok_here = embed_paths(mixed_paths, backbone, device="cpu", batch_size=4, num_workers=0, progress=False)
    workers, ok_workers = embed_paths(mixed_paths, backbone, device="cpu", batch_size=4, num_workers=1,
                                      progress=False)
    np.testing.assert_array_equal(ok_here, ok_workers)
    np.testing.assert_array_equal(here, workers)
    assert ok_here.tolist() == [True] * (len(mixed_paths) - 1) + [False]


def test_cpu_runs_start_no_worker_processes(monkeypatch, backbone, paths):
    import labeling.embed.run as embed_mod

    monkeypatch.setattr(embed_mod, "SMALL_JOB", 1)
    monkeypatch.setattr(embed_mod, "DataLoader", lambda *a, **k: pytest.fail("DataLoader started on CPU"))
    vectors, ok = embed_paths(paths, backbone, device="cpu", batch_size=4, progress=False)
    assert ok.sum() == N_GOOD


def test_a_failing_callback_stops_the_decoding_thread(backbone, paths):
    import threading

    def stop(rows, vecs, ok):
        raise Stop

    with pytest.raises(Stop):
        embed_paths(paths, backbone, device="cpu", batch_size=2, on_batch=stop, progress=False)
    assert not [t for t in threading.enumerate() if t.name.startswith("embed-decode")]


def test_resolve_uris_match_resolve_uri(tmp_path):
    import os

    from labeling.embed.pipeline import resolve_uris
    from labeling.project import Project, ProjectError

    project = Project(tmp_path / "p", create=True)
    root = project.root
    (root / "a").mkdir()
    (root / "real").mkdir()
    os.symlink(root / "real", root / "alias")
    os.symlink(root / "real" / "x.png", root / "a" / "link.png")
    uris = ["a/x.png", "alias/y.png", "a/link.png", "a/../b.png", "a/./c.png", "missing/d.png", "ç é.png"]
    assert resolve_uris(project, uris) == [project.resolve_uri(u) for u in uris]
    os.symlink(tmp_path, root / "out")
    for bad in ("../x.png", "out/x.png"):
        with pytest.raises(ProjectError, match="leaves the project root"):
            project.resolve_uri(bad)
        with pytest.raises(ProjectError, match="leaves the project root"):
            resolve_uris(project, ["a/x.png", bad])
