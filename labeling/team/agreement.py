"""Agreement between annotators, as pure functions of votes (nominal labels, missing data allowed).

A vote is an ``(item, annotator, label)`` triple: one per annotator and item (the annotator's newest live
label, as ``storage.labels.votes`` gives them; should a pair repeat, the later triple wins). Items and
labels are any hashable values; a label of ``None`` (or a float NaN) is missing and ignored. Nothing here
reads a project: :mod:`labeling.team.stats` gathers the votes and events and calls these functions.

- :func:`cohen_kappa`: two raters on the same items (equals ``sklearn.metrics.cohen_kappa_score``).
- :func:`pairwise_kappa`: Cohen's kappa for every pair of annotators on the items both labeled.
- :func:`fleiss_kappa`: Fleiss (1971) on the items with the most common number of votes.
- :func:`krippendorff_alpha`: nominal alpha over every item with at least two votes (coincidence matrix).
- :func:`agreement_with_consensus`: each annotator against the majority of the *other* votes on an item.
- :func:`confusion_between_annotators`: per-class counts of (label by one, label by another) on shared items.
- :func:`labels_per_hour`: throughput from event times, counting active time only.
- :func:`source_precision`: how often labels of each source survive a reviewer's or another person's check.

Every figure comes with the number of items (or pairs, or checks) behind it, so a page can show ``n``.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import combinations

import numpy as np

Vote = tuple[Hashable, str, Hashable]
"""``(item, annotator, label)``."""

SourcedVote = tuple[Hashable, str, Hashable, str]
"""``(item, annotator, label, source)``: a vote and how it was given (manual, grid, lasso, ...)."""

IDLE_S = 300.0
"""Longest gap (seconds) between two actions of one person that still counts as work: five minutes covers
a hard item or a look at the map, while a longer pause is a break and counts as only this much."""


def _missing(label: object) -> bool:
    return label is None or (isinstance(label, float) and label != label)


def _sorted_labels(values: Iterable[Hashable]) -> list[Hashable]:
    """Labels in sklearn's order (sorted), falling back to their text when they do not compare."""
    values = set(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


def _by_item(votes: Iterable[Vote]) -> dict[Hashable, dict[str, Hashable]]:
    """item -> {annotator: label}, missing labels left out, items in first-seen order."""
    out: dict[Hashable, dict[str, Hashable]] = defaultdict(dict)
    for item, who, label in votes:
        if not _missing(label):
            out[item][who] = label
    return out


def _count_table(rows: Sequence[Sequence[Hashable]]) -> tuple[list[Hashable], np.ndarray]:
    """(labels, counts[items, labels]): how many of each item's votes went to each label."""
    labels = _sorted_labels(v for r in rows for v in r)
    col = {v: k for k, v in enumerate(labels)}
    flat_rows = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    flat_cols = np.fromiter((col[v] for r in rows for v in r), dtype=np.int64, count=len(flat_rows))
    table = np.zeros((len(rows), len(labels)))
    np.add.at(table, (flat_rows, flat_cols), 1.0)
    return labels, table


# ---- two raters ---------------------------------------------------------------------------------
def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable], *, replace_undefined_by: float = 1.0) -> float:
    """Cohen's kappa of two raters' nominal labels on the same items.

    Computed as ``sklearn.metrics.cohen_kappa_score`` computes it (same label order, same arithmetic), so
    the two agree to the last bit wherever sklearn's is defined.

    Parameters
    ----------
    a, b : sequences of length N
        The two raters' labels, ``a[i]`` and ``b[i]`` on item ``i``. Items where either label is missing
        (None or NaN) are left out.
    replace_undefined_by : float, keyword-only
        The value when kappa is undefined: both raters gave one and the same label to every item, so the
        expected agreement is 1 (the observed agreement is then 1 too). sklearn returns NaN there (its own
        ``replace_undefined_by``); the default 1.0 reports the perfect agreement seen, so a pair that always
        agrees on a one-class sample never shows as "no agreement".

    Returns
    -------
    float
        In [-1, 1]; 1 = perfect agreement, 0 = no better than chance, < 0 = worse than chance.

    Raises
    ------
    ValueError
        If the sequences differ in length or no item has both labels.
    """
    if len(a) != len(b):
        raise ValueError(f"the two raters must label the same items: {len(a)} vs {len(b)} labels")
    pairs = [(x, y) for x, y in zip(a, b) if not (_missing(x) or _missing(y))]
    if not pairs:
        raise ValueError("cohen_kappa needs at least one item labeled by both raters")
    labels = _sorted_labels(v for p in pairs for v in p)
    col = {v: k for k, v in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, ([col[x] for x, _ in pairs], [col[y] for _, y in pairs]), 1)
    confusion = confusion.astype(np.float64)
    sum0, sum1 = confusion.sum(axis=0), confusion.sum(axis=1)
    expected = np.outer(sum0, sum1) / sum0.sum()
    disagree = np.ones_like(confusion)  # nominal weights: 0 on the diagonal, 1 elsewhere
    np.fill_diagonal(disagree, 0)
    denominator = np.sum(disagree * expected)
    if denominator == 0:  # one label throughout: chance agreement is 1
        return float(replace_undefined_by)
    return float(1 - np.sum(disagree * confusion) / denominator)


def pairwise_kappa(votes: Iterable[Vote], *, min_items: int = 2) -> list[dict]:
    """Cohen's kappa of every pair of annotators who labeled at least ``min_items`` of the same items.

    Returns
    -------
    list of dict
        One per pair, annotators in sorted order: ``a``, ``b``, ``items`` (shared items), ``kappa``
        (:func:`cohen_kappa`, 1.0 when both gave one same label throughout) and ``agreement`` (the raw
        fraction of shared items with the same label).
    """
    by_item = _by_item(votes)
    people = sorted({w for vs in by_item.values() for w in vs})
    out = []
    for p, q in combinations(people, 2):
        shared = [(vs[p], vs[q]) for vs in by_item.values() if p in vs and q in vs]
        if len(shared) >= min_items:
            a, b = zip(*shared)
            out.append({"a": p, "b": q, "items": len(shared), "kappa": cohen_kappa(a, b),
                        "agreement": float(np.mean([x == y for x, y in shared]))})
    return out


# ---- many raters --------------------------------------------------------------------------------
def fleiss_kappa_table(table: np.ndarray) -> float:
    """Fleiss' kappa of an ``(items, categories)`` table of vote counts, every row summing to the same n.

    Returns 1.0 when every vote went to one category (chance agreement 1, kappa undefined).

    Raises
    ------
    ValueError
        If the rows differ in their number of votes or have fewer than two.
    """
    table = np.asarray(table, dtype=np.float64)
    n = table.sum(axis=1)
    if len(n) == 0 or not np.allclose(n, n[0]) or n[0] < 2:
        raise ValueError("every item needs the same number (at least 2) of ratings")
    n = n[0]
    p_j = table.sum(axis=0) / table.sum()  # share of all votes per category
    p_i = ((table**2).sum(axis=1) - n) / (n * (n - 1))  # agreeing ordered pairs per item
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    if p_e == 1.0:
        return 1.0
    return float((p_bar - p_e) / (1.0 - p_e))


def fleiss_kappa(votes: Iterable[Vote]) -> dict:
    """Fleiss' kappa on the items with the most common number of votes (at least 2).

    Fleiss (1971) assumes every item has the same number of ratings. Rather than a generalisation to
    unequal numbers (which :func:`krippendorff_alpha` is), this keeps the items with the most common
    number of votes (ties: the larger number) and reports how many it left out. Who the raters are does
    not matter, only how many voted for each class.

    Returns
    -------
    dict
        ``kappa`` (None when no item has two votes), ``items`` used, ``raters`` (votes per item used) and
        ``left_out`` (items with another number of votes, single-vote items included).
    """
    by_item = _by_item(votes)
    sizes = Counter(len(vs) for vs in by_item.values() if len(vs) >= 2)
    if not sizes:
        return {"kappa": None, "items": 0, "raters": None, "left_out": len(by_item)}
    n_raters = max(sizes, key=lambda s: (sizes[s], s))
    rows = [list(vs.values()) for vs in by_item.values() if len(vs) == n_raters]
    _, table = _count_table(rows)
    return {"kappa": fleiss_kappa_table(table), "items": len(rows), "raters": n_raters,
            "left_out": len(by_item) - len(rows)}


def krippendorff_alpha(votes: Iterable[Vote]) -> float | None:
    """Krippendorff's alpha for nominal labels, any number of annotators per item.

    Built from the coincidence matrix: an item with ``m`` votes adds each ordered pair of its votes with
    weight ``1 / (m - 1)``; ``alpha = 1 - (n - 1) * disagreeing / (n**2 - sum_c n_c**2)`` over the ``n``
    pairable votes. Items with a single vote cannot be paired and are left out.

    Returns
    -------
    float or None
        At most 1 (1 = perfect agreement, 0 = chance); None when no item has two votes; 1.0 when every
        pairable vote is one same label (the ``krippendorff`` package raises there: alpha is undefined).
    """
    rows = [list(vs.values()) for vs in _by_item(votes).values() if len(vs) >= 2]
    if not rows:
        return None
    _, counts = _count_table(rows)  # [items, labels]
    weight = 1.0 / (counts.sum(axis=1) - 1.0)  # [items]
    coincidence = counts.T @ (counts * weight[:, None]) - np.diag((counts * weight[:, None]).sum(axis=0))
    n_c = coincidence.sum(axis=1)  # [labels]
    n = n_c.sum()
    disagreeing = coincidence.sum() - np.trace(coincidence)
    expected = (n**2 - (n_c**2).sum()) / (n - 1)
    if expected == 0:
        return 1.0
    return float(1.0 - disagreeing / expected)


# ---- per annotator ------------------------------------------------------------------------------
def agreement_with_consensus(votes: Iterable[Vote]) -> dict[str, dict]:
    """Each annotator's agreement with the majority of the *other* votes on the items they share.

    Leaving the annotator out of the majority keeps them from agreeing with themselves (with two votes
    per item the "consensus" including them would be half their own). When the others tie, a label among
    the tied classes earns ``1 / len(tied)``.

    Returns
    -------
    dict
        annotator -> ``{"items": shared items, "agreement": mean credit in [0, 1]}``, for everyone who
        shares at least one item with someone else.
    """
    acc: dict[str, list[float]] = defaultdict(list)
    for vs in _by_item(votes).values():
        if len(vs) < 2:
            continue
        for who, label in vs.items():
            others = Counter(v for w, v in vs.items() if w != who)
            top = max(others.values())
            tied = [v for v, c in others.items() if c == top]
            acc[who].append(1.0 / len(tied) if label in tied else 0.0)
    return {w: {"items": len(v), "agreement": float(np.mean(v))} for w, v in sorted(acc.items())}


def confusion_between_annotators(votes: Iterable[Vote]) -> tuple[list[Hashable], np.ndarray]:
    """Which classes annotators confuse: counts of pairs of votes on one item.

    Every pair of annotators on an item adds its two labels ``(x, y)`` once in each direction, so the
    matrix is symmetric: the diagonal counts agreeing pairs, ``matrix[i, j]`` (i != j) the pairs where one
    person said ``labels[i]`` and the other ``labels[j]``. Its total is twice the number of pairs.

    Returns
    -------
    labels : list
        The labels that appear in a pair, sorted.
    matrix : ndarray of int64, shape (L, L)
    """
    pairs = []
    for vs in _by_item(votes).values():
        for (_, x), (_, y) in combinations(sorted(vs.items()), 2):
            pairs.append((x, y))
    labels = _sorted_labels(v for p in pairs for v in p)
    col = {v: k for k, v in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for x, y in pairs:
        m[col[x], col[y]] += 1
        m[col[y], col[x]] += 1
    return labels, m


def labels_per_hour(events: Iterable[tuple[str, datetime | float, int]], *, idle_s: float = IDLE_S) -> dict[str, dict]:
    """Per annotator: labels, active hours and labels per active hour.

    Active time is the sum of the gaps between an annotator's consecutive events, each gap capped at
    ``idle_s``: a longer gap is a break and counts only ``idle_s`` (the work on the item that ended it).
    Time before a person's first event is unknown and not counted, so one lone event gives no rate.

    Parameters
    ----------
    events : iterable of (annotator, time, n_labels)
        One per event (or per batch): ``time`` a datetime or seconds; ``n_labels`` the labels it delivered
        (0 for actions that take time but give no label: skips, undos, labels later undone).
    idle_s : float, keyword-only
        The cap on one gap, in seconds.

    Returns
    -------
    dict
        annotator -> ``{"labels", "events", "active_hours", "labels_per_hour"}``; ``labels_per_hour`` is
        None when the active time is zero.
    """
    per: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for who, when, n in events:
        per[who].append((when.timestamp() if isinstance(when, datetime) else float(when), int(n)))
    out = {}
    for who, rows in sorted(per.items()):
        times = np.sort(np.array([t for t, _ in rows]))
        active = float(np.minimum(np.diff(times), idle_s).sum())
        total = sum(n for _, n in rows)
        out[who] = {"labels": total, "events": len(rows), "active_hours": active / 3600.0,
                    "labels_per_hour": total / (active / 3600.0) if active > 0 else None}
    return out


# ---- per source ---------------------------------------------------------------------------------
def source_precision(votes: Iterable[SourcedVote], adjudicated: Mapping[Hashable, Hashable]) -> dict[str, dict]:
    """Measured precision of each label source: how often its labels agree with an independent check.

    A label (one annotator's vote on an item, given through ``source``) is checked

    - by a reviewer, when the item has an adjudication (``adjudicated[item]``, the reviewer's class): the
      reviewer's verdict is the reference, whatever the other votes say;
    - else by the other annotators' votes on the item: the label is confirmed when it is the plurality of
      the others' labels. When the others tie, the item gives no verdict and the label is not checked.

    Precision = confirmed / checked. Reviewers mostly settle disputed items, so the reviewer checks lean
    towards hard items; the audit samples of bulk batches (``labeling.team.review``) are the unbiased measure.

    Parameters
    ----------
    votes : iterable of (item, annotator, label, source)
        Each person's current vote per item (adjudications not among them).
    adjudicated : mapping item -> label
        The reviewer's class for each adjudicated item (skips left out).

    Returns
    -------
    dict
        source -> ``{"labels", "checked", "by_reviewer", "by_votes", "confirmed", "precision"}``, sources
        sorted; ``precision`` is None when nothing was checked.
    """
    by_item: dict[Hashable, list[tuple[str, Hashable, str]]] = defaultdict(list)
    for item, who, label, source in votes:
        if not _missing(label):
            by_item[item].append((who, label, source))
    acc: dict[str, Counter] = defaultdict(Counter)
    for item, vs in by_item.items():
        verdict = adjudicated.get(item)
        for who, label, source in vs:
            c = acc[source]
            c["labels"] += 1
            if verdict is not None and not _missing(verdict):
                c["by_reviewer"] += 1
                c["confirmed"] += label == verdict
                continue
            others = Counter(v for w, v, _ in vs if w != who)
            if not others:
                continue
            (top, n_top), *rest = others.most_common()
            if rest and rest[0][1] == n_top:
                continue  # the others tie: no verdict
            c["by_votes"] += 1
            c["confirmed"] += label == top
    out = {}
    for source, c in sorted(acc.items()):
        checked = c["by_reviewer"] + c["by_votes"]
        out[source] = {"labels": c["labels"], "checked": checked, "by_reviewer": c["by_reviewer"],
                       "by_votes": c["by_votes"], "confirmed": c["confirmed"],
                       "precision": c["confirmed"] / checked if checked else None}
    return out
