"""The benchmarks of ``python -m bench``, each against a baseline measured in the same run.

Every benchmark returns rows ``{"benchmark", "case", "value", "unit", "baseline", "baseline_value",
"ratio", "ratio_means", "target", "met", "note"}``. ``ratio`` reads as ``ratio_means`` says: for
speed, how many times faster Quorum is than the baseline; for memory, times the vectors' size;
for throughput, Quorum's share of the bare loop. ``met`` says whether the issue's target holds
(None where no target applies to that size).

What is timed is the product's own code path: rounds are ``labeling.model.rounds.train_round`` on real
projects (DuckDB, vector store, cached kNN graph, predictions file), the neighbourhood view is
``LabelingService.neighbours``, the map is ``labeling.views.layouts.umap_2d_in_subprocess``, embedding
is ``import_folder`` + ``embed_project`` on the bundled demo images.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GRAPH_K = 15


# ---- rows and timing ---------------------------------------------------------------------------
def row(benchmark: str, case: str, value, unit: str, baseline: str, baseline_value, *, ratio=None,
        ratio_means: str = "x faster", target: str | None = None, met=None, note: str = "") -> dict:
    """One table row. Without ``ratio``, it is ``baseline_value / value`` (a speed-up)."""
    if ratio is None and value and baseline_value:
        ratio = baseline_value / value
    return {"benchmark": benchmark, "case": case, "value": value, "unit": unit, "baseline": baseline,
            "baseline_value": baseline_value, "ratio": ratio, "ratio_means": ratio_means, "target": target,
            "met": met, "note": note}


def clock(fn, *args, **kwargs):
    """``(seconds, result)`` of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def clustered(n: int, d: int, c: int, *, seed: int = 0, latent: int = 16, spread: float = 0.35,
              noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Seeded synthetic embeddings (float32) and each row's cluster.

    Each of the ``c`` clusters is a ``latent``-dimensional Gaussian on its own random subspace around
    its centre, plus isotropic noise: low intrinsic dimension, as image embeddings have, so nearest
    neighbours are meaningful and approximate search behaves as on real data. Centres are close
    enough that classes overlap linearly: with 100 clusters as 10 classes (cluster % 10), a logistic
    regression on 10k labels reaches about 0.8 accuracy, and the nearest neighbour is nearly always
    in the item's own cluster. Built cluster by cluster, so 1M x 1280 needs no float64 copy."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d), dtype=np.float32) * spread
    y = rng.integers(0, c, n)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x *= np.float32(noise)
    for k in range(c):
        rows = np.flatnonzero(y == k)
        basis = rng.standard_normal((latent, d), dtype=np.float32) / np.float32(np.sqrt(latent))
        x[rows] += centres[k] + rng.standard_normal((len(rows), latent), dtype=np.float32) @ basis
    return x, y


def project_data(n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The vectors of the benchmark projects: clusters of about 1,000 items (at least 100)."""
    return clustered(n, d, max(100, n // 1000), seed=n + d)


# ---- synthetic projects ------------------------------------------------------------------------
def new_project(root: Path, x: np.ndarray):
    """A project whose ``len(x)`` items carry the vectors ``x`` (no image files), no classes yet."""
    from labeling.project import Project
    from storage import items as items_q
    from storage import rounds as rounds_q
    from storage.vectors import VectorStore

    n, d = x.shape
    key = f"bench-{d}"
    project = Project(root, create=True)
    with project.db.session() as con:
        con.execute("INSERT INTO items (uri, sha256, width, height, status) "
                    "SELECT 'img/' || i || '.png', md5(i::VARCHAR), 32, 32, 'ok' FROM range(?) t(i)", [n])
        ids, _ = items_q.ok_items(con)
        rounds_q.set_setting(con, "vector_key", key)
        rounds_q.set_setting(con, "vector_dim", str(d))
        rounds_q.set_setting(con, "backbone", "bench")
    store = VectorStore(project.vectors_dir(key), key=key, dim=d)
    for s in range(0, n, 250_000):
        store.add(ids[s:s + 250_000], x[s:s + 250_000])
    store.compact()
    return project


def label_project(project, y: np.ndarray, n_classes: int, n_labels: int, *, seed: int = 1) -> None:
    """``n_classes`` classes (cluster ``y % n_classes``) and ``n_labels`` human labels at random."""
    from storage import items as items_q
    from storage import labels as labels_q

    with project.db.session() as con:
        ids, _ = items_q.ok_items(con)
        cls = labels_q.ensure_classes(con, [f"class-{k}" for k in range(n_classes)], user="bench")
        pick = np.random.default_rng(seed).choice(len(ids), n_labels, replace=False)
        events = [labels_q.Event(int(ids[i]), cls[f"class-{int(y[i]) % n_classes}"]) for i in pick]
        labels_q.append_events(con, events, user="bench", source="import", batch_id=str(uuid.uuid4()),
                               model_round=None)


def copy_project(src: Path, dest: Path) -> Path:
    from storage.db import release_files

    release_files()  # the database file is complete on disk only once this process lets go of it
    shutil.copytree(src, dest)
    return dest


def cluster_graph(x: np.ndarray, y: np.ndarray, k: int = GRAPH_K) -> tuple[np.ndarray, np.ndarray]:
    """The exact kNN graph of clustered synthetic vectors, searched within each cluster with
    ``labeling.search.neighbours.torch_knn`` (blockwise matrix products). The clusters lie far apart, so
    every nearest neighbour is in the item's own cluster and the graph equals the exact one (the
    benchmark checks its recall on sampled items)."""
    from labeling.search.neighbours import torch_knn

    sims = np.empty((len(x), k), np.float32)
    idx = np.empty((len(x), k), np.int64)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        s, i = torch_knn(x[rows], x[rows], k + 1)
        keep = i != np.arange(len(rows))[:, None]
        keep[keep.all(axis=1), -1] = False  # self not found among the k+1 (duplicates): drop the last
        sims[rows] = s[keep].reshape(len(rows), k)
        idx[rows] = rows[i[keep].reshape(len(rows), k)]
    return sims, idx


@contextlib.contextmanager
def given_graph(graph: tuple[np.ndarray, np.ndarray]):
    """While active, ``knn_graph`` returns ``graph``, so the app's graph cache stores it for the
    project's vectors. Used at 1M items, where the default HNSW build plus a query per item takes
    most of an hour on two cores; the round reads the cached graph either way."""
    import labeling.search.neighbours as nb

    original = nb.knn_graph
    nb.knn_graph = lambda vectors, k, **kw: (graph[0][:, :k], graph[1][:, :k])
    try:
        yield
    finally:
        nb.knn_graph = original


def cache_graph(project) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Build (and cache) the project's kNN graph as the app does; ``(seconds, graph)``."""
    from labeling.embed.pipeline import knn_graph_cached, load_vectors

    pv = load_vectors(project)
    return clock(knn_graph_cached, project, pv, k=GRAPH_K)


class Stages:
    """Wall time of a round's main stages, by wrapping the functions ``train_round`` calls."""

    TARGETS = (("labeling.model.rounds", None, "vectors_of", "load vectors"),
               ("labeling.model.rounds", None, "knn_graph_cached", "cached graph"),
               ("labeling.model.ensemble", "FeatureScaler", "transform", "scale"),
               ("labeling.model.learner", None, "label_propagation", "propagation"),
               ("labeling.model.learner", None, "fit_ensemble", "train heads"),
               ("labeling.model.ensemble", "Ensemble", "predict_proba", "rescore"),
               ("labeling.active.acquisition", None, "all_scores", "scores"),
               ("labeling.active.selection", None, "default_policy", "rank"),
               ("labeling.model.rounds", None, "save_predictions", "save"))

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def watch(self):
        import importlib

        saved = []
        for module, cls, attr, label in self.TARGETS:
            owner = importlib.import_module(module)
            if cls is not None:
                owner = getattr(owner, cls)
            fn = getattr(owner, attr)
            saved.append((owner, attr, owner.__dict__[attr] if cls is not None else fn))
            setattr(owner, attr, self._wrap(fn if cls is None else owner.__dict__[attr], label))
        try:
            yield self
        finally:
            for owner, attr, fn in saved:
                setattr(owner, attr, fn)

    def _wrap(self, fn, label):
        stages = self

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stages.seconds[label] = stages.seconds.get(label, 0.0) + time.perf_counter() - t0

        return wrapper

    def summary(self, top: int = 4) -> str:
        parts = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{k} {v:.2f} s" for k, v in parts)


# ---- round latency -----------------------------------------------------------------------------
def sklearn_baseline(project, *, k: int = 5) -> float:
    """K scikit-learn LogisticRegression fits on bootstrap resamples of the labels, then
    predict_proba on every item, on the same standardised vectors the round uses."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from labeling.model.ensemble import FeatureScaler
    from labeling.embed.pipeline import load_vectors
    from storage import labels as labels_q

    pv = load_vectors(project)
    x = FeatureScaler.fit(pv.vectors).transform(pv.vectors)
    with project.db.session() as con:
        items, classes = labels_q.current_labels(con)
    rows = np.searchsorted(pv.item_ids, items)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for h in range(k):
            boot = np.random.default_rng(h).integers(0, len(rows), len(rows))
            model = LogisticRegression().fit(x[rows[boot]], classes[boot])
            model.predict_proba(x)
    return time.perf_counter() - t0


def round_latency(cases, work: Path, *, device: str = "cpu", repeats: int = 2,
                  cluster_graph_from: int = 1_000_000) -> tuple[list[dict], dict]:
    """``train_round`` (retrain K=5 heads + propagation member, rescore, all disagreement scores,
    rank the default policy's batch, write the predictions) on projects whose kNN graph is already
    cached, as it is after the first round of a vector version; best of ``repeats``.

    ``cases``: ``(n, d, classes, labels)``. Projects of the same ``(n, d)`` share one set of vectors
    and one cached graph, built as the app builds it below ``cluster_graph_from`` items and with
    :func:`cluster_graph` from there on. Returns the rows and ``{(n, d, c, labels): project root}``.
    """
    from labeling.project import Project
    from labeling.model.rounds import train_round

    rows, roots, bases = [], {}, {}
    for n, d, c, n_labels in cases:
        if (n, d) not in bases:
            x, y = project_data(n, d)
            base = work / f"base-{n}-{d}"
            project = new_project(base, x)
            if n >= cluster_graph_from:
                graph_s, graph = clock(cluster_graph, x, y)
                del x
                with given_graph(graph):
                    cache_graph(project)
                how = f"exact per-cluster graph built in {graph_s:.0f} s"
            else:
                del x
                graph_s, _ = cache_graph(project)
                how = f"graph built once, as the app does, in {graph_s:.0f} s"
            bases[(n, d)] = (base, y, how)
        base, y, how = bases[(n, d)]
        root = copy_project(base, work / f"round-{n}-{d}-{c}-{n_labels}")
        project = Project(root)
        label_project(project, y, c, n_labels)
        best, stages = None, None
        for _ in range(repeats):
            watch = Stages()
            with watch.watch():
                seconds, _ = clock(train_round, project, device=device, cv=False)
            if best is None or seconds < best:
                best, stages = seconds, watch
        base_s = sklearn_baseline(project)
        case = f"{n:,} x {d}, {c} classes, {n_labels:,} labels"
        met = None
        if n == 100_000 and n_labels == 10_000:
            met = best <= 3.0 and base_s / best >= 3.0
        elif base_s:
            met = base_s / best >= 3.0
        rows.append(row("round latency", case, best, "s", "5 x sklearn LogisticRegression + predict_proba",
                        base_s, target="<= 3 s at 100k items / 10k labels; >= 3x the baseline", met=met,
                        note=f"{stages.summary()}; {how}"))
        heads = stages.seconds.get("train heads", 0.0) + stages.seconds.get("rescore", 0.0)
        rows.append(row("round: heads only", case, heads, "s", "5 x sklearn LogisticRegression + predict_proba",
                        base_s, note="the round's train heads + rescore stages (K=5 heads, every item scored)"))
        roots[(n, d, c, n_labels)] = root
    return rows, roots


# ---- neighbours --------------------------------------------------------------------------------
class _ExactRows:
    """Stands in for the cached graph's ``sims`` and ``idx`` arrays: row ``r`` is found by an exact
    faiss flat search for that item when asked for, so the view's baseline runs the same code."""

    def __init__(self, vectors: np.ndarray, k: int) -> None:
        import faiss

        from labeling.search.neighbours import normalize

        self.vectors, self.k, self.last = vectors, k, (None, None, None)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        for s in range(0, len(vectors), 100_000):
            self.index.add(normalize(vectors[s:s + 100_000]))

    def search(self, r: int):
        from labeling.search.neighbours import normalize

        if self.last[0] != r:
            sims, ids = self.index.search(normalize(self.vectors[r:r + 1]), self.k + 1)
            keep = ids[0] != r
            self.last = (r, sims[0][keep][:self.k], ids[0][keep][:self.k])
        return self.last

    def view(self, part: int):
        outer = self

        class View:
            def __getitem__(self, r):
                return outer.search(int(r))[part]

        return View()


def neighbourhood_view(root: Path, *, queries: int = 200, target_ms: float = 100.0,
                       index=None, index_build_s: float | None = None) -> list[dict]:
    """The Label page's neighbourhood (12 nearest items with labels and suggestions) as
    ``LabelingService.neighbours`` serves it from the cached graph, p95 over random items, and the
    graph's recall@10 against exact search. Baseline: the same call with the graph replaced by an
    exact flat search of the item. With ``index``: that approximate index queried item by item."""
    from labeling.search.neighbours import recall_at_k
    from labeling.embed.pipeline import knn_graph_cached, load_vectors
    from labeling.project import Project
    from labeling.service import LabelingService

    project = Project(root)
    pv = load_vectors(project)
    _, graph_idx = knn_graph_cached(project, pv, k=GRAPH_K)
    rows = np.random.default_rng(3).choice(len(pv.item_ids), queries, replace=False)
    item_ids = [int(pv.item_ids[r]) for r in rows]

    def p95(service) -> float:
        service.neighbours(item_ids[0])  # warm caches, as in a running server
        times = []
        for item in item_ids:
            t0 = time.perf_counter()
            got = service.neighbours(item, k=12)
            times.append(time.perf_counter() - t0)
            assert len(got) == 12, "a neighbourhood is missing"
        return float(np.percentile(times, 95)) * 1000

    ours = p95(LabelingService(root))
    exact = _ExactRows(pv.vectors, GRAPH_K)
    truth = np.stack([exact.search(int(r))[2][:10] for r in rows])
    recall = recall_at_k(graph_idx[rows, :10], truth)
    baseline = LabelingService(root)
    _, _, row_of, ids = baseline._graph()  # load once, then swap in the exact search
    from labeling.embed.pipeline import vector_version

    baseline.project.caches.put("neighbour_view", vector_version(baseline.project) or "",
                                (exact.view(1), exact.view(2), row_of, ids))
    base = p95(baseline)
    n, d = pv.vectors.shape
    out = [row("neighbourhood view p95", f"{n:,} x {d}, from the cached kNN graph (recall@10 {recall:.3f})",
               ours, "ms", "the same view, exact flat search per item", base,
               target=f"< {target_ms:g} ms, recall@10 >= 0.95", met=ours < target_ms and recall >= 0.95,
               note="LabelingService.neighbours(k=12): graph row, labels, suggestions, item rows")]
    if index is not None:  # the approximate index itself, queried per item
        times, got = [], np.empty((queries, 10), np.int64)
        for j, r in enumerate(rows):
            t0 = time.perf_counter()
            _, found = index.search(pv.vectors[r:r + 1], 11)
            times.append(time.perf_counter() - t0)
            got[j] = [i for i in found[0] if i != r][:10]
        q95 = float(np.percentile(times, 95)) * 1000
        exact_times = []
        for r in rows[:50]:
            t0 = time.perf_counter()
            exact.last = (None, None, None)
            exact.search(int(r))
            exact_times.append(time.perf_counter() - t0)
        recall = recall_at_k(got, truth)
        out.append(row("index query p95", f"{n:,} x {d}, {index.kind} index (recall@10 {recall:.3f})", q95, "ms",
                       "exact flat search per item", float(np.percentile(exact_times, 95)) * 1000,
                       target=f"< {target_ms:g} ms, recall@10 >= 0.95", met=q95 < target_ms and recall >= 0.95,
                       note=f"NeighbourIndex.search; index built in {index_build_s:.0f} s" if index_build_s else ""))
    return out


def knn_graph_vs_sklearn(n: int, d: int) -> list[dict]:
    """The full kNN graph (k=15) with the index the app picks at this size, against scikit-learn
    NearestNeighbors(algorithm="brute", metric="cosine")."""
    from sklearn.neighbors import NearestNeighbors

    from labeling.search.neighbours import knn_graph, recall_at_k

    x, _ = clustered(n, d, 50, seed=7)
    ours, (_, idx) = clock(knn_graph, x, GRAPH_K)
    t0 = time.perf_counter()
    _, truth = NearestNeighbors(n_neighbors=GRAPH_K + 1, algorithm="brute", metric="cosine").fit(x).kneighbors(x)
    base = time.perf_counter() - t0
    truth = np.array([[j for j in r if j != i][:GRAPH_K] for i, r in enumerate(truth)])
    recall = recall_at_k(idx[:, :10], truth[:, :10])
    kind = "flat" if n < 50_000 else "hnsw"
    return [row("kNN graph (k=15)", f"{n:,} x {d}, {kind} (recall@10 {recall:.3f})", ours, "s",
                "sklearn NearestNeighbors brute", base, met=None)]


def approximate_index(x: np.ndarray, *, nlist: int, nprobe: int):
    """The IVF index used for 1M items: ``(build seconds, index)``."""
    from labeling.search.index import NeighbourIndex

    return clock(NeighbourIndex.build, x, np.arange(len(x), dtype=np.int64), kind="ivf", nlist=nlist,
                 nprobe=nprobe, device="cpu")


# ---- embedding throughput ----------------------------------------------------------------------


# ---- memory ------------------------------------------------------------------------------------
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec, so a
# child of a large benchmark process would report the parent's size.




# ---- map ---------------------------------------------------------------------------------------


# ---- interaction -------------------------------------------------------------------------------
def interaction_rows(work: Path, sizes, repeats: int) -> list[dict]:
    """A label action plus the next item's data (``bench.interaction``), against the smallest size."""
    from bench import interaction

    got = interaction.run(work, sizes=sizes, repeats=repeats)
    base = got[0]
    return [row("interaction p95", f"{r['items']:,} items, {r['labels']:,} labels", r["p95_ms"], "ms",
                f"the same at {base['items']:,} items, {base['labels']:,} labels", base["p95_ms"],
                ratio=r["p95_ms"] / base["p95_ms"], ratio_means="x the small project", target="< 150 ms",
                met=r["p95_ms"] < 150 if r["items"] >= 100_000 else None, note=f"p50 {r['p50_ms']:.1f} ms")
            for r in got]


def scratch() -> tempfile.TemporaryDirectory:
    """A work folder on local disk (TMPDIR if set)."""
    return tempfile.TemporaryDirectory(prefix="quorum-bench-")
