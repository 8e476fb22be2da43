"""The torch ensemble: accuracy on a real small data set, real diversity, chunked prediction."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from labeling.device import pick_device
from labeling.model.ensemble import EnsembleConfig, FeatureScaler, fit_ensemble


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = FeatureScaler.fit(x.astype(np.float32)).transform(x.astype(np.float32))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    return x[order[:400]], y[order[:400]], x[order[400:]], y[order[400:]]


def test_ensemble_learns_digits(digits):
    xtr, ytr, xte, yte = digits
    ens = fit_ensemble(xtr, ytr, 10)
    probs = ens.predict_proba(xte)
    assert probs.shape == (5, len(xte), 10)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, atol=1e-5)
    assert (probs.mean(0).argmax(1) == yte).mean() > 0.9


def test_heads_really_disagree(digits):
    """Bootstrap + feature bagging + mixed heads: members differ where seeds alone would not."""
    xtr, ytr, xte, _ = digits
    diverse = fit_ensemble(xtr[:100], ytr[:100], 10).predict_proba(xte)
    same = fit_ensemble(xtr[:100], ytr[:100], 10, config=EnsembleConfig(bootstrap=False, feature_fraction=1.0,
                                                                        mlp_every=0, steps=400)).predict_proba(xte)
    spread_diverse = np.abs(diverse - diverse.mean(0)).mean()
    spread_same = np.abs(same - same.mean(0)).mean()
    assert spread_diverse > 3 * spread_same


def test_chunked_prediction_equals_whole(digits):
    xtr, ytr, xte, _ = digits
    ens = fit_ensemble(xtr, ytr, 10, config=EnsembleConfig(steps=30))
    np.testing.assert_allclose(ens.predict_proba(xte, chunk_size=97), ens.predict_proba(xte), rtol=1e-5, atol=1e-6)


def test_class_balance_rescues_rare_class():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (300, 8)) + 3
    b = rng.normal(0, 1, (10, 8)) - 3
    x = np.concatenate([a, b]).astype(np.float32)
    y = np.array([0] * 300 + [1] * 10)
    probs = fit_ensemble(x, y, 2).predict_proba((rng.normal(0, 1, (50, 8)) - 3).astype(np.float32))
    assert (probs.mean(0).argmax(1) == 1).mean() > 0.95


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="no labeled items"):
        fit_ensemble(np.zeros((0, 3), np.float32), np.zeros(0, int), 2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        fit_ensemble(np.zeros((2, 3), np.float32), np.array([0, 5]), 2)
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
