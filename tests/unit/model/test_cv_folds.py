"""Cross-validation that stays honest when labels are few: more folds, every fold trained on most labels."""
from __future__ import annotations

import numpy as np
import pytest

from labeling.model.ensemble import EnsembleConfig, FeatureScaler
from labeling.model.learner import LearnerConfig
from labeling.model.rounds import CV_FOLDS, STARVED_FOLDS, _assign_folds, cross_validate, cv_fold_count
from labeling.search.neighbours import knn_graph


@pytest.mark.parametrize(("counts", "folds"), [
    ([10, 12, 40], CV_FOLDS),  # plenty in every class: five folds
    ([2] * 10, STARVED_FOLDS),  # 2 per class: ten folds, each holding out 2 of 20
    ([2, 2, 2], 6),  # fewer labels than ten folds: leave-one-out
    ([0, 1, 3, 3], 6),  # classes below two labels never count
    ([9, 50, 50], STARVED_FOLDS),
])
def test_fold_count_grows_when_a_class_is_starved(counts, folds):
    assert cv_fold_count(np.array(counts)) == folds


def test_fold_count_needs_a_class_with_two_labels():
    with pytest.raises(ValueError, match="at least two labels"):
        cv_fold_count(np.array([1, 1, 0]))


def test_folds_spread_each_class_so_no_fold_takes_a_whole_small_class():
    labels = np.repeat(np.arange(10), 2)  # 2 labels in each of 10 classes
    assign = _assign_folds(labels, 10, np.random.default_rng(0))
    assert np.bincount(assign, minlength=10).tolist() == [2] * 10  # balanced folds
    for f in range(10):
        held = labels[assign == f]
        assert len(set(held.tolist())) == len(held)  # never both labels of a class in one fold


def test_starved_cross_validation_trains_each_fold_on_nearly_every_label():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4
    y = np.repeat(np.arange(3), 50)
    x = (centres[y] + rng.normal(size=(150, 8))).astype(np.float32)
    x = FeatureScaler.fit(x).transform(x)
    labels = np.full(150, -1)
    picked = np.concatenate([np.flatnonzero(y == c)[:4] for c in range(3)])
    labels[picked] = y[picked]
    config = LearnerConfig(ensemble=EnsembleConfig(seed=0), self_training=False)
    metrics, held = cross_validate(x, labels, 3, knn_graph(x, 10), config, "cpu", seed=0)
    assert metrics["cv_folds"] == 10 and metrics["cv_labels"] == 12
    assert metrics["cv_train_labels"] >= 12 - 2  # at most 2 of 12 held out per fold (five folds: 9.6)
    assert sorted(held["rows"].tolist()) == sorted(picked.tolist())  # every label held out once
    assert (held["true"] == y[held["rows"]]).all()
    assert metrics["cv_accuracy"] == pytest.approx(float((held["predicted"] == held["true"]).mean()))
