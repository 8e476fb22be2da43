"""People's own models as ensemble members of a round.

A model's imported predictions (:mod:`labeling.data.predictions`) join a round as one member,
``model:<name>``, beside the trained heads and the propagation member:

- Its distribution is mapped onto the round's items and classes; mass on classes the round does not
  know yet is dropped and the rest renormalised. Where it predicted nothing the member takes the
  learner's own mean, so it neither pulls nor disagrees there.
- Its share of the mean is fixed by the person (a number in [0, 1]) or learned from the human labels:
  the model never saw them, so its accuracy on them is an honest held-out figure, as the learner's
  cross-validated accuracy is. Each gets the weight an optimal weighted vote gives an independent
  classifier of that accuracy, ``log(a / (1 - a)) + log(C - 1)`` (Nitzan and Paroush, 1982; Kuncheva,
  *Combining Pattern Classifiers*, 2014, ch. 4), so a model no better than chance gets nothing and one
  better than the learner leads. With fewer than :data:`MIN_CHECKED` labels to check it on, the model and
  the learner count as equals.
- Before two classes have labels there is no learner: the models alone make the round's suggestions.

Every acquisition score reads the weighted members, so disagreement between a model and the heads
ranks the queue like any other disagreement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_CHECKED = 5
"""Fewest human labels a model's learned share is measured on; below it the model counts as the learner's equal."""
MAX_SHARE = 0.95
"""The learner keeps at least this complement of the mean once it exists."""


@dataclass
class Member:
    name: str
    probs: np.ndarray  # (N, C) float32, rows summing to 1 where covered, zero elsewhere
    covered: np.ndarray  # (N,) bool: the model predicted this item
    weight: float | None  # a fixed share, or None: learned


def load_members(models: list[dict], folder: Path, item_ids: np.ndarray, class_ids: np.ndarray) -> list[Member]:
    """The enabled models of ``models`` (rows of ``external_models``) mapped onto a round's rows and columns;
    a model whose file is missing or covers none of them is left out."""
    out = []
    order = np.argsort(item_ids, kind="stable")
    col_of = {int(c): k for k, c in enumerate(class_ids.tolist())}
    for m in models:
        path = folder / m["file"]
        if not m["enabled"] or not path.is_file():
            continue
        with np.load(path) as z:
            ids, cls, probs = z["item_ids"], z["class_ids"], z["probs"]
        pos = np.minimum(np.searchsorted(item_ids, ids, sorter=order), max(len(order) - 1, 0))
        rows = order[pos] if len(order) else pos
        hit = item_ids[rows] == ids if len(order) else np.zeros(len(ids), bool)
        cols = np.array([col_of.get(int(c), -1) for c in cls], dtype=np.int64)
        mapped = np.zeros((len(item_ids), len(class_ids)), dtype=np.float32)
        known = cols >= 0
        if hit.any() and known.any():
            mapped[rows[hit][:, None], cols[known][None, :]] = probs[hit][:, known]
        total = mapped.sum(axis=1)
        covered = total > 0
        if not covered.any():
            continue
        mapped[covered] /= total[covered, None]
        out.append(Member(str(m["name"]), mapped, covered, None if m["weight"] is None else float(m["weight"])))
    return out


def vote_weight(accuracy: float, n_classes: int) -> float:
    """The weight of an independent voter of this accuracy among ``n_classes`` (0 at chance or below)."""
    a = min(max(float(accuracy), 1e-3), 0.99)
    return max(0.0, math.log(a / (1.0 - a)) + math.log(max(n_classes - 1, 1)))


def accuracy_on_labels(member: Member, labels: np.ndarray) -> tuple[float | None, int]:
    """(the model's accuracy on the human labels it predicted, how many), labels as column indices (-1: none)."""
    rows = np.flatnonzero((labels >= 0) & member.covered)
    if not len(rows):
        return None, 0
    return float((member.probs[rows].argmax(axis=1) == labels[rows]).mean()), int(len(rows))


def shares(members: list[Member], labels: np.ndarray, n_classes: int, learner_accuracy: float | None) -> tuple[
        np.ndarray, list[dict]]:
    """Each model's share of the round's mean, and what it rests on (for the round's metrics)."""
    learner_w = None if learner_accuracy is None else vote_weight(learner_accuracy, n_classes)
    raw, info = [], []
    for m in members:
        acc, n = accuracy_on_labels(m, labels)
        entry = {"model": m.name, "accuracy": acc, "checked_on": n, "weight": "fixed" if m.weight is not None else "auto"}
        if m.weight is not None:
            raw.append(("fixed", m.weight))
        elif acc is not None and n >= MIN_CHECKED and vote_weight(acc, n_classes) == 0.0:
            raw.append(("auto", 0.0))  # no better than chance on the human labels: no share, whatever the learner
        elif acc is None or n < MIN_CHECKED or learner_w is None:
            raw.append(("auto", 0.5))  # as much as the learner: nothing yet to tell them apart
        else:
            mine = vote_weight(acc, n_classes)
            raw.append(("auto", mine / (mine + learner_w) if mine + learner_w > 0 else 0.0))
        info.append(entry)
    s = np.array([v for _, v in raw], dtype=np.float64)
    if len(s) > 1:  # several learned shares: each was measured against the learner alone
        auto = np.array([k == "auto" for k, _ in raw])
        s[auto] = s[auto] / max(1.0, auto.sum())
    total = s.sum()
    if total > MAX_SHARE:
        s *= MAX_SHARE / total
    for entry, v in zip(info, s):
        entry["share"] = round(float(v), 4)
    return s, info


def join(probs: np.ndarray, names: list[str], weights: np.ndarray, members: list[Member], model_shares: np.ndarray
         ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The learner's members (``probs`` (M, N, C), ``weights`` (M,)) with the models added: each model's
    rows without a prediction take the learner's mean; the learner's weights scale to 1 - the models' shares."""
    base = np.tensordot(weights, probs, axes=1).astype(np.float32)
    extra = []
    for m in members:
        filled = np.where(m.covered[:, None], m.probs, base)
        extra.append(filled)
    out = np.concatenate([probs, np.stack(extra).astype(np.float32)], axis=0)
    total = float(np.sum(model_shares))
    new_w = np.concatenate([np.asarray(weights, np.float64) * (1.0 - total), np.asarray(model_shares, np.float64)])
    return out, names + [f"model:{m.name}" for m in members], new_w


def alone(members: list[Member]) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Before a learner exists: the models' members, their weights (fixed shares relative to each other,
    learned ones as 1) and which items some model covers. Uncovered rows are uniform."""
    n, c = members[0].probs.shape
    uniform = np.full((n, c), 1.0 / max(c, 1), dtype=np.float32)
    probs = np.stack([np.where(m.covered[:, None], m.probs, uniform) for m in members]).astype(np.float32)
    w = np.array([1.0 if m.weight is None else m.weight for m in members], dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(members), 1.0 / len(members))
    covered = np.any(np.stack([m.covered for m in members]), axis=0)
    return probs, [f"model:{m.name}" for m in members], w, covered


def blend_held_out(mean: np.ndarray, rows: np.ndarray, members: list[Member], model_shares: np.ndarray) -> np.ndarray:
    """A cross-validation fold's held-out mean with the models joined as the round joins them."""
    if not members:
        return mean
    total = float(np.sum(model_shares))
    out = mean * (1.0 - total)
    for m, s in zip(members, model_shares):
        out = out + s * np.where(m.covered[rows][:, None], m.probs[rows], mean)
    return out.astype(np.float32)


def card_arrays(members: list[Member], class_ids: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """What the card shows of each model: (names, (E, N) class id or -1, (E, N) its probability)."""
    if not members:
        return [], np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32)
    top = np.stack([np.where(m.covered, class_ids[m.probs.argmax(axis=1)], -1) for m in members]).astype(np.int64)
    p = np.stack([np.where(m.covered, m.probs.max(axis=1), 0.0) for m in members]).astype(np.float32)
    return [m.name for m in members], top, p
