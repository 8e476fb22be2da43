"""Auto-accept: per-class confidence thresholds that keep the precision of accepted pseudo-labels
above a target, measured on cross-validated human labels (DESIGN.md, "Pseudo-labels and auto-accept").

Everything here is pure numpy. The measurements come from a round's held-out predictions on human
labels (``RoundPredictions.cv``): an item predicted as class ``c`` with confidence ``q`` counts as
correct when its human label is ``c``. A threshold chosen on these held-out items estimates the
precision of the pseudo-labels that the round would accept among the unlabeled items.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from labeling.model.rounds import RoundPredictions


class Candidate(NamedTuple):
    """One unlabeled item that would be auto-accepted."""

    item_id: int
    class_id: int
    confidence: float


class ClassThreshold(NamedTuple):
    """The measured precision of one class's threshold on cross-validated human labels."""

    threshold: float | None
    precision: float | None
    """Empirical precision of the held-out items at or above the threshold (None without threshold)."""
    support: int
    """Held-out items predicted as the class at or above the threshold (0 without threshold)."""


def wilson_lower_bound(successes: npt.ArrayLike, n: npt.ArrayLike, *, z: float) -> np.ndarray:
    """Lower end of the Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes, n : array_like of int
        Correct items and all items; ``n`` must be positive.
    z : float
        Normal quantile (1.645: one-sided 95 %). ``z = 0`` gives the empirical proportion.

    Returns
    -------
    np.ndarray of float in [0, 1]
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    p = k / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return np.clip((centre - spread) / (1 + z2 / n), 0.0, 1.0)


def _class_threshold(conf: np.ndarray, correct: np.ndarray, *, target: float, min_support: int,
                     z: float) -> ClassThreshold:
    """The lowest qualifying threshold of one class (its held-out items only)."""
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    # Cut k keeps the k most confident items; only cuts between distinct confidences are thresholds.
    n_above = np.arange(1, len(conf) + 1)
    hits = np.cumsum(correct)
    is_cut = np.append(conf[1:] < conf[:-1], True)
    ok = is_cut & (n_above >= min_support) & (wilson_lower_bound(hits, n_above, z=z) >= target)
    if not ok.any():
        return ClassThreshold(None, None, 0)
    k = int(np.flatnonzero(ok)[-1])  # the largest set that qualifies = the lowest threshold
    return ClassThreshold(float(conf[k]), float(hits[k] / n_above[k]), int(n_above[k]))


def class_thresholds(
    confidence: npt.ArrayLike,
    predicted: npt.ArrayLike,
    correct: npt.ArrayLike,
    *,
    target_precision: float = 0.95,
    min_support: int = 5,
    z: float = 0.0,
    classes: Iterable[int] | None = None,
) -> dict[int, ClassThreshold]:
    """Per-class thresholds with their measured precision and support; see ``per_class_thresholds``."""
    conf = np.asarray(confidence, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.int64)
    corr = np.asarray(correct, dtype=bool)
    if not conf.shape == pred.shape == corr.shape or conf.ndim != 1:
        raise ValueError(f"confidence, predicted and correct must be 1-D of one length; got "
                         f"{conf.shape}, {pred.shape}, {corr.shape}")
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1]; got {target_precision}")
    if min_support < 1:
        raise ValueError(f"min_support must be at least 1; got {min_support}")
    wanted = sorted({int(c) for c in (np.unique(pred) if classes is None else classes)})
    out = {}
    for c in wanted:
        sel = pred == c
        out[c] = _class_threshold(conf[sel], corr[sel], target=target_precision, min_support=min_support, z=z)
    return out


def per_class_thresholds(
    confidence: npt.ArrayLike,
    predicted: npt.ArrayLike,
    correct: npt.ArrayLike,
    *,
    target_precision: float = 0.95,
    min_support: int = 5,
    z: float = 0.0,
    classes: Iterable[int] | None = None,
) -> dict[int, float | None]:
    """For each class, the lowest confidence threshold whose accepted items meet a target precision.

    For class ``c``, the items considered are the held-out human-labeled items predicted as ``c``.
    A threshold ``t`` (one of their confidences) qualifies when the items with confidence ``>= t``
    number at least ``min_support`` and their precision estimate is ``>= target_precision``. The
    estimate is the Wilson lower bound at ``z``; the default ``z = 0`` is the empirical precision
    (correct / accepted). Use ``z = 1.645`` for a conservative one-sided 95 % bound. The lowest
    qualifying threshold is returned even if a higher one would not qualify (precision is not
    monotone in ``t``): what matters is the precision of everything accepted.

    Parameters
    ----------
    confidence : (n,) float in [0, 1]
        Cross-validated confidence (mean-probability maximum) of each held-out item.
    predicted : (n,) int
        Class id predicted for each held-out item.
    correct : (n,) bool
        Whether the prediction equals the item's human label.
    target_precision : float in (0, 1]
    min_support : int >= 1
        Fewest held-out items at or above a threshold for it to count (small-sample guard).
    z : float >= 0
        Quantile of the Wilson lower bound; 0 means empirical precision.
    classes : iterable of int, optional
        Classes to report (default: those predicted); a class never predicted gets None.

    Returns
    -------
    dict of class id -> threshold, or None where no threshold qualifies.

    Raises
    ------
    ValueError
        If the arrays differ in shape or the options are out of range.
    """
    got = class_thresholds(confidence, predicted, correct, target_precision=target_precision,
                           min_support=min_support, z=z, classes=classes)
    return {c: t.threshold for c, t in got.items()}


def preview(
    pred: RoundPredictions,
    thresholds: Mapping[int, float | None],
    *,
    exclude_item_ids: Iterable[int],
) -> list[Candidate]:
    """The unlabeled items whose pseudo-label clears its class threshold, most confident first.

    Parameters
    ----------
    pred : RoundPredictions
        The round whose pseudo-labels would be accepted.
    thresholds : mapping class id -> threshold or None
        A class that is missing or None accepts nothing.
    exclude_item_ids : iterable of int
        Items never proposed (those with a human decision).

    Returns
    -------
    list of Candidate (item_id, class_id, confidence), by confidence descending, then item id.
    """
    excluded = np.array(sorted({int(i) for i in exclude_item_ids}), dtype=np.int64)
    # In the dtype of the confidences, so that a threshold typed as 0.9 compares equal to a stored 0.9.
    limit = np.full(len(pred.pseudo), np.inf, dtype=pred.confidence.dtype)  # no threshold: accept nothing
    for c, t in thresholds.items():
        if t is not None:
            limit[pred.pseudo == int(c)] = float(t)
    keep = (pred.pseudo >= 0) & (pred.confidence >= limit) & ~np.isin(pred.item_ids, excluded)
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((pred.item_ids[rows], -pred.confidence[rows]))]
    return [Candidate(int(pred.item_ids[r]), int(pred.pseudo[r]), float(pred.confidence[r])) for r in rows]


def estimated_precision(candidates: Sequence[Candidate], class_precision: Mapping[int, float | None]) -> float | None:
    """Expected precision of a set of candidates: each class's measured precision, weighted by its count.

    Returns None for no candidates; raises ``KeyError`` for a candidate class without a precision.
    """
    if not candidates:
        return None
    values = [class_precision[c.class_id] for c in candidates]
    if any(v is None for v in values):
        raise KeyError("a candidate's class has no measured precision")
    return float(np.mean(values))


def audit_sample(candidates: Sequence[Candidate], *, n: int, rng: np.random.Generator) -> list[Candidate]:
    """A uniform random sample of ``n`` candidates (all of them if fewer), in candidate order.

    Parameters
    ----------
    candidates : sequence of Candidate
    n : int >= 0
    rng : numpy.random.Generator
        Pass a seeded generator for a sample that stays the same across reruns.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative; got {n}")
    if n >= len(candidates):
        return list(candidates)
    picked = np.sort(rng.choice(len(candidates), size=n, replace=False))
    return [candidates[int(i)] for i in picked]
