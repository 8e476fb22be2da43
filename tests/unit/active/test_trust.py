"""What ``simulate --auto-accept`` measures: auto-accept scored on test items, calibration, baselines."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import load_digits

from labeling.active import trust
from labeling.team import certify
from labeling.active.simulate import SimData, format_table, run
from labeling.model.ensemble import FeatureScaler
from labeling.search.neighbours import knn_graph
from labeling.team.autoaccept import select_thresholds


@pytest.fixture(scope="module")
def digits() -> SimData:
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    return SimData(FeatureScaler.fit(x).transform(x), y, [str(c) for c in range(10)], knn_graph(x, 15))


@pytest.mark.parametrize(("text", "targets"), [("0.97,0.95", [0.95, 0.97]), ("0.9", [0.9]), ("", []),
                                                (None, []), ([0.8, 0.8], [0.8])])
def test_targets_parse(text, targets):
    assert trust.parse_targets(text) == targets


@pytest.mark.parametrize(("text", "match"), [("0.9,x", "numbers"), ("1.0", r"\(0, 1\)"), ("0", r"\(0, 1\)")])
def test_bad_targets_raise(text, match):
    with pytest.raises(ValueError, match=match):
        trust.parse_targets(text)


def test_auto_accept_is_scored_on_the_test_items_with_the_rule_thresholds():
    conf = np.linspace(0.999, 0.9, 200)
    rule = select_thresholds(conf, np.zeros(200, int), np.ones(200, bool), target=0.97, classes=[0, 1])
    assert rule.thresholds()[1] is None
    pred = np.array([0, 0, 0, 1, 0])
    conf_test = np.array([0.99, 0.95, 0.5, 0.99, 0.91])
    y = np.array([0, 1, 0, 1, 0])
    precision, coverage = trust.auto_accept_on_test(rule, pred, conf_test, y)
    # accepted: items 0, 1 and 4 (class 0 above 0.9); item 3's class has no threshold
    assert coverage == pytest.approx(3 / 5) and precision == pytest.approx(2 / 3)
    nothing = select_thresholds(conf[:10], np.zeros(10, int), np.ones(10, bool), target=0.97)
    precision, coverage = trust.auto_accept_on_test(nothing, pred, conf_test, y)
    assert math.isnan(precision) and coverage == 0.0


def test_summary_counts_a_case_that_accepts_nothing_as_kept():
    base = {"ece": 0.1, "ece_calibrated": 0.05, "logreg": 0.8, "forest": 0.7}
    cases = [[{**base, "precision@0.9": 0.95, "coverage@0.9": 0.5, "bound@0.9": 0.91}],
             [{**base, "precision@0.9": 0.85, "coverage@0.9": 0.6, "bound@0.9": 0.90}],
             [{**base, "precision@0.9": float("nan"), "coverage@0.9": 0.0, "bound@0.9": float("nan")}]]
    got = trust.summarise(cases, [0.9])
    aa = got["auto_accept"]["0.9"]
    assert aa["met"] == [2] and aa["cases"] == [3]
    assert aa["precision_mean"] == [pytest.approx(0.9)] and aa["precision_min"] == [pytest.approx(0.85)]
    assert aa["coverage_mean"] == [pytest.approx(1.1 / 3)]
    assert got["logreg_accuracy_mean"] == [pytest.approx(0.8)] and got["ece_mean"] == [pytest.approx(0.1)]


def _flat(n):
    from labeling.team.autoaccept import Calibrator
    return Calibrator(np.array([0.0, 1.0]), np.array([1.0, 1.0]), n)  # every item looks right


def test_certified_rest_is_scored_only_when_the_whole_sample_is_right():
    rng = np.random.default_rng(0)
    n_items = 2000
    conf = rng.uniform(0.5, 1.0, n_items)
    y = rng.integers(0, 3, n_items)
    got = trust.certified_on_test(0.97, y.copy(), conf, y, _flat(100), seed=1)
    assert got["certified"] == 1.0 and got["precision"] == 1.0
    assert got["checks"] == certify.audit_size(n_items, 0.97)
    assert got["coverage"] == pytest.approx((n_items - got["checks"]) / n_items)
    wrong = y.copy()
    wrong[::10] = (wrong[::10] + 1) % 3  # 10 % wrong: some sampled item is wrong for any seed
    got = trust.certified_on_test(0.97, wrong, conf, y, _flat(100), seed=1)
    assert got["certified"] == 0.0 and got["coverage"] == 0.0 and math.isnan(got["precision"])
    assert got["checks"] > 0  # the checks were spent all the same
    few = trust.certified_on_test(0.97, y[:40], conf[:40], y[:40], _flat(100), seed=1)
    assert math.isnan(few["certified"]) and few["checks"] == 0.0  # 40 items: no sample saves checks


def test_summary_of_certification_counts_offers_passes_and_checks():
    base = {"ece": 0.1, "ece_calibrated": 0.05, "logreg": 0.8, "forest": 0.7, "precision@0.9": float("nan"),
            "coverage@0.9": 0.0, "bound@0.9": float("nan")}
    cert = [(0.99, 0.4, 29.0, 1.0), (float("nan"), 0.0, 29.0, 0.0), (float("nan"), 0.0, 0.0, float("nan"))]
    cases = [[{**base, "cert_precision@0.9": p, "cert_coverage@0.9": c, "cert_checks@0.9": k,
               "cert_certified@0.9": ok}] for p, c, k, ok in cert]
    ce = trust.summarise(cases, [0.9])["auto_accept"]["0.9"]["certified"]
    assert ce["passed"] == [1] and ce["offered"] == [2] and ce["met"] == [3] and ce["cases"] == [3]
    assert ce["coverage_mean"] == [pytest.approx(0.4 / 3)] and ce["checks_mean"] == [pytest.approx(29)]  # over the cases offered
    assert ce["precision_min"] == [pytest.approx(0.99)]


def test_simulate_without_targets_measures_no_trust(digits):
    res = run(digits, strategies=["random"], budgets=[20], repeats=1, test_fraction=0.3, seed=0)
    assert "trust" not in res["results"]["random"] and "auto_accept_targets" not in res
    assert "auto-accept" not in format_table(res)


@pytest.mark.parametrize(("flag", "value", "match"), [("--auto-accept", "1.5", "targets must lie in (0, 1)"),
                                                      ("--auto-accept", "a,b", "must be numbers"),
                                                      ("--budgets", "10,x", "budgets must be integers")])
def test_cli_rejects_bad_trust_options_in_one_line(tmp_path, capsys, flag, value, match):
    from labeling.cli import main

    assert main(["simulate", str(tmp_path), flag, value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
