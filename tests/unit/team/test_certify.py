"""Certifying a batch by a random sample: the exact bound, the audit size, the batch cut, the draw."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import hypergeom

from labeling.team import certify


@pytest.mark.parametrize("target, large", [(0.97, 99), (0.95, 59), (0.9, 29)])
def test_audit_size_of_a_large_batch_is_the_binomial_figure(target, large):
    # (1 - target) ** n <= 0.05 first at n = 99 / 59 / 29
    assert certify.audit_size(100_000, target) == large


def test_audit_size_is_the_fewest_flawless_checks_that_certify():
    for batch in (40, 120, 500, 3000):
        n = certify.audit_size(batch, 0.97)
        assert certify.remainder_bound(batch, n, 0) >= 0.97
        assert certify.remainder_bound(batch, n - 1, 0) < 0.97


def test_small_batch_has_no_useful_audit():
    assert certify.audit_size(1, 0.97) is None
    assert certify.audit_size(10, 0.97) is None  # even 9 flawless checks cannot vouch for the 10th at 95 %


def test_errors_upper_is_exact_hypergeometric():
    batch, checked, wrong = 400, 80, 1
    d = certify.errors_upper(batch, checked, wrong)
    assert hypergeom.cdf(wrong, batch, d, checked) > 0.05
    assert hypergeom.cdf(wrong, batch, d + 1, checked) <= 0.05


def test_bound_holds_in_truth_at_least_95_percent_of_the_time():
    """Batches of 1,000 whose rest is just below 97 %: a flawless sample must certify them rarely."""
    rng = np.random.default_rng(0)
    batch = 1000
    n = certify.audit_size(batch, 0.97)
    wrong_items = 31  # the rest (about 900 items) then holds about 28 errors: below 97 %
    trials, certified_badly = 4000, 0
    for _ in range(trials):
        bad = np.zeros(batch, dtype=bool)
        bad[rng.choice(batch, wrong_items, replace=False)] = True
        sample = rng.choice(batch, n, replace=False)
        rest_precision = 1 - (bad.sum() - bad[sample].sum()) / (batch - n)
        if not bad[sample].any() and rest_precision < 0.97:
            certified_badly += 1
    assert certified_badly / trials <= 0.05


def test_remainder_bound_falls_with_a_wrong_check_and_is_none_without_a_rest():
    assert certify.remainder_bound(500, 110, 1) < certify.remainder_bound(500, 110, 0)
    assert certify.remainder_bound(50, 50, 0) is None
    with pytest.raises(ValueError):
        certify.remainder_bound(50, 60, 0)


def test_choose_level_stops_where_the_dirty_proposals_start():
    conf = np.linspace(1.0, 0.5, 2000)
    cal = np.where(conf > 0.8, 0.999, 0.7)  # clean above 0.8, dirty below
    clean = int((conf > 0.8).sum())
    size = certify.choose_level(conf, cal, 0.97)
    assert clean - 20 <= size <= clean + 20
    assert 2 * certify.audit_size(size, 0.97) <= size


def test_choose_level_weighs_a_larger_batch_against_its_lower_chance_to_pass():
    conf = np.linspace(1.0, 0.5, 3000)
    cal = np.where(conf > 0.9, 1.0, 0.99)  # 600 flawless, then 1 % wrong
    size = certify.choose_level(conf, cal, 0.97)
    n = certify.audit_size(size, 0.97)
    whole = certify.audit_size(3000, 0.97)
    gain = (1 - np.mean(1 - cal[:size])) ** n * (size - n)
    assert gain >= (1 - np.mean(1 - cal)) ** whole * (3000 - whole)  # at least the whole pool's
    assert gain >= 600 - certify.audit_size(600, 0.97) - 1  # and the flawless part's
    assert certify.pass_chance(np.mean(1 - cal[:size]), n) == pytest.approx((1 - np.mean(1 - cal[:size])) ** n)


def test_batch_errors_do_not_trust_a_flawless_calibration_resting_on_few_held_out_items():
    conf = np.linspace(0.99, 0.6, 1000)
    cal = np.ones(1000)  # isotonic says 100 % where its top held-out items were all right
    assert np.all(certify.batch_errors(conf, cal) == 0.0)
    few = certify.batch_errors(conf, cal, [0.95, 0.9, 0.85, 0.8, 0.7], [True] * 5)
    assert few[-1] == pytest.approx(0.5 / 6)  # 5 flawless held-out items: the Jeffreys estimate
    assert few[0] == pytest.approx(0.5)  # nothing held out at the top: no evidence at all
    many = certify.batch_errors(conf, cal, np.linspace(0.99, 0.6, 300), np.ones(300, bool))
    assert many[-1] == pytest.approx(0.5 / 301)
    assert certify.choose_level(conf, cal, 0.97, held_confidence=[0.95, 0.9, 0.85, 0.8, 0.7],
                                held_correct=[True] * 5) == 0  # 20 labels' worth of evidence: no offer
    assert certify.choose_level(conf, cal, 0.97, held_confidence=np.linspace(0.99, 0.6, 300),
                                held_correct=np.ones(300, bool)) > 0


def test_choose_level_is_zero_when_no_batch_is_clean_enough_or_large_enough():
    conf = np.linspace(1.0, 0.5, 1000)
    assert certify.choose_level(conf, np.full(1000, 0.98), 0.97) == 0  # 2 % wrong: 104 checks pass 12 %
    assert certify.choose_level(conf, np.full(1000, 0.995), 0.97) > 0
    assert certify.choose_level(conf[:50], np.full(50, 1.0), 0.97) == 0  # too few to save any checks
    with pytest.raises(ValueError):
        certify.choose_level(conf[::-1], np.full(1000, 1.0), 0.97)


def test_choose_level_never_splits_equal_confidences():
    conf = np.repeat([0.99, 0.9], 500)
    cal = np.repeat([1.0, 0.999], 500)
    assert certify.choose_level(conf, cal, 0.97) in (500, 1000)


def test_draw_sample_is_uniform_without_replacement_and_reproducible():
    ids = list(range(100, 400))
    a = certify.draw_sample(ids, 40, seed=3)
    assert a == certify.draw_sample(ids, 40, seed=3)
    assert len(set(a)) == 40 and set(a) <= set(ids)
    counts = np.zeros(len(ids))
    for s in range(300):
        counts[np.array(certify.draw_sample(ids, 30, seed=s)) - 100] += 1
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()  # every item can be drawn, none favoured
    with pytest.raises(ValueError):
        certify.draw_sample(ids, 301, seed=0)
