"""Certify a batch of proposals by checking a random sample of it (auto-accept's second route).

The held-out route (``labeling.team.autoaccept.select_thresholds``) bounds precision with the round's
cross-validated human labels. Those labels are the items people were asked about, and the default
policy asks about the hard ones, so while labels are few the bound rests on the wrong items and
accepts nothing (an exact 95 % bound at 97 % needs 99 flawless held-out items above the threshold).

This route measures the batch itself. The batch is fixed first (the most confident proposals,
:func:`choose_level`); then a sample of ``n`` of its items, drawn uniformly at random, goes to a
person. If every sampled item is right, the other items of the batch are, with 95 % confidence, at
least ``target`` right: the exact hypergeometric bound for drawing without replacement from a batch
of known size (:func:`remainder_bound`). ``n`` is fixed before the first check
(:func:`audit_size`, the fewest flawless checks that certify), so the one test keeps its 95 %. A
wrong item in the sample ends the certification unaccepted: stopping early to refuse never makes a
promise, so it costs the guarantee nothing.

Pure numpy and scipy; the project-level steps (start, record checks, accept) are in
``labeling.views.certification``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DEFAULT_CONFIDENCE = 0.95
MIN_CHANCE = 0.15
"""A batch whose flawless sample is less likely than this (from its calibrated confidences) is not
offered: its checks would most likely be spent for nothing."""
MAX_CUTS = 256
"""Batch sizes weighed by :func:`choose_level` (evenly spread over the distinct confidences)."""


def _log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def errors_upper(batch: int, checked: int, wrong: int, *, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """One-sided upper confidence bound on the number of wrong items in the whole batch.

    ``checked`` items were drawn uniformly without replacement from ``batch`` items and ``wrong`` of
    them were wrong: the largest error count ``D`` under which seeing at most ``wrong`` errors still
    has probability above ``1 - confidence`` (exact, hypergeometric).
    """
    from scipy.stats import hypergeom

    if not 0 <= wrong <= checked <= batch or batch < 1:
        raise ValueError(f"need 0 <= wrong <= checked <= batch and batch >= 1; got {wrong}, {checked}, {batch}")
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0.5, 1); got {confidence}")
    errors = np.arange(wrong, batch - (checked - wrong) + 1)
    plausible = hypergeom.cdf(wrong, batch, errors, checked) > 1.0 - confidence
    return int(errors[plausible].max())


def remainder_bound(batch: int, checked: int, wrong: int, *, confidence: float = DEFAULT_CONFIDENCE) -> float | None:
    """Lower confidence bound on the precision of the batch's unchecked items (None when none are left).

    The unchecked items hold ``D - wrong`` of the batch's ``D`` errors, so the bound on ``D``
    (:func:`errors_upper`) bounds them at the same confidence.
    """
    if not 0 <= wrong <= checked <= batch or batch < 1:
        raise ValueError(f"need 0 <= wrong <= checked <= batch and batch >= 1; got {wrong}, {checked}, {batch}")
    left = batch - checked
    if left == 0:
        return None
    return 1.0 - (errors_upper(batch, checked, wrong, confidence=confidence) - wrong) / left


def audit_size(batch: int, target: float, *, confidence: float = DEFAULT_CONFIDENCE) -> int | None:
    """The fewest uniformly drawn checks that, all right, certify the rest of the batch at ``target``.

    None when no sample short of the whole batch would do (a small batch: check it all instead).
    For a large batch this approaches the binomial figure (99 at 97 %, 59 at 95 %).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target precision must be in (0, 1); got {target}")
    if batch < 2:
        return None
    n = np.arange(1, batch)
    left = batch - n
    # the fewest errors among the unchecked items that break the target
    breaking = np.floor((1.0 - target) * left + 1e-9).astype(np.int64) + 1
    ok = breaking <= left
    # P(a flawless sample | the batch holds `breaking` errors) must be at most 1 - confidence
    p0 = np.full(len(n), 1.0)
    p0[ok] = np.exp(_log_choose(batch - breaking[ok], n[ok]) - _log_choose(np.full(ok.sum(), batch), n[ok]))
    p0[(batch - breaking) < n] = 0.0
    good = ok & (p0 <= 1.0 - confidence)
    if not good.any():
        return None
    return int(n[np.argmax(good)])


def batch_errors(confidence: npt.ArrayLike, calibrated: npt.ArrayLike, held_confidence: npt.ArrayLike = (),
                 held_correct: npt.ArrayLike = ()) -> np.ndarray:
    """The estimated share of wrong items in each batch of the ``k`` most confident proposals.

    The larger of two estimates: the mean calibrated error of the batch, and the Jeffreys estimate
    ``(errors + 0.5) / (m + 1)`` from the ``m`` held-out items at or above the batch's lowest
    confidence. Isotonic calibration says 100 % wherever its top held-out items were all right, so
    the second keeps a batch resting on 5 flawless held-out items from looking flawless.

    Parameters
    ----------
    confidence : (n,) float, sorted descending
        Raw confidence of each proposal.
    calibrated : (n,) float
        Each proposal's calibrated probability of being right.
    held_confidence, held_correct : (m,) float and bool
        The round's held-out predictions of human labels (empty: the first estimate alone).

    Returns
    -------
    (n,) float: entry ``k - 1`` is the estimate for the batch of the ``k`` most confident.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    cal = np.clip(np.asarray(calibrated, dtype=np.float64), 0.0, 1.0)
    if conf.shape != cal.shape or conf.ndim != 1:
        raise ValueError("confidence and calibrated must be 1-D of one length")
    if len(conf) and np.any(np.diff(conf) > 0):
        raise ValueError("proposals must be sorted by confidence, highest first")
    error = np.cumsum(1.0 - cal) / np.arange(1, len(cal) + 1)
    h_conf = np.asarray(held_confidence, dtype=np.float64)
    if len(h_conf):
        h_wrong = ~np.asarray(held_correct, dtype=bool)
        order = np.argsort(-h_conf, kind="stable")
        wrong_above = np.concatenate([[0], np.cumsum(h_wrong[order])])
        m = np.searchsorted(-h_conf[order], -conf, side="right")  # held-out items at or above each confidence
        error = np.maximum(error, (wrong_above[m] + 0.5) / (m + 1))
    return error


def choose_level(confidence: npt.ArrayLike, calibrated: npt.ArrayLike, target: float, *,
                 held_confidence: npt.ArrayLike = (), held_correct: npt.ArrayLike = (),
                 level: float = DEFAULT_CONFIDENCE, max_cuts: int = MAX_CUTS) -> int:
    """How many of the proposals (sorted by confidence, highest first) make the batch.

    Each cut between distinct confidences is a possible batch; its audit size ``n`` is fixed by its
    size (:func:`audit_size`), and :func:`batch_errors` estimates its share of wrong items ``e``.
    The batch chosen has the most items accepted in expectation, ``(1 - e) ** n * (size - n)``: a
    larger batch saves more checks when it passes but is less likely to pass a flawless sample. A
    batch must be at least twice its audit, and pass with a chance of at least ``MIN_CHANCE``.
    Returns 0 when no batch would be worth checking. At most ``max_cuts`` cuts, evenly spread, are
    weighed. The arguments are those of :func:`batch_errors`.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    error_rate = batch_errors(conf, calibrated, held_confidence, held_correct)
    sizes = np.flatnonzero(np.append(conf[1:] < conf[:-1], True)) + 1 if len(conf) else np.array([], int)
    if len(sizes) > max_cuts:
        sizes = sizes[np.unique(np.linspace(0, len(sizes) - 1, max_cuts).round().astype(int))]
    best, best_gain = 0, 0.0
    for size in sizes.tolist():
        n = audit_size(size, target, confidence=level)
        if n is None or 2 * n > size:
            continue
        chance = pass_chance(error_rate[size - 1], n)
        gain = chance * (size - n)
        if chance >= MIN_CHANCE and gain > best_gain:
            best, best_gain = size, gain
    return best


def pass_chance(error_rate: float, n: int) -> float:
    """The chance that ``n`` random checks of a batch with this share of wrong items are all right
    (drawing with replacement: slightly below the chance without)."""
    return float((1.0 - float(error_rate)) ** n)


def draw_sample(batch: Sequence[int], n: int, *, seed: int) -> list[int]:
    """``n`` of the batch's item ids, uniformly at random without replacement (the order drawn)."""
    if not 0 <= n <= len(batch):
        raise ValueError(f"cannot draw {n} of {len(batch)} items")
    rng = np.random.default_rng(seed)
    return [int(batch[k]) for k in rng.choice(len(batch), size=n, replace=False)]
