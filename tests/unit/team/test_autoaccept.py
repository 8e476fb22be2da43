"""Auto-accept thresholds, preview and audit sample on constructed arrays with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from labeling.team.autoaccept import (
    Candidate,
    class_thresholds,
    estimated_precision,
    per_class_thresholds,
    preview,
    wilson_lower_bound,
)
from labeling.model.rounds import RoundPredictions
from labeling.team.sampling import audit_sample

# Class 0: ten held-out items by falling confidence; the 7th, 9th and 10th are wrong, so the
# precision of the top k is 1, 1, 1, 1, 1, 1, 6/7, 7/8, 7/9, 7/10.
CONF_0 = [0.95, 0.90, 0.85, 0.80, 0.75, 0.70, 0.65, 0.60, 0.55, 0.50]
RIGHT_0 = [1, 1, 1, 1, 1, 1, 0, 1, 0, 0]
# Class 1: three items, all right: too few for min_support=5.
CONF_1 = [0.99, 0.98, 0.97]
RIGHT_1 = [1, 1, 1]


def _arrays(shuffle_seed: int = 0):
    conf = np.array(CONF_0 + CONF_1)
    pred = np.array([0] * 10 + [1] * 3)
    right = np.array(RIGHT_0 + RIGHT_1, dtype=bool)
    order = np.random.default_rng(shuffle_seed).permutation(len(conf))  # input order must not matter
    return conf[order], pred[order], right[order]


@pytest.mark.parametrize(("target", "expected"), [
    (0.85, 0.60),  # top 8 (7/8 = 0.875) is the largest set at or above 0.85
    (0.86, 0.60),
    (0.88, 0.70),  # 7/8 fails: top 6, all right
    (1.00, 0.70),
    (0.70, 0.50),  # everything: 7/10
])
def test_threshold_is_lowest_confidence_meeting_target(target, expected):
    conf, pred, right = _arrays()
    got = per_class_thresholds(conf, pred, right, target_precision=target, min_support=5, classes=[0, 1, 2])
    assert got[0] == pytest.approx(expected)
    assert got[1] is None  # 3 items < min_support
    assert got[2] is None  # never predicted


def test_measured_precision_and_support_of_the_threshold():
    conf, pred, right = _arrays(shuffle_seed=3)
    got = class_thresholds(conf, pred, right, target_precision=0.85, min_support=5)
    assert got[0].threshold == pytest.approx(0.60)
    assert got[0].precision == pytest.approx(7 / 8) and got[0].support == 8
    assert got[1].threshold is None and got[1].support == 0


def test_min_support_guard_lets_small_class_in_when_lowered():
    conf, pred, right = _arrays()
    assert per_class_thresholds(conf, pred, right, min_support=3)[1] == pytest.approx(0.97)
    # With at least 9 items above the threshold, class 0 can only reach 7/9 (top 9) or 7/10 (all).
    assert per_class_thresholds(conf, pred, right, target_precision=0.85, min_support=9)[0] is None
    assert per_class_thresholds(conf, pred, right, target_precision=0.7, min_support=9)[0] == pytest.approx(0.5)


def test_ties_are_never_split():
    conf = np.array([0.9, 0.8, 0.8, 0.8, 0.8, 0.8])
    right = np.array([1, 1, 1, 1, 1, 0], dtype=bool)
    pred = np.zeros(6, dtype=int)
    # The top 2..5 would be all right, but they are not a threshold: 0.8 takes all five tied items (5/6).
    assert per_class_thresholds(conf, pred, right, target_precision=0.9, min_support=1)[0] == pytest.approx(0.9)


def test_wilson_lower_bound_is_conservative():
    # All n right: the bound is n / (n + z^2).
    assert wilson_lower_bound(10, 10, z=1.645) == pytest.approx(10 / (10 + 1.645**2))
    assert wilson_lower_bound(7, 10, z=0.0) == pytest.approx(0.7)
    conf = np.linspace(0.99, 0.90, 10)
    pred, right = np.zeros(10, dtype=int), np.ones(10, dtype=bool)
    assert per_class_thresholds(conf, pred, right, target_precision=0.95)[0] == pytest.approx(0.90)
    assert per_class_thresholds(conf, pred, right, target_precision=0.95, z=1.645)[0] is None
    assert per_class_thresholds(conf, pred, right, target_precision=0.78, z=1.645)[0] == pytest.approx(0.90)


@pytest.mark.parametrize("kwargs", [{"target_precision": 0.0}, {"target_precision": 1.2}, {"min_support": 0}])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        per_class_thresholds([0.9], [0], [True], **kwargs)


def test_mismatched_arrays_raise():
    with pytest.raises(ValueError, match="1-D of one length"):
        per_class_thresholds([0.9, 0.8], [0], [True, False])


def _round() -> RoundPredictions:
    item_ids = np.array([10, 11, 12, 13, 14, 15, 16])
    pseudo = np.array([0, 0, 1, 1, 2, 0, -1])
    conf = np.array([0.90, 0.50, 0.99, 0.70, 0.95, 0.90, 0.0], dtype=np.float32)
    n = len(item_ids)
    return RoundPredictions(3, item_ids, np.array([0, 1, 2]), ["a", "b", "c"], pseudo, conf,
                            np.zeros((n, 3), dtype=np.int64), np.zeros((n, 3), dtype=np.float32),
                            np.zeros((0, n), dtype=np.int64), [], {}, np.arange(n), "disagreement")


def test_preview_applies_class_thresholds_and_excludes_labeled_items():
    got = preview(_round(), {0: 0.9, 1: 0.6, 2: None}, exclude_item_ids=[13])
    # 11 is below class 0's threshold, 13 is labeled, class 2 has no threshold, 16 has no pseudo-label.
    assert got == [Candidate(12, 1, pytest.approx(0.99)), Candidate(10, 0, pytest.approx(0.9)),
                   Candidate(15, 0, pytest.approx(0.9))]
    assert preview(_round(), {}, exclude_item_ids=[]) == []


def test_estimated_precision_weights_classes_by_count():
    cands = [Candidate(1, 0, 0.9), Candidate(2, 0, 0.9), Candidate(3, 0, 0.9), Candidate(4, 1, 0.9)]
    assert estimated_precision(cands, {0: 1.0, 1: 0.6}) == pytest.approx(0.9)
    assert estimated_precision([], {0: 1.0}) is None


def test_audit_sample_is_a_seeded_subset_in_candidate_order():
    cands = [Candidate(i, i % 3, 1.0 - i / 100) for i in range(40)]
    first = audit_sample(cands, n=12, rng=np.random.default_rng(7))
    again = audit_sample(cands, n=12, rng=np.random.default_rng(7))
    assert first == again and len(set(first)) == 12 and set(first) <= set(cands)
    assert [c.item_id for c in first] == sorted(c.item_id for c in first)
    assert audit_sample(cands[:5], n=12, rng=np.random.default_rng(0)) == cands[:5]
    with pytest.raises(ValueError):
        audit_sample(cands, n=-1, rng=np.random.default_rng(0))
    assert len(audit_sample(cands, n=0, rng=np.random.default_rng(0))) == 0


def test_the_audit_sample_shows_every_class_and_each_ones_least_confident_items():
    """300 "zebra" items at 97-99 % and one elephant among them at the threshold's edge, plus two small
    classes: the sample of 12 holds the elephant (whatever the seed), and every class."""
    rng = np.random.default_rng(0)
    zebra = [Candidate(i, 9, float(c)) for i, c in enumerate(rng.uniform(0.975, 0.99, 300))]
    zebra[137] = Candidate(137, 9, 0.970)  # the wrong one sits lowest, just above the threshold
    small = [Candidate(1000 + i, i % 2, 0.99) for i in range(6)]
    cands = zebra + small
    for seed in range(20):
        sample = audit_sample(cands, n=12, rng=np.random.default_rng(seed))
        assert len(sample) == 12 and 137 in [c.item_id for c in sample]
        assert {c.class_id for c in sample} == {0, 1, 9}
    uniform_hits = sum(137 in np.random.default_rng(s).choice(len(cands), 12, replace=False) for s in range(20))
    assert uniform_hits < 5  # what a uniform sample would have shown
