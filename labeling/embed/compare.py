"""A backbone chosen by measurement: embed one sample of the project with each backbone available here and
compare them.

Label-free figures (computed on the sample's L2-normalised vectors):

- **effective rank (RankMe)**: ``exp`` of the entropy of the normalised singular values (Garrido et al.,
  ICML 2023); higher means the features spread over more directions, which tracks downstream accuracy
  within a family of models;
- **kNN agreement**: the share of each item's 10 nearest neighbours that are also among its nearest in the
  other backbones' features, averaged: a backbone that agrees with the others finds the structure they all
  see, one that disagrees sees something else (or noise).

With human labels among the sampled items, the learner's accuracy under 5-fold cross-validation on them
(the same learner as the rounds, without self-training) says which backbone serves this project best.
"""
from __future__ import annotations

import time

import numpy as np

from labeling.project import Project

KNN = 10


def effective_rank(x: np.ndarray) -> float:
    """RankMe: ``exp(H(p))`` with ``p`` the singular values of ``x`` (rows normalised) summing to one."""
    x = np.asarray(x, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = np.linalg.svd(x, compute_uv=False)
    p = s / max(s.sum(), 1e-12) + 1e-12
    return float(np.exp(-(p * np.log(p)).sum()))


def knn_sets(x: np.ndarray, k: int = KNN) -> np.ndarray:
    """(N, k) row indices of each row's nearest rows by cosine (itself left out)."""
    x = np.asarray(x, np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(x) - 1)
    return np.argsort(-sims, axis=1)[:, :k]


def knn_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row's neighbours in ``a`` that are also its neighbours in ``b``."""
    k = a.shape[1]
    return float(np.mean([len(set(ra.tolist()) & set(rb.tolist())) / k for ra, rb in zip(a, b)]))


def cv_accuracy(x: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0) -> float | None:
    """The learner's 5-fold cross-validated accuracy on the labeled rows (None with too few labels)."""
    from labeling.model.ensemble import FeatureScaler
    from labeling.model.learner import LearnerConfig, fit_predict
    from labeling.model.rounds import _assign_folds

    rows = np.flatnonzero(labels >= 0)
    classes, y = np.unique(labels[rows], return_inverse=True)
    if len(classes) < 2 or len(rows) < 2 * folds:
        return None
    xs = FeatureScaler.fit(x).transform(np.array(x, np.float32))
    assign = _assign_folds(y, folds, np.random.default_rng(seed))
    config = LearnerConfig(knn_member=False, self_training=False, learn_blend=False)
    right = 0
    for f in range(folds):
        held = assign == f
        if not held.any():
            continue
        train = np.full(len(rows), -1)
        train[~held] = y[~held]
        pred = fit_predict(xs[rows], train, len(classes), graph=None, config=config, device="cpu")
        right += int((pred.mean[held].argmax(axis=1) == y[held]).sum())
    return right / len(rows)


def _sample(project: Project, n: int, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(item ids, uris, labels as class ids or -1): the labeled items first (up to half), then random others."""
    from storage import items as items_q
    from storage import labels as labels_q

    with project.db.session() as con:
        ids, uris = items_q.ok_items(con)
        lab_items, lab_classes = labels_q.current_labels(con)
    ids = np.asarray(ids, np.int64)
    label_of = dict(zip(lab_items.tolist(), lab_classes.tolist()))
    rng = np.random.default_rng(seed)
    labeled = np.flatnonzero(np.isin(ids, lab_items))
    others = np.flatnonzero(~np.isin(ids, lab_items))
    take_l = rng.permutation(labeled)[: max(n // 2, n - len(others))]
    take_o = rng.permutation(others)[: n - len(take_l)]
    rows = np.sort(np.concatenate([take_l, take_o]))
    return ids[rows], [uris[r] for r in rows], np.array([label_of.get(int(i), -1) for i in ids[rows]], np.int64)


def compare_backbones(project: Project, *, names: list[str] | None = None, sample: int = 500,
                      weights: dict[str, str] | None = None, device: str = "auto") -> dict:
    """One row per backbone: ``backbone``, ``status`` (``ok`` or why it is unavailable), ``dim``,
    ``effective_rank``, ``knn_agreement``, ``cv_accuracy`` (None without labels), ``seconds``; and the
    sample's size and labels."""
    from labeling.embed.backbones import BACKBONES, BackboneUnavailable, get_backbone
    from labeling.embed.pipeline import resolve_uris
    from labeling.embed.run import embed_paths

    weights = weights or {}
    names = names or list(BACKBONES)
    unknown = [n for n in names if n not in BACKBONES]
    if unknown:
        raise ValueError(f"unknown backbone {unknown[0]!r}; choose from: {', '.join(BACKBONES)}")
    ids, uris, labels = _sample(project, max(20, int(sample)))
    if not len(ids):
        raise ValueError("the project has no readable images to compare backbones on")
    paths = resolve_uris(project, uris)
    rows, feats = [], {}
    for name in names:
        t0 = time.perf_counter()
        try:
            loaded = get_backbone(name, weights=weights.get(name))
        except BackboneUnavailable as exc:
            rows.append({"backbone": name, "status": f"unavailable: {str(exc).splitlines()[0][:160]}"})
            continue
        vectors, ok = embed_paths(paths, loaded, device=device, progress=False)
        keep = np.asarray(ok, bool)
        feats[name] = (vectors, keep)
        rows.append({"backbone": name, "status": "ok", "weights": loaded.fingerprint.split(".")[1], "dim": loaded.dim,
                     "effective_rank": round(effective_rank(vectors[keep]), 2),
                     "cv_accuracy": cv_accuracy(vectors[keep], labels[keep]),
                     "seconds": round(time.perf_counter() - t0, 2)})
    both = np.logical_and.reduce([k for _v, k in feats.values()]) if feats else np.zeros(0, bool)
    sets = {n: knn_sets(v[both]) for n, (v, _k) in feats.items()} if both.sum() > KNN else {}
    for row in rows:
        others = [m for m in sets if m != row["backbone"]]
        if row["backbone"] in sets and others:
            row["knn_agreement"] = round(float(np.mean([knn_agreement(sets[row["backbone"]], sets[m]) for m in others])), 3)
        elif row["status"] == "ok":
            row["knn_agreement"] = None
    return {"sample": int(len(ids)), "labeled": int((labels >= 0).sum()), "backbones": rows,
            "current": project.setting("backbone")}


def format_table(out: dict) -> str:
    lines = [f"{out['sample']} images sampled ({out['labeled']} with a human label); project backbone: "
             f"{out['current'] or '-'}", "",
             f"{'backbone':<20} {'dim':>5} {'eff. rank':>9} {'kNN agree':>9} {'CV acc':>7} {'s':>6}  weights"]
    for r in out["backbones"]:
        if r["status"] != "ok":
            lines.append(f"{r['backbone']:<20} {r['status']}")
            continue
        agree = "-" if r.get("knn_agreement") is None else f"{r['knn_agreement']:.3f}"
        acc = "-" if r["cv_accuracy"] is None else f"{r['cv_accuracy']:.1%}"
        lines.append(f"{r['backbone']:<20} {r['dim']:>5} {r['effective_rank']:>9.1f} {agree:>9} {acc:>7} "
                     f"{r['seconds']:>6.1f}  {r['weights']}")
    return "\n".join(lines)
