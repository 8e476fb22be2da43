"""Replay an oracle over a labeled folder to compare acquisition strategies.

Every strategy is scored with the same learner (the app's own ``labeling.model.learner``), so the
comparison is of *what gets labeled*. Test items stay unlabeled in the pool's kNN graph, as in the
app, but their labels are never revealed: accuracy is measured on them only.

With auto-accept targets, each budget also measures trust (``labeling.active.trust``): the true
precision and coverage of auto-accept chosen as the app chooses it, the calibration error of the
confidence shown, and LogisticRegression / RandomForest baselines trained on the same labels.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labeling.active import acquisition

from labeling.active import coldstart, selection, trust
from labeling.model.ensemble import EnsembleConfig, FeatureScaler
from labeling.model.learner import LearnerConfig, fit_predict
from labeling.embed.pipeline import ProjectVectors
from labeling.model.propagation import graph_operator, label_propagation

LOG = logging.getLogger(__name__)

SIM_STRATEGIES = ("random", "default", "typicality", *sorted(set(acquisition.STRATEGIES) - {"random", "most_confident"}))


@dataclass(frozen=True)
class SimData:
    x: np.ndarray  # (N, D) prepared
    y: np.ndarray  # (N,) true class index
    classes: list[str]
    graph: tuple[np.ndarray, np.ndarray]


def prepare(pv: ProjectVectors, graph: tuple[np.ndarray, np.ndarray], *, root_prefix: str = "") -> SimData:
    """True classes from the first folder of each uri (below ``root_prefix``)."""
    names = []
    for uri in pv.uris:
        rel = uri[len(root_prefix):].lstrip("/") if root_prefix and uri.startswith(root_prefix) else uri
        parts = rel.split("/")
        if len(parts) < 2:
            raise ValueError(f"{uri}: simulate needs one sub-folder per class (SRC/<class>/<image>)")
        names.append(parts[0])
    classes = sorted(set(names))
    index = {c: k for k, c in enumerate(classes)}
    x = FeatureScaler.fit(pv.vectors).transform(pv.vectors)
    return SimData(x, np.array([index[n] for n in names]), classes, graph)


def _select(strategy: str, need: int, data: SimData, labels: np.ndarray, eligible: np.ndarray, pred,
            rng: np.random.Generator) -> np.ndarray:
    """The next items to label; ``pred`` is the last round's ``Prediction`` (None before the first)."""
    probs, weights = (None, None) if pred is None else (pred.probs, pred.weights)
    exclude = ~eligible
    c = len(data.classes)
    if strategy == "random" or (probs is None and strategy not in ("default", "typicality")):
        return rng.choice(np.flatnonzero(eligible), size=need, replace=False)
    if strategy == "typicality":
        return np.asarray(coldstart.typical_cold_start(data.x, need, labeled_mask=labels >= 0, rng=rng,
                                                         knn_sims=data.graph[0], exclude=exclude))
    if strategy == "default":
        idx, _phase = selection.default_policy(probs, data.x, need, labels=labels, n_classes=c, rng=rng,
                                                 exclude=exclude, knn_sims=data.graph[0], weights=weights)
        return np.asarray(idx)
    scores = acquisition.score(probs, strategy, rng=rng, weights=weights)
    return np.asarray(selection.select_top(scores, need, rng=rng, exclude=exclude))


def _checked_budgets(strategies: Sequence[str], budgets: Sequence[int], test_fraction: float) -> list[int]:
    """The budgets, sorted, after checking the strategies, budgets and test fraction."""
    unknown = [s for s in strategies if s not in SIM_STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; valid: {', '.join(SIM_STRATEGIES)}")
    budgets = sorted(int(b) for b in budgets)
    if not budgets or budgets[0] < 1:
        raise ValueError("budgets must be positive integers")
    if not 0 < test_fraction < 1:
        raise ValueError("test fraction must lie in (0, 1)")
    return budgets


def _test_split(data: SimData, rng: np.random.Generator, test_fraction: float) -> np.ndarray:
    """A stratified held-out mask: ``test_fraction`` of each class."""
    test = np.zeros(len(data.y), dtype=bool)
    for k in range(len(data.classes)):
        members = rng.permutation(np.flatnonzero(data.y == k))
        test[members[: int(round(len(members) * test_fraction))]] = True
    return test


def _replay(strategy: str, data: SimData, test: np.ndarray, budgets: list[int], cfg: LearnerConfig, device: str,
            srng: np.random.Generator, acc_row: np.ndarray, prop_row: np.ndarray,
            targets: Sequence[float] | None = None, seed: int = 0) -> list[dict]:
    """Label up to each budget with ``strategy``, refit, and write the held-out accuracy into ``acc_row``
    (and, for the default policy, label propagation's into ``prop_row``). With ``targets`` (a list,
    possibly empty), returns the trust figures of each budget (``trust.measure``), else []."""
    n, c = len(data.y), len(data.classes)
    labels = np.full(n, -1, dtype=np.int64)
    pred = None
    cases: list[dict] = []
    for b_i, budget in enumerate(budgets):
        need = budget - int((labels >= 0).sum())
        eligible = (~test) & (labels < 0)
        picked = _select(strategy, need, data, labels, eligible, pred, srng)
        labels[picked] = data.y[picked]
        pred = fit_predict(data.x, labels, c, graph=data.graph, config=cfg, device=device)
        acc_row[b_i] = float((pred.mean[test].argmax(axis=1) == data.y[test]).mean())
        if strategy == "default":
            prop = label_propagation(data.graph[0], data.graph[1], labels, c, operator=graph_operator(data.graph))
            prop_row[b_i] = float((prop[test].argmax(axis=1) == data.y[test]).mean())
        if targets is not None:
            cases.append(trust.measure(data.x, data.graph, labels, data.y, test, pred, cfg, device, targets,
                                       seed=seed))
    return cases


def run(
    data: SimData,
    *,
    strategies: Sequence[str],
    budgets: Sequence[int],
    repeats: int,
    test_fraction: float,
    seed: int = 0,
    device: str = "cpu",
    config: LearnerConfig | None = None,
    progress: Callable[[str], None] | None = None,
    auto_accept: Sequence[float] | None = None,
) -> dict:
    """Accuracy on held-out items after each budget, per strategy, mean and std over repeats.

    With ``auto_accept`` (targets in (0, 1); an empty list measures calibration and baselines only),
    each strategy's result also has ``trust`` (``labeling.active.trust.summarise``)."""
    budgets = _checked_budgets(strategies, budgets, test_fraction)
    targets = None if auto_accept is None else trust.parse_targets(list(auto_accept))
    cases: dict[str, list[list[dict]]] = {s: [] for s in strategies}
    n, c = len(data.y), len(data.classes)
    acc = {s: np.zeros((repeats, len(budgets))) for s in strategies}
    prop_acc = np.zeros((repeats, len(budgets)))
    for r in range(repeats):
        rng = np.random.default_rng(seed + r)
        test = _test_split(data, rng, test_fraction)
        if (~test).sum() < budgets[-1]:
            raise ValueError(f"the pool ({(~test).sum()} items) is smaller than the largest budget {budgets[-1]}")
        for strategy in strategies:
            cfg = config or LearnerConfig(ensemble=EnsembleConfig(seed=seed + r))
            srng = np.random.default_rng([seed, r, zlib.crc32(strategy.encode())])
            cases[strategy].append(_replay(strategy, data, test, budgets, cfg, device, srng, acc[strategy][r],
                                           prop_acc[r], targets, seed=seed + r))
            if progress:
                progress(f"repeat {r + 1}/{repeats} {strategy}: " +
                         " ".join(f"{b}:{a:.3f}" for b, a in zip(budgets, acc[strategy][r])))
    out = _results(strategies, acc, prop_acc, cases, targets)
    out.update(budgets=budgets, n_items=n, n_classes=c, repeats=repeats, test_fraction=test_fraction,
               classes=data.classes)
    return out


def _results(strategies, acc: dict, prop_acc: np.ndarray, cases: dict, targets: list[float] | None) -> dict:
    """The per-strategy summaries of a replay (mean and std over repeats, trust where measured)."""
    results = {s: {"accuracy_mean": acc[s].mean(0).tolist(), "accuracy_std": acc[s].std(0).tolist()}
               for s in strategies}
    if targets is not None:
        for s in strategies:
            results[s]["trust"] = trust.summarise(cases[s], targets)
    if "default" in strategies:
        results["knn_propagation"] = {"accuracy_mean": prop_acc.mean(0).tolist(),
                                      "accuracy_std": prop_acc.std(0).tolist(),
                                      "note": "label propagation alone from the default policy's labels"}
    out = {"results": results}
    if targets is not None:
        out["auto_accept_targets"] = targets
    return out


def format_table(result: dict) -> str:
    budgets = result["budgets"]
    head = f"{'strategy':<18}" + "".join(f"{b:>14}" for b in budgets)
    lines = [head, "-" * len(head)]
    for name, r in result["results"].items():
        cells = "".join(f"{m * 100:>8.1f} ±{s * 100:>4.1f}" for m, s in zip(r["accuracy_mean"], r["accuracy_std"]))
        lines.append(f"{name:<18}{cells}")
    return "\n".join(lines) + trust.format_trust(result)


def simulate_folder(src: str | Path, *, strategies, budgets, repeats, test_fraction, seed=0, device="auto",
                    backbone=None, progress=None, auto_accept=None) -> dict:
    """Import ``src`` as a project (no labels), embed it once (cached), and run the replay."""
    from labeling.device import pick_device
    from labeling.data.importer import import_folder
    from labeling.embed.pipeline import embed_project, knn_graph_cached, load_vectors
    from labeling.project import Project

    project = Project(src, create=True)
    import_folder(project, project.root, progress=False)
    embed_project(project, backbone=backbone, device=device, progress=progress is not None)
    pv = load_vectors(project)
    graph = knn_graph_cached(project, pv)
    data = prepare(pv, graph)
    return run(data, strategies=strategies, budgets=budgets, repeats=repeats, test_fraction=test_fraction,
               seed=seed, device=str(pick_device(device)), progress=progress, auto_accept=auto_accept)
