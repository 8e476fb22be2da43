"""Consensus labels from several annotators: majority (the default) and a model-weighted option.

Majority with reviewer override is what the database derives on its own (the ``current_labels`` view: a
live adjudication wins, else the class with most votes, a tie going to the newest vote). It needs no model
and is what rounds train on.

The model-weighted option follows CROWDLAB (Goh, Mueller et al., 2022): each annotator's weight grows with
their agreement with the others (leave-one-out majority) above what always answering the most common class
would achieve; the ensemble gets a weight from its own accuracy against the consensus, scaled by the square
root of the mean number of votes per item. An annotator who said ``y`` contributes the likelihood
``a`` for ``y`` and ``(1 - a) / (C - 1)`` for each other class (``a``: their agreement); the consensus is the
argmax of the weighted mean of those likelihoods and the ensemble's probabilities, and its value there is the
item's consensus quality. It shines where few people vote per item and their reliability differs.

Applying it writes the changed items as ``adjudication`` batches (one per class) by ``model-consensus``
(reviewers only), so it stays in the event log, shows in each item's history and can be undone like any batch.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

CONSENSUS_USER = "model-consensus"
EPS = 1e-3


@dataclass
class Consensus:
    item_ids: np.ndarray  # (n,)
    labels: np.ndarray  # (n,) column index into the class list
    quality: np.ndarray  # (n,) consensus probability of the chosen class
    annotator_weight: dict[str, float]
    annotator_agreement: dict[str, float]
    model_weight: float
    model_accuracy: float | None


def majority(votes: list[tuple[int, str, int]]) -> dict[int, int]:
    """item -> most voted column (ties: the vote listed last, i.e. the newest when votes come in event order)."""
    by_item: dict[int, list[int]] = {}
    for item, _, c in votes:
        by_item.setdefault(item, []).append(c)
    out = {}
    for item, cs in by_item.items():
        counts = Counter(cs)
        top = max(counts.values())
        out[item] = next(c for c in reversed(cs) if counts[c] == top)
    return out


def _votes_by_item(votes: list[tuple[int, str, int]]) -> dict[int, list[tuple[str, int]]]:
    """item -> its (annotator, column) votes, in the order given."""
    by_item: dict[int, list[tuple[str, int]]] = {}
    for item, who, c in votes:
        by_item.setdefault(item, []).append((who, c))
    return by_item


def _majority_agreement(by_item: dict[int, list[tuple[str, int]]], n_classes: int) -> dict[str, float]:
    """Each annotator's agreement with the others' majority, on items someone else voted on.

    An annotator without such items gets the pooled agreement of everyone (``0.5 + 0.5 / C`` when
    nobody has any).
    """
    hits: dict[str, list[int]] = {}
    for item, vs in by_item.items():
        for k, (who, c) in enumerate(vs):
            others = [(item, w, cc) for j, (w, cc) in enumerate(vs) if j != k]
            if others:
                hits.setdefault(who, []).append(int(majority(others)[item] == c))
    everyone = {who for vs in by_item.values() for who, _ in vs}
    pooled = [h for hs in hits.values() for h in hs]
    mean_agreement = float(np.mean(pooled)) if pooled else 0.5 + 0.5 / n_classes
    return {who: float(np.mean(hits[who])) if hits.get(who) else mean_agreement for who in everyone}


def _baseline_error(maj: dict[int, int], n_classes: int) -> float:
    """Error rate of always answering the most common majority class (at least ``EPS``)."""
    freq = np.bincount(np.fromiter(maj.values(), dtype=np.int64, count=len(maj)), minlength=n_classes)
    baseline_error = 1.0 - freq.max() / max(freq.sum(), 1)
    return max(baseline_error, EPS)


def _weight(acc: float, baseline_error: float) -> float:
    """A voter's weight: its accuracy's gain over the baseline, as a share of the baseline's error."""
    return max(1.0 - (1.0 - acc) / baseline_error, EPS)


@dataclass
class _Posterior:
    """Weighted mean of the annotators' likelihoods and the model's probabilities, item by item."""

    by_item: dict[int, list[tuple[str, int]]]
    agreement: dict[str, float]
    weights: dict[str, float]
    model_probs: dict[int, np.ndarray]
    model_weight: float
    n_classes: int

    def __call__(self, item: int, skip: int | None = None) -> np.ndarray | None:
        """The consensus distribution of ``item`` without its ``skip``-th vote; None with nothing to weigh."""
        n_classes = self.n_classes
        acc = np.zeros(n_classes)
        total = 0.0
        for k, (who, c) in enumerate(self.by_item[item]):
            if k == skip:
                continue
            a = min(max(self.agreement[who], EPS), 1 - EPS)
            like = np.full(n_classes, (1.0 - a) / (n_classes - 1))
            like[c] = a
            acc += self.weights[who] * like
            total += self.weights[who]
        if item in self.model_probs and self.model_weight > 0:
            p = np.asarray(self.model_probs[item], dtype=np.float64)
            acc += self.model_weight * p / max(p.sum(), EPS)
            total += self.model_weight
        return acc / total if total > 0 else None


def _consensus_agreement(posterior: _Posterior) -> dict[str, float]:
    """Each annotator against the consensus of everything else (the others and the model), which
    separates reliable from unreliable people even with two votes per item; annotators without such
    items keep their agreement."""
    hits: dict[str, list[int]] = {}
    for item, vs in posterior.by_item.items():
        for k, (who, c) in enumerate(vs):
            post = posterior(item, skip=k)
            if post is not None:
                hits.setdefault(who, []).append(int(np.argmax(post) == c))
    return {who: float(np.mean(hits[who])) if hits.get(who) else a for who, a in posterior.agreement.items()}


def crowdlab(votes: list[tuple[int, str, int]], model_probs: dict[int, np.ndarray], n_classes: int) -> Consensus:
    """Model-weighted consensus.

    Parameters
    ----------
    votes
        (item_id, annotator, column) triples, one per annotator and item, in event order.
    model_probs
        item_id -> the ensemble's probabilities (n_classes,) for every voted item it scored; items it did not
        score are decided by the annotators alone.
    n_classes
        C, the number of columns.
    """
    if n_classes < 2:
        raise ValueError("a consensus needs at least two classes")
    maj = majority(votes)
    by_item = _votes_by_item(votes)
    agreement = _majority_agreement(by_item, n_classes)
    baseline_error = _baseline_error(maj, n_classes)
    weights = {who: _weight(a, baseline_error) for who, a in agreement.items()}
    scored = [i for i in maj if i in model_probs]
    model_accuracy = (float(np.mean([int(np.argmax(model_probs[i]) == maj[i]) for i in scored]))
                      if scored else None)
    mean_votes = len(votes) / max(len(by_item), 1)
    model_weight = (_weight(model_accuracy, baseline_error) * float(np.sqrt(mean_votes))
                    if model_accuracy is not None else 0.0)

    # second pass: each annotator against the consensus of everything else
    agreement = _consensus_agreement(_Posterior(by_item, agreement, weights, model_probs, model_weight, n_classes))
    weights = {who: _weight(a, baseline_error) for who, a in agreement.items()}
    posterior = _Posterior(by_item, agreement, weights, model_probs, model_weight, n_classes)

    items = np.array(sorted(by_item), dtype=np.int64)
    labels = np.empty(len(items), dtype=np.int64)
    quality = np.empty(len(items), dtype=np.float64)
    for r, item in enumerate(items.tolist()):
        post = posterior(item)
        labels[r] = int(np.argmax(post))
        quality[r] = float(post[labels[r]])
    return Consensus(items, labels, quality, weights, agreement, model_weight, model_accuracy)


def _spread_top_k(top_idx, top_p, col: dict[int, int], n_classes: int) -> np.ndarray:
    """A round's top-k probabilities of one item as a distribution over the columns (rest shared evenly)."""
    dist = np.zeros(n_classes)
    for c, pr in zip(top_idx, top_p):
        if c >= 0 and int(c) in col:
            dist[col[int(c)]] = pr
    rest = max(1.0 - dist.sum(), 0.0)
    dist[dist == 0] = rest / max(int((dist == 0).sum()), 1)
    return dist


def _round_probs(service, items: set[int], col: dict[int, int], n_classes: int) -> dict[int, np.ndarray]:
    """item -> the newest round's distribution over the columns, for the given items it pseudo-labeled."""
    probs: dict[int, np.ndarray] = {}
    got = service.predictions()
    if got is None:
        return probs
    _, p = got
    row_of = p.row_of()
    for item in items:
        r = row_of.get(item)
        if r is None or p.pseudo[r] < 0:
            continue
        probs[item] = _spread_top_k(p.top_idx[r], p.top_p[r], col, n_classes)
    return probs


def model_weighted(service) -> tuple[Consensus, list[str], dict[int, int]]:
    """CROWDLAB consensus of a project's votes with its newest round; also the class names (by column) and
    the current (majority or adjudicated) column of each voted item."""
    from storage import labels as labels_q

    with service.project.db.session() as con:
        names = dict(labels_q.classes(con))
        raw = labels_q.votes(con)
        current = {int(r.item_id): r.class_id for r in labels_q.current_state(con) if r.kind == "label"}
    class_ids = sorted(names)
    col = {c: k for k, c in enumerate(class_ids)}
    votes = [(int(r.item_id), r.user_name, col[r.class_id]) for r in raw if r.class_id in col]
    # the round's top-3 probabilities, spread as a distribution over the classes (rest shared evenly)
    probs = _round_probs(service, {v[0] for v in votes}, col, len(class_ids))
    result = crowdlab(votes, probs, len(class_ids)) if len(class_ids) >= 2 and votes else \
        Consensus(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), {}, {}, 0.0, None)
    return result, [names[c] for c in class_ids], {i: col[c] for i, c in current.items() if c in col}


def apply_model_weighted(service, *, user: str, role: str, min_votes: int = 2) -> tuple[str | None, list[int]]:
    """Write the model-weighted consensus where it differs from the current label, on items with at least
    ``min_votes`` votes, as one adjudication batch by ``model-consensus`` (reviewers only); returns
    (batch id or None, item ids)."""
    from labeling.team.auth import Identity, require
    from storage import labels as labels_q

    require(Identity(user, role), "reviewer", "apply a consensus")
    result, names, current = model_weighted(service)
    with service.project.db.session() as con:
        n_votes = Counter(int(r.item_id) for r in labels_q.votes(con))
        settled = {int(r.item_id) for r in labels_q.adjudications(con)}
    changed: dict[str, list[int]] = {}
    for item, c in zip(result.item_ids.tolist(), result.labels.tolist()):
        if n_votes[item] >= min_votes and item not in settled and current.get(item) != c:
            changed.setdefault(names[c], []).append(item)
    batch = None
    for name, items in changed.items():  # one batch per class (a batch carries one label)
        batch = service.label(items, name, user=CONSENSUS_USER, source="adjudication", role=role)
    return batch, [i for items in changed.values() for i in items]
