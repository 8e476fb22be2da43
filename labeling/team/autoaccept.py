"""Auto-accept: per-class confidence thresholds that keep the precision of accepted pseudo-labels
above a target, measured on cross-validated human labels (DESIGN.md, "Pseudo-labels and auto-accept").

The rule the product uses is :func:`select_thresholds`: a one-sided Clopper-Pearson lower confidence
bound (95 % by default) on the held-out precision of everything the thresholds accept must reach the
target, so the promise holds for the sample size the round has, not only for its point estimate.
Confidences are calibrated first (:func:`fit_isotonic`, on the same held-out predictions) so that
the confidence shown beside a proposal means what it says.

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

from labeling.model.round_files import RoundPredictions


class Candidate(NamedTuple):
    """One unlabeled item that would be auto-accepted."""

    item_id: int
    class_id: int
    confidence: float
    calibrated: float | None = None
    """The confidence calibrated on held-out human labels (None when no calibration was fitted)."""


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


def _arrays(confidence, predicted, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out arrays as float, int and bool, checked to be 1-D of one length."""
    conf = np.asarray(confidence, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.int64)
    corr = np.asarray(correct, dtype=bool)
    if not conf.shape == pred.shape == corr.shape or conf.ndim != 1:
        raise ValueError(f"confidence, predicted and correct must be 1-D of one length; got "
                         f"{conf.shape}, {pred.shape}, {corr.shape}")
    return conf, pred, corr


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
    conf, pred, corr = _arrays(confidence, predicted, correct)
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
    calibrator: "Calibrator | None" = None,
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
    calibrator : Calibrator, optional
        Fills each candidate's ``calibrated`` confidence.

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
    calibrated = [None] * len(rows) if calibrator is None else calibrator(pred.confidence[rows]).tolist()
    return [Candidate(int(pred.item_ids[r]), int(pred.pseudo[r]), float(pred.confidence[r]), cal)
            for r, cal in zip(rows.tolist(), calibrated)]


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


# ---- honest bounds, calibration and the thresholds the product uses ----------------------------
DEFAULT_CONFIDENCE = 0.95
"""Confidence level of the one-sided lower bound on precision."""
MIN_CLASS_HELD_OUT = 5
"""A class needs at least this many held-out items predicted as it to get a threshold at all."""


def clopper_pearson(successes: npt.ArrayLike, n: npt.ArrayLike, *,
                    confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) one-sided bounds of a binomial proportion at ``confidence`` each.

    The lower end is the one-sided ``confidence`` lower confidence bound; together the two ends form
    the two-sided ``2 * confidence - 1`` interval (90 % for 0.95).

    Parameters
    ----------
    successes, n : array_like of int
        Correct items and all items; ``0 <= successes <= n`` and ``n >= 1``.
    confidence : float in (0.5, 1)

    Returns
    -------
    (lower, upper) : np.ndarray of float in [0, 1]
    """
    from scipy.stats import beta

    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0.5, 1); got {confidence}")
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise ValueError("clopper_pearson needs 0 <= successes <= n and n >= 1")
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(k > 0, beta.ppf(alpha, np.maximum(k, 1e-12), n - k + 1), 0.0)
        upper = np.where(k < n, beta.ppf(confidence, k + 1, np.maximum(n - k, 1e-12)), 1.0)
    return np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)


class Calibrator(NamedTuple):
    """A monotone map from raw confidence to the probability of being right (isotonic regression)."""

    knots: np.ndarray
    """Raw confidences (increasing) where the fitted values are known."""
    values: np.ndarray
    """Fitted probability of being right at each knot (non-decreasing)."""
    n: int
    """Held-out items the calibration rests on."""

    def __call__(self, confidence: npt.ArrayLike) -> np.ndarray:
        """Calibrated confidence: linear between knots, flat outside them."""
        return np.interp(np.asarray(confidence, dtype=np.float64), self.knots, self.values)


def fit_isotonic(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> Calibrator:
    """Isotonic calibration of held-out confidences (pool-adjacent-violators).

    Parameters
    ----------
    confidence : (n,) float
        Held-out confidence of each prediction.
    correct : (n,) bool
        Whether the prediction was right.

    Raises
    ------
    ValueError
        If the arrays are empty or differ in shape.
    """
    x = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or not len(x):
        raise ValueError(f"confidence and correct must be non-empty 1-D of one length; got {x.shape}, {y.shape}")
    knots, inverse = np.unique(x, return_inverse=True)
    weight = np.bincount(inverse).astype(np.float64)
    mean = np.bincount(inverse, weights=y) / weight
    # Pool adjacent violators over the distinct confidences, as a stack of blocks.
    blocks: list[list[float]] = []  # [value, weight, count of knots]
    for v, w in zip(mean.tolist(), weight.tolist()):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + v2 * w2) / (blocks[-1][1] + w2),
                          blocks[-1][1] + w2, blocks[-1][2] + c2]
    values = np.repeat([b[0] for b in blocks], [b[2] for b in blocks])
    return Calibrator(knots, values, int(len(x)))


class ClassRule(NamedTuple):
    """One class's part of an auto-accept rule, with the held-out evidence behind it."""

    threshold: float | None
    """Lowest raw confidence accepted for the class (None: the class accepts nothing)."""
    held_out: int
    """Held-out items predicted as the class (all confidences)."""
    support: int
    """Held-out items predicted as the class at or above the threshold."""
    correct: int
    """Of those, how many were right."""
    lower: float | None
    upper: float | None
    """Clopper-Pearson interval of the class's own precision above the threshold (None without)."""
    reason: str
    """Why the class has no threshold ('' when it has one)."""

    @property
    def precision(self) -> float | None:
        return self.correct / self.support if self.support else None


class Rule(NamedTuple):
    """Per-class thresholds and the bound on the precision of everything they accept."""

    target: float
    confidence: float
    classes: dict[int, ClassRule]
    support: int
    """Held-out items the thresholds accept, all classes together: the count the bound rests on."""
    correct: int
    lower: float | None
    """One-sided lower confidence bound on the precision of what is accepted (None: nothing accepted)."""
    upper: float | None
    held_out: int
    """All held-out items the rule was chosen on."""
    calibrator: Calibrator | None

    @property
    def precision(self) -> float | None:
        return self.correct / self.support if self.support else None

    def thresholds(self) -> dict[int, float | None]:
        return {c: r.threshold for c, r in self.classes.items()}


def _scan(conf: np.ndarray, pred: np.ndarray, corr: np.ndarray, live: list[int], target: float,
          confidence: float) -> tuple[float | None, set[int]]:
    """The common level chosen by fixed-sequence testing of the pooled lower bound (see below), and the
    classes dropped at that level (their own items there put even their upper bound below the target)."""
    keep = np.isin(pred, live)
    if not keep.any():
        return None, set()
    order = np.argsort(-conf[keep], kind="stable")
    conf, pred, corr = conf[keep][order], pred[keep][order], corr[keep][order]
    classes = np.array(sorted(live))
    onehot = (pred[:, None] == classes[None, :])
    cut = np.flatnonzero(np.append(conf[1:] < conf[:-1], True))  # only between distinct confidences
    n_c = np.cumsum(onehot, axis=0)[cut]  # (cuts, C) items of each class at or above each cut
    k_c = np.cumsum(onehot & corr[:, None], axis=0)[cut]
    bad = (n_c > 0) & (k_c < target * n_c)
    if bad.any():  # exact upper bounds only where the point estimate is already below the target
        upper = clopper_pearson(k_c[bad], n_c[bad], confidence=confidence)[1]
        bad[bad] = upper < target
    n = np.where(bad, 0, n_c).sum(axis=1)
    k = np.where(bad, 0, k_c).sum(axis=1)
    lower = clopper_pearson(k, np.maximum(n, 1), confidence=confidence)[0]
    ok = (n > 0) & (lower >= target)
    # Fixed-sequence testing (as in "Learn then Test"): from the first level with enough items that a
    # flawless record could reach the target, lower the level only while every step keeps the bound;
    # stop at the first that does not. Picking the lowest passing level anywhere would shop among many
    # tests and promise more than the unlabeled items keep.
    possible = clopper_pearson(n, np.maximum(n, 1), confidence=confidence)[0] >= target
    if not possible.any():
        return None, set()
    start = int(np.argmax(possible))
    fails = np.flatnonzero(~ok[start:])
    at = start + (int(fails[0]) if len(fails) else len(ok) - start) - 1
    if at < start:
        return None, set()
    return float(conf[cut[at]]), {int(c) for c in classes[bad[at]]}


def _checked(confidence, predicted, correct, target: float, confidence_level: float, min_held_out: int):
    conf, pred, corr = _arrays(confidence, predicted, correct)
    if not 0.0 < target < 1.0:
        raise ValueError(f"target precision must be in (0, 1); got {target}")
    if not 0.5 < confidence_level < 1.0:
        raise ValueError(f"confidence must be in (0.5, 1); got {confidence_level}")
    if min_held_out < 1:
        raise ValueError(f"min_held_out must be at least 1; got {min_held_out}")
    return conf, pred, corr


def select_thresholds(
    confidence: npt.ArrayLike,
    predicted: npt.ArrayLike,
    correct: npt.ArrayLike,
    *,
    target: float = 0.95,
    confidence_level: float = DEFAULT_CONFIDENCE,
    min_held_out: int = MIN_CLASS_HELD_OUT,
    classes: Iterable[int] | None = None,
) -> Rule:
    """Per-class thresholds whose accepted held-out items have a lower precision bound at the target.

    1. A class with fewer than ``min_held_out`` held-out items predicted as it gets no threshold.
    2. One common level is lowered over the held-out items of the other classes. At each level, a
       class whose own items at or above it show, at the same confidence, that it misses the
       target (its upper bound is below it) is left out; the level qualifies when the one-sided
       Clopper-Pearson lower bound at ``confidence_level`` on the precision of the remaining items
       at or above it reaches ``target``. Levels are tested in sequence from the top (from the first
       with enough items for a flawless record to qualify) and the scan stops at the first level
       that fails, so the one-sided guarantee holds for the level chosen, not only for each level
       tested; the last passing level becomes the threshold of every class not left out there.

    The bound is on everything accepted together: the figure a person relies on when a batch is
    accepted unseen. Thresholds fitted class by class to each class's few held-out items would pick
    the cut just above each class's last mistake, and the bound computed on those same items would
    promise what the unlabeled items do not keep (measured: 97 % promised, 92 % true); an exact
    bound per class would need about 100 flawless held-out items of each class for 97 %.

    Parameters
    ----------
    confidence : (n,) float
        Cross-validated confidence of each held-out item (raw; calibration is monotone, so it
        changes no threshold).
    predicted : (n,) int
        Class id predicted for each held-out item.
    correct : (n,) bool
        Whether the prediction equals the item's human label.
    target : float in (0, 1)
    confidence_level : float in (0.5, 1)
    min_held_out : int >= 1
    classes : iterable of int, optional
        Classes to report besides those predicted.

    Returns
    -------
    Rule

    Raises
    ------
    ValueError
        If the arrays differ in shape or an option is out of range.
    """
    conf, pred, corr = _checked(confidence, predicted, correct, target, confidence_level, min_held_out)
    wanted = sorted({int(c) for c in (classes or ())} | {int(c) for c in np.unique(pred)})
    counts = {c: int((pred == c).sum()) for c in wanted}
    reasons = {c: f"{counts[c]} held-out items, needs {min_held_out}" for c in wanted if counts[c] < min_held_out}
    level, dropped = _scan(conf, pred, corr, [c for c in wanted if c not in reasons], target, confidence_level)
    reasons.update({c: "its held-out labels show it misses the target" for c in dropped})
    if level is None:
        reasons = {c: reasons.get(c, "too few held-out labels to bound the precision at the target") for c in wanted}
    rows = {c: _class_rule(conf, pred, corr, c, None if c in reasons else level, confidence_level, reasons.get(c, ""))
            for c in wanted}
    n, k, lo, hi = _pooled_bound(conf, pred, corr, rows, confidence_level)
    calibrator = fit_isotonic(conf, corr) if len(conf) else None
    return Rule(float(target), float(confidence_level), rows, n, k, lo, hi, int(len(conf)), calibrator)


def _pooled_bound(conf, pred, corr, rows: dict[int, ClassRule], confidence_level: float):
    """Held-out items the rows accept, how many are right, and their Clopper-Pearson interval."""
    accepted = np.zeros(len(conf), dtype=bool)
    for c, r in rows.items():
        if r.threshold is not None:
            accepted |= (pred == c) & (conf >= r.threshold)
    n, k = int(accepted.sum()), int(corr[accepted].sum())
    if not n:
        return 0, 0, None, None
    lo, hi = clopper_pearson(k, n, confidence=confidence_level)
    return n, k, float(lo), float(hi)


def _class_rule(conf, pred, corr, c: int, threshold: float | None, confidence_level: float, reason: str) -> ClassRule:
    sel = pred == c
    if threshold is None:
        return ClassRule(None, int(sel.sum()), 0, 0, None, None, reason)
    above = sel & (conf >= threshold)
    n, k = int(above.sum()), int(corr[above].sum())
    if not n:
        return ClassRule(threshold, int(sel.sum()), 0, 0, None, None, "")
    lo, hi = clopper_pearson(k, n, confidence=confidence_level)
    return ClassRule(threshold, int(sel.sum()), n, k, float(lo), float(hi), "")
