"""Agreement between annotators, as pure functions of votes (nominal labels, missing data allowed).

A vote is an ``(item, annotator, label)`` triple, one per annotator and item (the annotator's newest live
label, as ``storage.labels.votes`` gives them). Labels are any hashable values.

- :func:`cohen_kappa`: two raters on the same items (equals ``sklearn.metrics.cohen_kappa_score``).
- :func:`pairwise_kappa`: Cohen's kappa for every pair of annotators on the items both labeled.
- :func:`fleiss_kappa`: Fleiss (1971) on the items with exactly the most common number of votes (Fleiss
  assumes a fixed number of raters per item; the other items are left out and counted).
- :func:`krippendorff_alpha`: nominal alpha over every item with at least two votes (coincidence matrix).
- :func:`agreement_with_consensus`: each annotator against the majority of the *other* votes on an item.
- :func:`confusion_between_annotators`: per-class counts of (label by one, label by another) on shared items.
- :func:`labels_per_hour`: from event times, counting active time only (gaps over ``idle_s`` are breaks).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from itertools import combinations

import numpy as np

Vote = tuple[Hashable, str, Hashable]


def _by_item(votes: Iterable[Vote]) -> dict[Hashable, dict[str, Hashable]]:
    out: dict[Hashable, dict[str, Hashable]] = defaultdict(dict)
    for item, who, label in votes:
        out[item][who] = label
    return out


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters' labels on the same items; 1.0 when both always give one same label."""
    if len(a) != len(b):
        raise ValueError(f"the two raters must label the same items: {len(a)} vs {len(b)} labels")
    if not a:
        raise ValueError("cohen_kappa needs at least one item")
    labels = sorted(set(a) | set(b), key=str)
    col = {v: k for k, v in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b):
        m[col[x], col[y]] += 1
    n = m.sum()
    observed = np.trace(m) / n
    expected = float((m.sum(axis=1) * m.sum(axis=0)).sum() / n**2)
    if expected == 1.0:  # both raters used one and the same label throughout: sklearn gives nan
        return 1.0 if observed == 1.0 else 0.0
    return float((observed - expected) / (1.0 - expected))


def pairwise_kappa(votes: Iterable[Vote], *, min_items: int = 2) -> list[dict]:
    """Cohen's kappa of every pair of annotators who share at least ``min_items`` items."""
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


def fleiss_kappa(votes: Iterable[Vote]) -> dict:
    """Fleiss' kappa on the items with the most common number of votes (at least 2).

    Returns ``{"kappa", "items", "raters", "left_out"}``; kappa is None when no item qualifies.
    """
    by_item = _by_item(votes)
    sizes = Counter(len(vs) for vs in by_item.values() if len(vs) >= 2)
    if not sizes:
        return {"kappa": None, "items": 0, "raters": None, "left_out": len(by_item)}
    n_raters = max(sizes, key=lambda s: (sizes[s], s))
    rows = [list(vs.values()) for vs in by_item.values() if len(vs) == n_raters]
    return {"kappa": fleiss_kappa_table(_count_table(rows)), "items": len(rows), "raters": n_raters,
            "left_out": len(by_item) - len(rows)}


def _count_table(rows: list[list[Hashable]]) -> np.ndarray:
    labels = sorted({v for r in rows for v in r}, key=str)
    col = {v: k for k, v in enumerate(labels)}
    table = np.zeros((len(rows), len(labels)))
    for i, r in enumerate(rows):
        for v in r:
            table[i, col[v]] += 1
    return table


def fleiss_kappa_table(table: np.ndarray) -> float:
    """Fleiss' kappa of an (items, categories) table of counts with the same row sum ``n``."""
    table = np.asarray(table, dtype=np.float64)
    n = table.sum(axis=1)
    if not np.allclose(n, n[0]) or n[0] < 2:
        raise ValueError("every item needs the same number (at least 2) of ratings")
    n = n[0]
    p_j = table.sum(axis=0) / table.sum()
    p_i = ((table**2).sum(axis=1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    if p_e == 1.0:
        return 1.0 if p_bar == 1.0 else 0.0
    return float((p_bar - p_e) / (1.0 - p_e))


def krippendorff_alpha(votes: Iterable[Vote]) -> float | None:
    """Krippendorff's alpha for nominal data; items with a single vote are not pairable and left out."""
    rows = [list(vs.values()) for vs in _by_item(votes).values() if len(vs) >= 2]
    if not rows:
        return None
    labels = sorted({v for r in rows for v in r}, key=str)
    col = {v: k for k, v in enumerate(labels)}
    coincidence = np.zeros((len(labels), len(labels)))
    for r in rows:
        counts = np.zeros(len(labels))
        for v in r:
            counts[col[v]] += 1
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (len(r) - 1)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    observed = coincidence.sum() - np.trace(coincidence)
    expected = (n**2 - (n_c**2).sum()) / (n - 1)
    if expected == 0:
        return 1.0 if observed == 0 else 0.0
    return float(1.0 - observed / expected)


def agreement_with_consensus(votes: Iterable[Vote]) -> dict[str, dict]:
    """Each annotator's agreement with the majority of the other votes on the items they share with others.

    Leaving the annotator out keeps someone who labels alone from agreeing with themselves. Ties among the
    others count as agreement when the annotator's label is among the tied classes, at 1/len(tied).
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
    """(labels, matrix): ``matrix[i, j]`` counts pairs of votes on one item where one said i and another j.

    Every unordered pair of annotators on an item counts once in each direction, so the matrix is
    symmetric; its diagonal is agreement, and off-diagonal mass shows which classes people confuse.
    """
    pairs = []
    for vs in _by_item(votes).values():
        for (_, x), (_, y) in combinations(sorted(vs.items()), 2):
            pairs.append((x, y))
    labels = sorted({v for p in pairs for v in p}, key=str)
    col = {v: k for k, v in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for x, y in pairs:
        m[col[x], col[y]] += 1
        m[col[y], col[x]] += 1
    return labels, m


def labels_per_hour(events: Iterable[tuple[str, object, int]], *, idle_s: float = 300.0) -> dict[str, dict]:
    """Per annotator: labels, active hours and labels per hour.

    ``events`` are ``(annotator, created_at (datetime), n_labels)`` per action, e.g. one per batch. Active
    time is the sum of the gaps between an annotator's consecutive actions, each gap capped at ``idle_s``
    (a longer gap is a break: it counts as ``idle_s``), plus ``idle_s`` once for the first action.
    """
    per: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for who, when, n in events:
        per[who].append((when.timestamp() if hasattr(when, "timestamp") else float(when), int(n)))
    out = {}
    for who, rows in sorted(per.items()):
        rows.sort()
        times = np.array([t for t, _ in rows])
        active = idle_s + float(np.minimum(np.diff(times), idle_s).sum()) if len(times) else 0.0
        total = sum(n for _, n in rows)
        out[who] = {"labels": total, "active_hours": active / 3600.0,
                    "labels_per_hour": total / (active / 3600.0) if active > 0 else None}
    return out
