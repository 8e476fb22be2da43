"""The learner of a round: ensemble heads + kNN label propagation, with self-training.

Used by the app's rounds and by ``simulate`` alike, so the simulation measures what the app does.

1. Label propagation over the kNN graph spreads the human labels (PAPERS.md #10, #11).
2. Self-training: unlabeled items that propagation labels most confidently join the training set
   with a lower weight (human batch + pseudo-labeled batch, PAPERS.md #3).
3. K heads are trained on that set (``labeling.model.ensemble``).
4. The propagated distribution joins the heads as one more ensemble member, so the mean
   probability blends heads and neighbours and disagreement counts the neighbours' vote too.
5. The blend is learned: the propagation member's share is the one that best predicts held-out
   labels (inner folds), so propagation leads while labels are few and fades when the heads know
   better.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from labeling.model.ensemble import EnsembleConfig, fit_ensemble, fit_fold_heads
from labeling.model.smoothing import smoothed
from labeling.model.propagation import graph_operator, label_propagation


@dataclass(frozen=True)
class LearnerConfig:
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    knn_member: bool = True
    """Add label propagation over the kNN graph as one more ensemble member."""
    self_training: bool = True
    self_training_below: float = 5.0
    """Self-train only while there are fewer than this many human labels per class.

    Measured on Animal-MNIST: pseudo-labels add 3.6 points at 2 labels per class and cost 0.8
    points at 10 per class (and ten times the training time)."""
    pseudo_fraction: float = 0.5
    """Share of unlabeled items (the most confidently propagated) used as pseudo-labels."""
    pseudo_weight: float = 0.3
    """Weight of a pseudo-label relative to a human label."""
    knn_weight: float = 0.85
    """Share of the propagation member in the mean probability (the heads share the rest) while the
    blend is not learned (``learn_blend``: below ``blend_min_per_class`` labels per class, or switched off).

    With one or two labels per class propagation is the stronger member: on Animal-MNIST (default
    policy, 5 repeats, same seeds, 20 labels) 0.85 with ``knn_sharpen`` 1.5 gives 74.15 % and a
    calibration error of 4.5 %, against 72.9 % and 5.3 % with an even, unsharpened blend, and
    LogisticRegression's 64.2 % on the same labels (PAPERS.md #11). Sharper blends were as accurate but
    overconfident (power 3: ECE 14.9 %). The heads keep 15 %, so their disagreement still ranks."""
    learn_blend: bool = True
    """Fit the propagation member's share on held-out labels each round (inner folds, ``BLEND_GRID``)
    instead of the fixed ``knn_weight``, once there are ``blend_min_per_class`` labels per class.

    Measured on the demo (``simulate``, 3 repeats, same seeds): default policy 78.8 -> 81.0 % at 50
    labels, 81.4 -> 84.8 % at 100 and 87.4 -> 88.4 % at 200; random 64.5 -> 66.3, 76.1 -> 78.0,
    82.7 -> 83.2; unchanged below 5 labels per class, where the fixed share is kept."""
    knn_sharpen: float = 1.5
    """Power the propagation member's distribution is raised to (then renormalised) before it joins
    the mean: above 1 it is sharper. Propagated label mass is spread thin, so the member is
    underconfident; with ``learn_blend`` the power is fitted on held-out labels with the share (this
    value then only breaks ties)."""
    blend_min_per_class: float = 5.0
    """Below this many labels per class the fixed ``knn_weight`` is kept: too few to fit a share on."""
    class_mass: bool | None = None
    """Class mass normalisation of the propagation member (``label_propagation(class_mass=True)``): None
    (the default) uses it below ``blend_min_per_class`` labels per class, where propagation leads the
    fixed blend, and not from there; True or False forces it (a round's cross-validation keeps the
    round's own choice, ``with_fixed_blend``).

    Measured on the demo (``simulate``, 10 repeats, budgets 10/20/50/100/200 labels): with it at every
    label count, default 58.2 -> 58.4, 72.4 -> 75.0, 81.2 -> 81.5, 84.4 -> 84.3, 87.9 -> 87.9 % and
    random 44.0 -> 45.7, 58.6 -> 63.0, 69.5 -> 72.7, 80.3 -> 81.3, 83.8 -> 84.4 %, but the shown
    confidence's calibration error from 10 labels per class rose (default at 20 per class 7.3 ->
    13.1 %, random at 10 per class 4.4 -> 9.9 %) and fewer confident batches passed a checked sample;
    chosen per round on the inner folds it was no better than plain. Below 5 per class it keeps the
    gain (2 labels per class: +2.6 points for the default policy, +4.4 for random picks)."""

    feature_smoothing: float = 0.5
    """Share of the neighbours' mean in the heads' input (``labeling.model.smoothing``; 0 switches it off):
    each item's embedding is averaged with its ``smoothing_neighbours`` nearest items' on the kNN graph
    before the heads see it, so the heads learn from a neighbourhood instead of one noisy vector.

    Measured on the demo (``simulate``, 10 repeats, budgets 10/20/50/100/200 labels): default policy
    58.4/75.0/81.2/84.4/87.9 -> 58.4/75.2/81.4/85.3/88.3 % and random picks 45.7/63.0/69.5/80.3/83.8 ->
    45.7/63.1/70.1/80.9/85.0 %; with 50 random labels per class (10 repeats) 87.9 -> 89.0 % against
    LogisticRegression's 88.2 % on the same labels. Shares 0.3 and 0.7 and 15 neighbours were each
    lower somewhere."""
    smoothing_neighbours: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prediction:
    """A round's ensemble: its members' probabilities, their weights and the weighted mean.

    The one distribution of a round: the suggestion, its confidence, the top classes, every
    acquisition score, auto-accept and exports all read :attr:`mean` (or pass :attr:`weights` to a
    kernel), so the queue ranks by what the person is shown.
    """

    probs: np.ndarray  # (M, N, C): K heads (+ the propagation member)
    member_names: list[str]
    weights: np.ndarray  # (M,) summing to 1
    knn_power: float = 1.0
    """The power the propagation member was sharpened with (``LearnerConfig.knn_sharpen``)."""
    knn_class_mass: bool = False
    """Whether the propagation member's classes were mass-normalised (``LearnerConfig.class_mass``)."""

    @property
    def mean(self) -> np.ndarray:
        """Weighted mean probability of the members, ``(N, C)``."""
        got = self.__dict__.get("_mean")
        if got is None:
            got = np.tensordot(self.weights, self.probs, axes=1).astype(np.float32)
            self.__dict__["_mean"] = got
        return got

    def scores(self) -> dict[str, np.ndarray]:
        """Every deterministic acquisition score of the members under their weights, ``name -> (N,)``."""
        from labeling.active.acquisition import all_scores

        return all_scores(self.probs, weights=self.weights)


BLEND_GRID = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
"""Shares of the propagation member tried when the blend is learned."""
BLEND_FOLDS = 3


def _inner_folds(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A stratified fold (or -1: never held out) for each row; classes with one label stay in training."""
    assign = np.full(len(labels), -1, dtype=np.int64)
    offset = 0
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if len(members) >= 2:
            assign[members] = (offset + rng.permutation(len(members))) % BLEND_FOLDS
            offset += len(members)
    return assign


SHARPEN_GRID = (1.0, 2.0, 3.0, 4.0)
"""Powers of the propagation member tried with each share."""


def sharpen(p: np.ndarray, power: float) -> np.ndarray:
    """Rows of ``p`` raised to ``power`` and renormalised (``power`` 1: unchanged; uniform rows stay uniform)."""
    if power == 1.0:
        return p
    q = np.power(np.asarray(p, dtype=np.float64), power)
    q /= np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
    return q.astype(np.float32)


def choose_blend(heads: np.ndarray, prop: np.ndarray, truth: np.ndarray, *, default: float,
                 default_power: float = 1.0, grid: tuple[float, ...] = BLEND_GRID,
                 powers: tuple[float, ...] = SHARPEN_GRID) -> tuple[float, float]:
    """The propagation share and power that predict the held-out labels best: most right, then lowest
    log-loss (so the shown confidence is as calibrated as the blend allows), then nearest the defaults.

    Parameters
    ----------
    heads, prop : (n, C) float
        Held-out probabilities of the heads' mean and of the propagation member.
    truth : (n,) int
        The held-out labels (column index).

    Returns
    -------
    (share, power)
    """
    if not len(truth):
        return default, default_power
    best, best_key = (default, default_power), None
    rows = np.arange(len(truth))
    for power in powers:
        sharp = sharpen(prop, power)
        for w in grid:
            mix = (1.0 - w) * heads + w * sharp
            right = int((mix.argmax(axis=1) == truth).sum())
            nll = float(-np.log(np.clip(mix[rows, truth], 1e-6, 1.0)).mean())
            key = (-right, round(nll, 6), abs(w - default), abs(power - default_power))
            if best_key is None or key < best_key:
                best, best_key = (float(w), float(power)), key
    return best


def few_labels(labels: np.ndarray, n_classes: int, config: LearnerConfig) -> bool:
    """Too few labels per labeled class to learn the blend: the fixed share (and class mass) applies."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    return int((labels >= 0).sum()) < config.blend_min_per_class * max(1, int((counts > 0).sum()))


def uses_class_mass(labels: np.ndarray, n_classes: int, config: LearnerConfig) -> bool:
    """Whether the propagation member is class-mass normalised for these labels (``config.class_mass``)."""
    return few_labels(labels, n_classes, config) if config.class_mass is None else bool(config.class_mass)


def learned_blend(x: np.ndarray, labels: np.ndarray, n_classes: int, *, graph, config: LearnerConfig,
                  device) -> tuple[float, float]:
    """The propagation member's share and power fitted on held-out labels (``BLEND_FOLDS`` inner folds),
    or the fixed ``config.knn_weight`` and ``config.knn_sharpen`` while labels are too few to fit them on."""
    labels = np.asarray(labels, dtype=np.int64)
    n_labeled = int((labels >= 0).sum())
    if graph is None or few_labels(labels, n_classes, config):
        return config.knn_weight, config.knn_sharpen
    assign = _inner_folds(labels, n_classes, np.random.default_rng(config.ensemble.seed))
    # The inner fits train as the round itself does: without self-training once the round has enough
    # labels for none (the inner folds' two thirds would otherwise self-train on hundreds of pseudo-labels
    # the round never uses, and cost ten times the round's own fit).
    inner = replace(config, learn_blend=False, knn_member=True, class_mass=False,
                    self_training=config.self_training and n_labeled < config.self_training_below * n_classes)
    if not inner.self_training:
        return _blend_from_batched_folds(x, labels, n_classes, assign, graph=graph, config=config, device=device)
    heads, prop, truth = [], [], []
    for _f, held, masked in _inner_fold_masks(labels, assign):
        # The round's two parts trained without the held-out rows; the heads score those rows only.
        ens, propagated = _fit_parts(x, masked, n_classes, graph=graph, config=inner, device=device)
        heads.append(ens.predict_proba(x[held]).mean(axis=0))
        prop.append(propagated[held])
        truth.append(labels[held])
    return _chosen(heads, prop, truth, config)


def _inner_fold_masks(labels: np.ndarray, assign: np.ndarray):
    """For each inner fold with rows: ``(fold, held-out rows, labels with those rows unlabeled)``."""
    for f in range(BLEND_FOLDS):
        held = np.flatnonzero(assign == f)
        if len(held):
            masked = labels.copy()
            masked[held] = -1
            yield f, held, masked


def _chosen(heads: list, prop: list, truth: list, config: LearnerConfig) -> tuple[float, float]:
    """:func:`choose_blend` on the inner folds' held-out rows, or the fixed blend without any."""
    if not truth:
        return config.knn_weight, config.knn_sharpen
    return choose_blend(np.concatenate(heads), np.concatenate(prop), np.concatenate(truth), default=config.knn_weight,
                        default_power=config.knn_sharpen)


def _blend_from_batched_folds(x, labels, n_classes, assign, *, graph, config: LearnerConfig, device):
    """:func:`learned_blend`'s inner folds without self-training: every fold's heads trained in one
    batched pass (:func:`fit_fold_heads`), with the rows, weights and steps one fit per fold would use."""
    rows = np.flatnonzero(labels >= 0)
    held_heads = fit_fold_heads(x[rows], labels[rows], n_classes, assign[rows], config=config.ensemble, device=device)
    operator = graph_operator(graph)
    heads, prop, truth = [], [], []
    for f, held, masked in _inner_fold_masks(labels, assign):
        heads.append(held_heads[assign[rows] == f])
        prop.append(label_propagation(graph[0], graph[1], masked, n_classes, operator=operator)[held])
        truth.append(labels[held])
    return _chosen(heads, prop, truth, config)


def _fit_parts(x: np.ndarray, labels: np.ndarray, n_classes: int, *, graph, config: LearnerConfig, device):
    """The round's two parts: its trained heads and the propagated distribution ``(N, C)`` (None without
    graph), with self-training while labels are few."""
    labeled = labels >= 0
    prop = None
    if graph is not None and (config.knn_member or config.self_training):
        prop = label_propagation(graph[0], graph[1], labels, n_classes, operator=graph_operator(graph),
                                 class_mass=uses_class_mass(labels, n_classes, config))  # (N, C)
    train_idx = np.flatnonzero(labeled)
    y = labels[train_idx]
    weight = np.ones(len(train_idx))
    if prop is not None and config.self_training and labeled.sum() < config.self_training_below * n_classes:
        unl = np.flatnonzero(~labeled)
        conf = prop[unl].max(axis=1)
        take = unl[np.argsort(-conf, kind="stable")[: int(len(unl) * config.pseudo_fraction)]]
        take = take[prop[take].max(axis=1) > 1.0 / n_classes + 1e-6]  # reached by some label
        train_idx = np.concatenate([train_idx, take])
        y = np.concatenate([y, prop[take].argmax(axis=1)])
        weight = np.concatenate([weight, np.full(len(take), config.pseudo_weight)])
    ens = fit_ensemble(x[train_idx], y, n_classes, config=config.ensemble, sample_weight=weight, device=device)
    return ens, prop


def with_fixed_blend(config: LearnerConfig, pred: "Prediction") -> LearnerConfig:
    """The config that keeps ``pred``'s learned blend instead of fitting it again: what a round's
    cross-validation trains with (one share fitted on all labels, not one per fold per inner fold)."""
    if not config.learn_blend or pred.member_names[-1:] != ["knn-propagation"]:
        return config
    return replace(config, learn_blend=False, knn_weight=float(pred.weights[-1]), knn_sharpen=pred.knn_power,
                   class_mass=pred.knn_class_mass)


def fit_predict(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    graph: tuple[np.ndarray, np.ndarray] | None,
    config: LearnerConfig = LearnerConfig(),
    device: torch.device | str = "cpu",
) -> Prediction:
    """Train on the labeled rows of ``x`` and predict every row.

    Parameters
    ----------
    x : (N, D) float32
        Prepared embeddings of all items. With a graph, the heads see them smoothed over it
        (``config.feature_smoothing``, :mod:`labeling.model.smoothing`).
    labels : (N,) int
        Class index of each human-labeled item, -1 where unlabeled.
    graph : ((N, k) sims, (N, k) row indices), optional
        The kNN graph of ``x`` (self excluded); needed for propagation and self-training.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not (labels >= 0).any():
        raise ValueError("no labeled items: label at least one item first")
    x = smoothed(x, graph, share=config.feature_smoothing, neighbours=config.smoothing_neighbours)
    ens, prop = _fit_parts(x, labels, n_classes, graph=graph, config=config, device=device)
    probs = ens.predict_proba(x)
    names = [f"{t}-{i}" for i, t in enumerate(ens.head_types)]
    weights = np.full(len(names), 1.0 / len(names))
    power = 1.0
    if prop is not None and config.knn_member:
        share, power = config.knn_weight, config.knn_sharpen
        if config.learn_blend:
            share, power = learned_blend(x, labels, n_classes, graph=graph, config=config, device=device)
        probs = np.concatenate([probs, sharpen(prop, power)[None].astype(np.float32)], axis=0)
        names.append("knn-propagation")
        weights = np.append(weights * (1.0 - share), share)
    return Prediction(probs=probs, member_names=names, weights=weights, knn_power=float(power),
                      knn_class_mass=bool(prop is not None and uses_class_mass(labels, n_classes, config)))
