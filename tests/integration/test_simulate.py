"""The oracle replay: known-answer comparison on digits, and the CLI's JSON contract."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from labeling.model.ensemble import FeatureScaler
from labeling.search.neighbours import knn_graph
from labeling.active.simulate import SimData, format_table, run


@pytest.fixture(scope="module")
def digits() -> SimData:
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    graph = knn_graph(x, 15)
    return SimData(FeatureScaler.fit(x).transform(x), y, [str(c) for c in range(10)], graph)


def test_default_policy_beats_random_with_few_labels(digits):
    res = run(digits, strategies=["random", "default"], budgets=[10, 30], repeats=2, test_fraction=0.3, seed=0)
    assert res["budgets"] == [10, 30]
    rand, default = res["results"]["random"], res["results"]["default"]
    # typical items of distinct clusters, spread by propagation, beat random picks at 10 labels
    assert default["accuracy_mean"][0] > rand["accuracy_mean"][0] + 0.05
    assert all(0 <= a <= 1 for a in default["accuracy_mean"] + rand["accuracy_mean"])
    assert "knn_propagation" in res["results"]
    assert "random" in format_table(res) and "default" in format_table(res)


def test_same_seed_same_result(digits):
    a = run(digits, strategies=["margin"], budgets=[10, 20], repeats=1, test_fraction=0.3, seed=3)
    b = run(digits, strategies=["margin"], budgets=[10, 20], repeats=1, test_fraction=0.3, seed=3)
    assert a["results"] == b["results"]


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="unknown strategies"):
        run(digits, strategies=["nope"], budgets=[10], repeats=1, test_fraction=0.3)
    with pytest.raises(ValueError, match="smaller than the largest budget"):
        run(digits, strategies=["random"], budgets=[5000], repeats=1, test_fraction=0.3)


def test_cli_simulate_writes_the_documented_json(tmp_path):
    from PIL import Image

    from labeling.cli import main
    from labeling.data.demo import load_animal_mnist

    images, labels, classes = load_animal_mnist()
    src = tmp_path / "src"
    for c in range(3):
        (src / classes[c]).mkdir(parents=True)
        for k, idx in enumerate(np.flatnonzero(labels == c)[:20]):
            Image.fromarray(images[idx]).save(src / classes[c] / f"{k}.png")
    out = tmp_path / "r.json"
    code = main(["simulate", str(src), "--strategies", "random,default", "--budgets", "6,12", "--repeats", "1",
                 "--test-fraction", "0.3", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["budgets"] == [6, 12]
    for name in ("random", "default", "knn_propagation"):
        assert len(res["results"][name]["accuracy_mean"]) == 2
        assert len(res["results"][name]["accuracy_std"]) == 2


def test_simulate_reports_trust_beside_accuracy(digits):
    res = run(digits, strategies=["random", "default"], budgets=[30, 150], repeats=1, test_fraction=0.3, seed=0,
              auto_accept=[0.9])
    assert res["auto_accept_targets"] == [0.9]
    for name in ("random", "default"):
        tr = res["results"][name]["trust"]
        aa = tr["auto_accept"]["0.9"]
        assert len(aa["coverage_mean"]) == 2 and all(0.0 <= c <= 1.0 for c in aa["coverage_mean"])
        assert all(p is None or 0.0 <= p <= 1.0 for p in aa["precision_mean"])
        assert aa["cases"] == [1, 1] and all(m in (0, 1) for m in aa["met"])
        assert tr["logreg_accuracy_mean"][1] > 0.8  # digits with 150 labels: an easy baseline
        assert 0.0 <= tr["ece_mean"][0] <= 1.0 and 0.0 <= tr["ece_calibrated_mean"][1] <= 1.0
    assert res["results"]["default"]["trust"]["auto_accept"]["0.9"]["coverage_mean"][1] > 0  # 150 labels: some
    for name in ("random", "default"):
        ce = res["results"][name]["trust"]["auto_accept"]["0.9"]["certified"]
        assert ce["cases"] == [1, 1] and all(p <= o <= 1 for p, o in zip(ce["passed"], ce["offered"]))
        assert all(c is None or c >= 0 for c in ce["checks_mean"])
    table = format_table(res)
    assert "certified by a checked sample at target 0.9" in table
    assert "auto-accept at target 0.9" in table and "logreg" in table and "calibrated" in table
