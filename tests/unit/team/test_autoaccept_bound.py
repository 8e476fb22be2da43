"""The honest auto-accept rule: exact bounds, isotonic calibration, and thresholds whose promise holds."""
from __future__ import annotations

import numpy as np
import pytest

from labeling.model.rounds import RoundPredictions
from labeling.team.autoaccept import (
    Candidate,
    clopper_pearson,
    fit_isotonic,
    per_class_thresholds,
    preview,
    select_thresholds,
)


def test_clopper_pearson_has_closed_forms_at_the_ends():
    lower, upper = clopper_pearson([10, 0, 100], [10, 10, 100], confidence=0.95)
    # all right: lower = alpha ** (1 / n); none right: upper = 1 - alpha ** (1 / n)
    assert lower[0] == pytest.approx(0.05 ** (1 / 10)) and upper[0] == 1.0
    assert lower[1] == 0.0 and upper[1] == pytest.approx(1 - 0.05 ** (1 / 10))
    assert lower[2] == pytest.approx(0.05 ** (1 / 100))
    lo, hi = clopper_pearson(45, 50)
    assert lo < 0.9 < hi  # the interval holds the point estimate
    assert clopper_pearson(90, 100)[0] > clopper_pearson(9, 10)[0]  # more evidence, tighter bound


@pytest.mark.parametrize(("k", "n", "conf"), [(5, 4, 0.95), (-1, 4, 0.95), (1, 0, 0.95), (1, 2, 0.4), (1, 2, 1.0)])
def test_clopper_pearson_rejects_bad_input(k, n, conf):
    with pytest.raises(ValueError):
        clopper_pearson(k, n, confidence=conf)


def test_isotonic_pools_adjacent_violators():
    cal = fit_isotonic([0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1])
    assert cal(np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    assert cal.n == 4
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 500)
    right = rng.uniform(size=500) < conf ** 2
    out = fit_isotonic(conf, right)(np.sort(conf))
    assert np.all(np.diff(out) >= -1e-12)  # monotone
    assert out.mean() == pytest.approx(right.mean(), abs=1e-9)  # isotonic keeps the mean
    with pytest.raises(ValueError, match="non-empty"):
        fit_isotonic([], [])


def _flawless(n: int, cls: int = 0):
    return np.linspace(0.99, 0.9, n), np.full(n, cls), np.ones(n, dtype=bool)


def test_the_bound_needs_enough_flawless_held_out_items():
    # 100 right out of 100: the exact 95 % lower bound is 0.05 ** 0.01 = 0.9705 >= 0.97.
    conf, pred, right = _flawless(100)
    rule = select_thresholds(conf, pred, right, target=0.97)
    assert rule.classes[0].threshold == pytest.approx(0.9)
    assert rule.support == 100 and rule.lower == pytest.approx(0.05 ** 0.01)
    # 90 of them: the point estimate is still 100 %, but the bound (0.9672) misses 0.97.
    conf, pred, right = _flawless(90)
    rule = select_thresholds(conf, pred, right, target=0.97)
    assert rule.classes[0].threshold is None and rule.lower is None and rule.support == 0
    # The old empirical rule would have accepted all of them.
    assert per_class_thresholds(conf, pred, right, target_precision=0.97)[0] == pytest.approx(0.9)


def test_a_class_with_too_few_held_out_items_gets_no_threshold():
    conf, pred, right = _flawless(120)
    conf = np.append(conf, [0.995] * 4)
    pred = np.append(pred, [1] * 4)
    right = np.append(right, [True] * 4)
    rule = select_thresholds(conf, pred, right, target=0.95, min_held_out=5, classes=[0, 1, 2])
    assert rule.classes[1].threshold is None and "4 held-out items" in rule.classes[1].reason
    assert rule.classes[2].threshold is None and rule.classes[2].held_out == 0
    assert rule.classes[0].threshold is not None and rule.support == 120


def test_a_class_whose_held_out_labels_miss_the_target_is_dropped():
    rng = np.random.default_rng(1)
    conf_a = rng.uniform(0.6, 1.0, 200)  # class 0: always right
    conf_b = rng.uniform(0.6, 1.0, 100)  # class 1: wrong below 0.9
    conf = np.concatenate([conf_a, conf_b])
    pred = np.array([0] * 200 + [1] * 100)
    right = np.concatenate([np.ones(200, bool), conf_b >= 0.9])
    rule = select_thresholds(conf, pred, right, target=0.97)
    t = rule.thresholds()
    assert t[1] is None and "misses the target" in rule.classes[1].reason
    assert t[0] == pytest.approx(conf_a.min())
    assert rule.precision == 1.0 and rule.support == 200 and rule.lower >= 0.97
    assert rule.classes[0].held_out == 200 and rule.classes[1].held_out == 100


def test_one_level_for_every_class_with_the_pooled_bound():
    conf, pred, right = _flawless(60, cls=0)
    conf2, pred2, right2 = _flawless(60, cls=1)
    rule = select_thresholds(np.concatenate([conf, conf2]), np.concatenate([pred, pred2]),
                             np.concatenate([right, right2]), target=0.97)
    # 60 flawless items each: neither class alone reaches 0.97 at 95 %, together (120) they do.
    assert rule.thresholds() == {0: pytest.approx(0.9), 1: pytest.approx(0.9)}
    assert rule.support == 120 and rule.lower == pytest.approx(0.05 ** (1 / 120))
    assert rule.classes[0].lower == pytest.approx(0.05 ** (1 / 60))


def test_the_promise_holds_where_the_point_estimate_breaks_it():
    """Held-out and pool items from one calibrated source: how often is the pool's precision on target?"""
    rng = np.random.default_rng(7)
    target, runs = 0.9, 200
    met_bound = met_point = accepted = 0
    for _ in range(runs):
        def draw(n):
            conf = rng.uniform(0.6, 1.0, n)
            return conf, rng.integers(0, 3, n), rng.uniform(size=n) < conf
        conf, pred, right = draw(600)
        pool_conf, pool_pred, pool_right = draw(4000)
        rule = select_thresholds(conf, pred, right, target=target)
        point = per_class_thresholds(conf, pred, right, target_precision=target)
        for thresholds, counter in ((rule.thresholds(), "bound"), (point, "point")):
            limit = np.array([np.inf if thresholds.get(int(c)) is None else thresholds[int(c)] for c in pool_pred])
            take = pool_conf >= limit
            ok = not take.any() or pool_right[take].mean() >= target
            if counter == "bound":
                met_bound += ok
                accepted += take.any()
            else:
                met_point += ok
    assert met_bound / runs >= 0.95
    assert met_point / runs < 0.8  # the raw held-out precision over-promises
    assert accepted / runs > 0.5  # and the bound still accepts something most of the time


def test_bad_options_raise():
    with pytest.raises(ValueError, match="target precision"):
        select_thresholds([0.9], [0], [True], target=1.0)
    with pytest.raises(ValueError, match="confidence"):
        select_thresholds([0.9], [0], [True], confidence_level=0.3)
    with pytest.raises(ValueError, match="min_held_out"):
        select_thresholds([0.9], [0], [True], min_held_out=0)
    with pytest.raises(ValueError, match="1-D of one length"):
        select_thresholds([0.9, 0.8], [0], [True, False])


def test_preview_fills_the_calibrated_confidence():
    item_ids = np.array([10, 11, 12])
    conf = np.array([0.9, 0.8, 0.5], dtype=np.float32)
    pred = RoundPredictions(1, item_ids, np.array([0]), ["a"], np.zeros(3, dtype=np.int64), conf,
                            np.zeros((3, 3), dtype=np.int64), np.zeros((3, 3), dtype=np.float32),
                            np.zeros((0, 3), dtype=np.int64), [], {}, np.arange(3), "disagreement")
    cal = fit_isotonic([0.5, 0.8, 0.9], [0, 1, 1])
    got = preview(pred, {0: 0.8}, exclude_item_ids=[], calibrator=cal)
    assert [(c.item_id, c.calibrated) for c in got] == [(10, pytest.approx(1.0)), (11, pytest.approx(1.0))]
    assert got[0] == Candidate(10, 0, pytest.approx(0.9), pytest.approx(1.0))


def test_levels_are_tested_in_sequence_and_the_scan_stops_at_the_first_failure():
    conf = np.linspace(0.999, 0.5, 423)
    right = np.ones(423, dtype=bool)
    right[120:123] = False  # three mistakes after 120 flawless items, then 300 flawless ones
    pred = np.zeros(423, dtype=int)
    rule = select_thresholds(conf, pred, right, target=0.97)
    assert rule.classes[0].threshold == pytest.approx(conf[119])  # not the lowest level that passes again
    assert rule.support == 120 and rule.correct == 120
    lower_at_bottom = clopper_pearson(420, 423)[0]
    assert lower_at_bottom >= 0.97  # shopping for the lowest passing level would have taken all 423
