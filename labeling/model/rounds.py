"""Rounds: snapshot the labels, train the learner, score every item, write predictions atomically.

A round never holds the database while it trains: it reads a snapshot in one short transaction,
trains, writes ``round-<id>.npz`` to a temporary name and renames it, then marks the round
finished in a second short transaction. A crash in between leaves a ``running`` row that the next
start marks ``discarded``; the previous finished round stays in use.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


from labeling.active import coldstart, selection
from labeling.model import external, zero_shot
from labeling.embed.names import is_clip
from labeling.device import pick_device
from labeling.model.ensemble import EnsembleConfig, FeatureScaler
from labeling.model.learner import LearnerConfig, Prediction, fit_predict, with_fixed_blend
from labeling.model.smoothing import smoothed
from labeling.embed.pipeline import cluster_memo, knn_graph_cached, vector_source, vectors_of
from labeling.project import Project
from labeling.model.round_files import (RoundPredictions, cv_file, latest_predictions,  # noqa: F401
                                        load_predictions, save_cv, save_predictions)
from labeling.team.review import pending_overlap
from storage import external_models as models_q
from storage import labels as labels_q
from storage import rounds as rounds_q
from storage.vectors import VectorStore

LOG = logging.getLogger(__name__)

TOP_K = 3
DEFAULT_BATCH = 200
"""Items ordered by the default policy's diverse batch; the rest follow by blended score."""
CV_MAX_LABELS = 3000
"""Cross-validation uses at most this many human labels (subsampled, stratified), to bound its cost."""


CV_FOLDS = 5
"""Folds of the cross-validation once every class has plenty of labels."""
STARVED_PER_CLASS = 10
"""Below this many labels in some class, five folds would train on too few labels: use more folds."""
STARVED_FOLDS = 10
"""Folds when labels are few (at most one per label: leave-one-out on the smallest projects)."""


def cv_fold_count(counts: np.ndarray) -> int:
    """How many folds to cross-validate with, from the label count of each class.

    Five folds train each fold on 80 % of the labels, which biases the figures low when a class has
    only a few: with 2 labels per class, 2 folds would train on 1 label per class. Below
    ``STARVED_PER_CLASS`` labels in some class the folds are ``STARVED_FOLDS`` (or one per label,
    leave-one-out, when there are fewer labels), so that every fold trains on ~90 % or more of them.
    """
    counts = np.asarray(counts)
    usable = counts[counts >= 2]
    if not len(usable):
        raise ValueError("cross-validation needs a class with at least two labels")
    if usable.min() >= STARVED_PER_CLASS:
        return CV_FOLDS
    return int(min(STARVED_FOLDS, usable.sum()))


def _assign_folds(labels: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified fold of each labeled row: each class spread over the folds, starting where the previous
    class stopped, so that small classes never all land in the same few folds."""
    assign = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        assign[members] = (offset + rng.permutation(len(members))) % folds
        offset += len(members)
    return assign


def cross_validate(x, labels, n_classes, graph, config: LearnerConfig, device, *, seed: int = 0,
                   should_stop: Callable[[], bool] | None = None,
                   blend: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                   ) -> tuple[dict, dict[str, np.ndarray]] | None:
    """Cross-validated accuracy and expected calibration error of the learner on human labels, and the
    held-out outputs: rows, confidence, predicted and true column. None when ``should_stop`` (asked
    before each fold) said so: the caller has newer labels to train on.

    The figures say what they rest on: ``cv_labels`` (held-out labels), ``cv_folds`` and
    ``cv_train_labels`` (mean labels each fold trained on)."""
    labeled = np.flatnonzero(labels >= 0)
    counts = np.bincount(labels[labeled], minlength=n_classes)
    if (counts >= 2).sum() < 2:
        return {"cv_accuracy": None, "ece": None, "cv_note": "needs two labels in each of two classes"}, {}
    rng = np.random.default_rng(seed)
    # Items of classes with a single label always stay in training; the rest are held out in turn.
    labeled = labeled[counts[labels[labeled]] >= 2]
    # The folds share one smoothed view of the rows (no labels in it), built once instead of per fold.
    x = smoothed(x, graph, share=config.feature_smoothing, neighbours=config.smoothing_neighbours)
    if len(labeled) > CV_MAX_LABELS:
        labeled = np.sort(rng.choice(labeled, CV_MAX_LABELS, replace=False))
    folds = cv_fold_count(np.bincount(labels[labeled], minlength=n_classes))
    assign = _assign_folds(labels[labeled], folds, rng)
    conf_all, rows_all, pred_all, trained, alone = [], [], [], [], []
    for f in range(folds):
        if should_stop is not None and should_stop():
            return None
        held = labeled[assign == f]
        masked = labels.copy()
        masked[held] = -1
        if not len(held) or (masked >= 0).sum() == 0:
            continue
        mean = fit_predict(x, masked, n_classes, graph=graph, config=config, device=device).mean[held]
        alone.append(mean.argmax(axis=1))
        if blend is not None:  # imported models join the held-out mean as they join the round's
            mean = blend(mean, held)
        conf_all.append(mean.max(axis=1))
        rows_all.append(held)
        pred_all.append(mean.argmax(axis=1))
        trained.append(int((masked >= 0).sum()))
    conf = np.concatenate(conf_all)
    rows = np.concatenate(rows_all).astype(np.int64)
    predicted = np.concatenate(pred_all).astype(np.int64)
    correct = predicted == labels[rows]
    outputs = {"rows": rows, "confidence": conf.astype(np.float32), "predicted": predicted, "true": labels[rows]}
    figures = {"cv_accuracy": float(correct.mean()), "ece": expected_calibration_error(conf, correct),
               "cv_folds": folds, "cv_labels": int(len(labeled)), "cv_train_labels": float(np.mean(trained))}
    if blend is not None:  # the learner's own accuracy: what an imported model's learned share is measured against
        figures["learner_cv_accuracy"] = float((np.concatenate(alone) == labels[rows]).mean())
    return figures, outputs


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE: the share-weighted gap between confidence and accuracy over equal-width bins."""
    bins = np.minimum((np.asarray(confidence) * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(total)


@dataclass
class PendingCV:
    """A round's cross-validation, to run after its predictions are written and in use.

    Holds the round's own snapshot (scaled vectors, labels, graph), so the figures describe exactly
    what the round was trained on, whenever they are computed. :meth:`run` stores them: the
    held-out outputs in ``round-<id>.cv.npz`` beside the round's file, the figures in its metrics
    (``cv_status`` ``done``).
    """

    round_id: int
    x: np.ndarray
    labels: np.ndarray
    n_classes: int
    graph: tuple[np.ndarray, np.ndarray]
    config: LearnerConfig
    device: object
    seed: int
    item_ids: np.ndarray
    class_ids: np.ndarray
    models: list = field(default_factory=list)
    """Imported models in the round (:class:`labeling.model.external.Member`) and their shares."""
    model_shares: np.ndarray | None = None

    def _blend(self):
        if not self.models:
            return None
        return lambda mean, rows: external.blend_held_out(mean, rows, self.models, self.model_shares)

    def compute(self, project: Project, *, should_stop: Callable[[], bool] | None = None) -> dict | None:
        """Cross-validate, write the held-out outputs beside the round's file and return the figures
        (no database); None when ``should_stop`` interrupted."""
        t0 = time.perf_counter()
        got = cross_validate(self.x, self.labels, self.n_classes, self.graph, self.config, self.device,
                             seed=self.seed, should_stop=should_stop, blend=self._blend())
        if got is None:
            return None
        metrics, held = got
        if held:
            save_cv({"item_ids": self.item_ids[held["rows"]].astype(np.int64), "confidence": held["confidence"],
                     "predicted": self.class_ids[held["predicted"]], "true": self.class_ids[held["true"]]},
                    cv_file(project.round_file(self.round_id)))
        metrics.update(cv_status="done", cv_seconds=round(time.perf_counter() - t0, 3))
        return metrics

    def run(self, project: Project, *, should_stop: Callable[[], bool] | None = None) -> bool:
        """Cross-validate and store the figures; False (nothing stored) when ``should_stop`` interrupted."""
        metrics = self.compute(project, should_stop=should_stop)
        if metrics is None:
            return False
        store_metrics(project, self.round_id, metrics)
        return True


def store_metrics(project: Project, round_id: int, metrics: dict) -> None:
    """Merge figures computed after a round (its cross-validation) into its stored metrics."""
    with project.db.session() as con:
        rounds_q.update_metrics(con, round_id, metrics)


@dataclass
class RoundStart:
    """What a round trains on, read from the database in one transaction as the round is recorded
    ``running``: everything :func:`compute_round` needs besides the vector files."""

    round_id: int
    classes: list
    lab_items: np.ndarray
    lab_classes: np.ndarray
    vector_key: str
    vector_dim: int
    item_ids: np.ndarray
    uris: list[str]
    models: list[dict] = field(default_factory=list)
    """Imported models (rows of ``external_models``) that join the round."""
    learner_accuracy: float | None = None
    """The previous round's cross-validated accuracy of the learner alone: what a model's learned share is
    measured against."""
    zero_shot: dict | None = None
    """With a CLIP backbone: ``backbone``, ``weights`` and the class ``prompts`` (:mod:`labeling.model.zero_shot`)."""


def train_round(
    project: Project,
    *,
    config: LearnerConfig | None = None,
    device: str = "auto",
    cv: bool = True,
    seed: int = 0,
) -> int:
    """Train one round on a snapshot of the current labels; returns the round id.

    With ``cv`` the round is cross-validated too, after its predictions are written (the command
    line waits for it; the retrain worker uses :func:`train_round_deferred` and cross-validates
    only while no newer round is due).
    """
    round_id, pending = train_round_deferred(project, config=config, device=device, cv=cv, seed=seed)
    if pending is not None:
        pending.run(project)
    return round_id


def train_round_deferred(
    project: Project,
    *,
    config: LearnerConfig | None = None,
    device: str = "auto",
    cv: bool = True,
    seed: int = 0,
) -> tuple[int, PendingCV | None]:
    """Train one round and write its predictions; returns the round id and, with ``cv`` and enough
    labels, its :class:`PendingCV` (not yet run: the round is in use without it)."""
    config = config or LearnerConfig(ensemble=EnsembleConfig(seed=seed))
    start = start_round(project, config)
    try:
        metrics, pending = compute_round(project, start, config=config, device=device, cv=cv, seed=seed)
    except BaseException as exc:
        fail_round(project, start.round_id, exc)
        raise
    finish_round(project, start.round_id, metrics)
    return start.round_id, pending


def start_round(project: Project, config: LearnerConfig) -> RoundStart:
    """Snapshot the labels (overlap items still waiting for votes left out) and record the round
    ``running``: the database part of a round's start."""
    key, dim, ids, uris = vector_source(project)
    version = VectorStore(project.vectors_dir(key), key=key, dim=dim).version
    with project.db.session() as con:
        classes = labels_q.classes(con)
        lab_items, lab_classes = labels_q.current_labels(con)
        pending = pending_overlap(project, con)  # overlap items still waiting for their other votes
        if pending:
            keep = ~np.isin(lab_items, np.fromiter(pending, dtype=np.int64, count=len(pending)))
            lab_items, lab_classes = lab_items[keep], lab_classes[keep]
        last_event = labels_q.last_event_id(con)
        backbone = rounds_q.get_setting(con, "backbone") or ""
        models = [m for m in models_q.list_models(con) if m["enabled"]]
        previous = rounds_q.latest_finished(con)
        zero = None
        if is_clip(backbone) and rounds_q.get_setting(con, "zero_shot", "on") == "on":
            text = rounds_q.get_setting(con, zero_shot.PROMPTS_SETTING)
            zero = {"backbone": backbone, "weights": rounds_q.get_setting(con, "backbone_weights", "default"),
                    "prompts": json.loads(text) if text else {}}
        round_id = rounds_q.start_round(
            con, n_labels=len(lab_items), last_event_id=last_event, backbone=backbone,
            vector_version=version, head_config=config.to_dict())
    figures = previous["metrics"] if previous else {}
    learner_accuracy = figures.get("learner_cv_accuracy", figures.get("cv_accuracy"))
    return RoundStart(round_id, list(classes), np.asarray(lab_items, np.int64), np.asarray(lab_classes, np.int64),
                      key, dim, ids, uris, models, learner_accuracy, zero)


def compute_round(project: Project, start: RoundStart, *, config: LearnerConfig | None = None, device: str = "auto",
                  cv: bool = True, seed: int = 0) -> tuple[dict, PendingCV | None]:
    """Train the round ``start`` describes and write its predictions file: the metrics to finish it with
    and its pending cross-validation. Reads the vector and graph files only, never the database, so it
    can run in a process of its own."""
    config = config or LearnerConfig(ensemble=EnsembleConfig(seed=seed))
    t0 = time.perf_counter()
    pv = vectors_of(project, start.vector_key, start.vector_dim, start.item_ids, start.uris)
    preds, metrics, pending = _compute(project, pv, start, config, pick_device(device), cv=cv, seed=seed)
    preds.round_id = start.round_id
    save_predictions(preds, project.round_file(start.round_id))
    metrics["seconds"] = round(time.perf_counter() - t0, 3)
    if pending is not None:
        pending.round_id = start.round_id
        metrics["cv_status"] = "pending"
    return metrics, pending


def finish_round(project: Project, round_id: int, metrics: dict) -> None:
    """Mark the round finished (its predictions file written): from now on it is the one in use."""
    with project.db.session() as con:
        rounds_q.finish_round(con, round_id, metrics=metrics, predictions_file=project.round_file(round_id).name)
    LOG.info("round %d finished in %.1f s", round_id, metrics.get("seconds", float("nan")))


def fail_round(project: Project, round_id: int, error: BaseException | str) -> None:
    """Mark the round failed with its error; the previous round stays in use."""
    text = error if isinstance(error, str) else (
        f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=5)}")
    with project.db.session() as con:
        rounds_q.fail_round(con, round_id, error=text)


def _batch_size(labels: np.ndarray) -> int:
    """About ``DEFAULT_BATCH`` items, so many that labeled plus batch is a ``coldstart.cluster_count``: the
    cold start's rounds, a label apart, then ask for one clustering (``pipeline.cluster_memo``)."""
    n_labeled = int((labels >= 0).sum())
    return min(coldstart.cluster_count(n_labeled + DEFAULT_BATCH) - n_labeled, len(labels) - n_labeled)


def _compute(project, pv, start: RoundStart, config, dev, *, cv: bool, seed: int):
    n = len(pv.item_ids)
    if n == 0:
        raise ValueError("no embedded items: import images and run embed first")
    classes, lab_items, lab_classes = start.classes, start.lab_items, start.lab_classes
    # A round speaks of the classes that have labels: a class declared up front (the demo's ten animals,
    # import --classes, the Data page) joins once its first label does, so it never dilutes the heads'
    # softmax, starves the cross-validation's fold count or shows up on a card as a 0 % suggestion.
    has_labels = set(np.asarray(lab_classes, np.int64).tolist())
    if len(has_labels & {c for c, _ in classes}) >= 2:
        classes = [(c, name) for c, name in classes if c in has_labels]
    class_ids = np.array([c for c, _ in classes], dtype=np.int64)
    class_names = [name for _, name in classes]
    labels = _label_rows(pv.item_ids, np.asarray(lab_items, np.int64), np.asarray(lab_classes, np.int64), class_ids)
    graph = knn_graph_cached(project, pv)
    rng = np.random.default_rng(seed)
    c = len(class_ids)
    metrics: dict = {"n_items": n, "n_labels": int((labels >= 0).sum()), "n_classes": c}
    pending: PendingCV | None = None
    labeled_classes = np.unique(labels[labels >= 0])
    models = external.load_members(start.models, project.data_dir / "models", pv.item_ids, class_ids)
    if start.zero_shot is not None and c:  # a CLIP backbone: suggestions from the class names (raw vectors)
        zs, metrics["zero_shot"] = zero_shot.member(project, start.zero_shot["backbone"], start.zero_shot["weights"],
                                                    start.zero_shot["prompts"], pv.vectors, class_names, labels)
        models.append(zs)
    suggestions = None
    if len(labeled_classes) < 2:  # cold start: the backbone's own proposals, from the raw vectors
        suggestions, cold_confidence = _imagenet_suggestions(pv)
    # The round's vectors are its own copy: scale them in place, so a round holds one N x D matrix.
    x = FeatureScaler.fit(pv.vectors).transform(pv.vectors, out=pv.vectors)
    pred, covered = None, np.ones(n, dtype=bool)
    if len(labeled_classes) >= 2:
        learner = fit_predict(x, labels, c, graph=graph, config=config, device=dev)
        pred = learner
        if models:  # people's own models join as members (labeling.model.external)
            model_shares, metrics["models"] = external.shares(models, labels, c, start.learner_accuracy)
            pred = Prediction(*external.join(learner.probs, learner.member_names, learner.weights, models,
                                             model_shares), knn_power=learner.knn_power,
                              knn_class_mass=learner.knn_class_mass)
        counts = np.bincount(labels[labels >= 0], minlength=c)
        if "knn-propagation" in pred.member_names:
            metrics.update(knn_weight=float(pred.weights[pred.member_names.index("knn-propagation")]),
                           knn_sharpen=pred.knn_power)
        if cv and (counts >= 2).sum() >= 2:
            pending = PendingCV(-1, x, labels, c, graph, with_fixed_blend(config, learner), dev, seed, pv.item_ids,
                                class_ids, models, model_shares if models else None)
        elif cv:
            metrics.update(cv_accuracy=None, ece=None, cv_note="needs two labels in each of two classes")
    elif models:  # no learner yet: the imported models alone suggest
        probs, names, weights, covered = external.alone(models)
        pred = Prediction(probs, names, weights)
        metrics["models"] = [{"model": m.name, "share": round(float(w), 4)} for m, w in zip(models, weights)]
    if pred is not None:
        mean = pred.mean
        scores = pred.scores()  # the weighted distribution the card shows
        order_idx = np.argsort(-mean, axis=1)[:, :TOP_K]
        top_idx = class_ids[order_idx]
        top_p = np.take_along_axis(mean, order_idx, axis=1)
        if top_idx.shape[1] < TOP_K:  # fewer classes than TOP_K: pad
            pad = TOP_K - top_idx.shape[1]
            top_idx = np.pad(top_idx, ((0, 0), (0, pad)), constant_values=-1)
            top_p = np.pad(top_p, ((0, 0), (0, pad)))
        pseudo = np.where(covered, class_ids[mean.argmax(axis=1)], -1)
        confidence = np.where(covered, mean.max(axis=1), 0.0)
        top_idx[~covered] = -1
        top_p[~covered] = 0.0
        votes = class_ids[pred.probs.argmax(axis=2)].astype(np.int64)
        members = pred.member_names
        member_weights = np.asarray(pred.weights, np.float32)
    if len(labeled_classes) >= 2:
        batch, phase = selection.default_policy(
            pred.probs, x, _batch_size(labels), labels=labels, n_classes=c, rng=rng,
            exclude=labels >= 0, knn_sims=graph[0], scores=scores, weights=pred.weights,
            cluster_memo=cluster_memo(project, pv))
    else:
        if pred is None:
            scores = {}
            pseudo = np.full(n, -1, dtype=np.int64)
            top_idx = np.full((n, TOP_K), -1, dtype=np.int64)
            top_p = np.zeros((n, TOP_K), dtype=np.float32)
            votes = np.zeros((0, n), dtype=np.int64)
            members = []
            member_weights = None
            confidence = cold_confidence
        scores["typicality"] = coldstart.typicality(x, knn_sims=graph[0])
        if pred is None:
            batch, phase = selection.default_policy(
                None, x, _batch_size(labels), labels=labels, n_classes=max(c, 1), rng=rng,
                exclude=labels >= 0, knn_sims=graph[0], cluster_memo=cluster_memo(project, pv))
            metrics["note"] = "cold start: fewer than two classes labeled, items ordered by typicality"
        else:  # suggestions before labels: each class's most confident item in turn (no k-means cold start)
            batch = coldstart.by_suggestion(pred.mean, covered, min(DEFAULT_BATCH, int((labels < 0).sum())),
                                            exclude=labels >= 0)
            phase = selection.COLD_START_PHASE
            metrics["note"] = "cold start: each class's most confidently suggested items in turn"
    metrics["phase"] = phase
    rest_score = scores.get("margin", scores.get("typicality"))
    in_batch = np.zeros(n, dtype=bool)
    in_batch[batch] = True
    rest = np.flatnonzero(~in_batch)
    rest = rest[np.argsort(-rest_score[rest], kind="stable")]
    default_order = np.concatenate([np.asarray(batch, dtype=np.int64), rest])
    model_names, model_top, model_p = external.card_arrays(models, class_ids)
    preds = RoundPredictions(-1, pv.item_ids, class_ids, class_names, pseudo, confidence.astype(np.float32),
                             top_idx, top_p.astype(np.float32), votes, members,
                             {k: np.asarray(v, np.float32) for k, v in scores.items()}, default_order, phase,
                             suggestions=suggestions if pred is None else None, member_weights=member_weights,
                             model_names=model_names, model_top=model_top, model_p=model_p)
    return preds, metrics, pending


def _label_rows(item_ids: np.ndarray, lab_items: np.ndarray, lab_classes: np.ndarray,
                class_ids: np.ndarray) -> np.ndarray:
    """Column of each item's current label in ``class_ids``, -1 where unlabeled (or the item or class
    is unknown), row-aligned with ``item_ids``; vectorised, no per-item dict at 1M items."""
    labels = np.full(len(item_ids), -1, dtype=np.int64)
    if not len(lab_items) or not len(item_ids) or not len(class_ids):
        return labels
    order = np.argsort(item_ids, kind="stable")
    pos = np.minimum(np.searchsorted(item_ids, lab_items, sorter=order), len(order) - 1)
    rows = order[pos]
    corder = np.argsort(class_ids, kind="stable")
    cpos = np.minimum(np.searchsorted(class_ids, lab_classes, sorter=corder), len(corder) - 1)
    cols = corder[cpos]
    ok = (item_ids[rows] == lab_items) & (class_ids[cols] == lab_classes)
    labels[rows[ok]] = cols[ok]
    return labels


def _imagenet_suggestions(pv, *, chunk_size: int = 65_536) -> tuple[np.ndarray | None, np.ndarray]:
    """The backbone's own ImageNet proposal per item (name, probability), when it has one."""
    from labeling.embed.backbones import imagenet_head

    n = len(pv.item_ids)
    head = imagenet_head(pv.key)
    if head is None:
        return None, np.zeros(n, dtype=np.float32)
    weight, bias, names = head
    best = np.empty(n, dtype=np.int64)
    conf = np.empty(n, dtype=np.float32)
    for s in range(0, n, chunk_size):
        logits = np.asarray(pv.vectors[s:s + chunk_size], np.float32) @ weight.T + bias  # (n, 1000)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        best[s:s + chunk_size] = p.argmax(axis=1)
        conf[s:s + chunk_size] = p.max(axis=1)
    return np.array(names, dtype=str)[best], conf


