"""Tests for labeling.active.acquisition: the measures, their ranges and the name -> function table."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from active_helpers import DETERMINISTIC_METHODS, UNCERTAINTY_METHODS, _one_hot, _pool_with_one_uncertain_row
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling.active import acquisition as acq
from labeling.active import selection as sel


# ---------------------------------------------------------------- measures


@pytest.mark.parametrize("method", UNCERTAINTY_METHODS)
def test_uncertain_row_is_picked_by_every_uncertainty_measure(method):
    probs = _pool_with_one_uncertain_row(12, uncertain=7)
    scores = acq.score(probs, method)
    assert scores.shape == (12,)
    assert np.all(scores[7] > np.delete(scores, 7))
    picked = sel.select_top(scores, 1, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(picked, [7])


def test_most_confident_ranks_the_uncertain_row_last():
    probs = _pool_with_one_uncertain_row(12, uncertain=7)
    order = sel.select_top(acq.score(probs, "most_confident"), 12, rng=np.random.default_rng(0))
    assert order[-1] == 7
    np.testing.assert_allclose(acq.confidence(probs)[0], 0.9)


def test_bald_is_zero_when_all_heads_agree():
    rng = np.random.default_rng(1)
    head = rng.dirichlet(np.ones(4), size=20)  # (N, C), flat and peaked rows alike
    probs = np.repeat(head[None], 5, axis=0)  # (K, N, C)
    np.testing.assert_allclose(acq.mutual_information(probs), 0.0, atol=1e-12)
    np.testing.assert_allclose(acq.kl_to_consensus(probs), 0.0, atol=1e-12)
    np.testing.assert_allclose(acq.vote_entropy(probs), 0.0, atol=0)


def test_bald_is_positive_when_confident_heads_disagree():
    probs = np.array([[[1.0, 0.0], [0.99, 0.01]], [[0.0, 1.0], [0.01, 0.99]]])  # (2, 2, 2)
    bald = acq.mutual_information(probs)
    np.testing.assert_allclose(bald[0], math.log(2))  # the most two heads can disagree
    assert 0.0 < bald[1] < bald[0]


def test_kl_to_consensus_is_the_most_dissenting_head():
    probs = np.random.default_rng(2).dirichlet(np.full(5, 0.3), size=(4, 50))
    mean = probs.mean(axis=0)
    per_head = np.sum(probs * (np.log(probs + 1e-300) - np.log(mean)[None]), axis=-1)  # (K, N)
    np.testing.assert_allclose(acq.kl_to_consensus(probs), per_head.max(axis=0), rtol=1e-6, atol=1e-9)
    # the mean over heads would be BALD; the max is a different, larger measure
    assert np.all(acq.kl_to_consensus(probs) >= acq.mutual_information(probs) - 1e-12)
    # one dissenting head among agreeing ones outranks mild, spread disagreement
    dissent = np.array([[[0.9, 0.1]], [[0.9, 0.1]], [[0.9, 0.1]], [[0.05, 0.95]]])
    mild = np.array([[[0.6, 0.4]], [[0.4, 0.6]], [[0.6, 0.4]], [[0.4, 0.6]]])
    assert acq.kl_to_consensus(dissent)[0] > acq.kl_to_consensus(mild)[0]


def test_vote_entropy_is_largest_when_votes_split_evenly():
    k, c = 6, 3
    # Every way to cast 6 votes over 3 classes, one item per composition.
    compositions = [
        counts for counts in itertools.product(range(k + 1), repeat=c) if sum(counts) == k
    ]
    votes = np.array([np.repeat(np.arange(c), counts) for counts in compositions]).T  # (K, N)
    scores = acq.vote_entropy(_one_hot(votes, c))
    best = int(np.argmax(scores))
    assert compositions[best] == (2, 2, 2)
    np.testing.assert_allclose(scores[best], math.log(3))
    assert np.sum(np.isclose(scores, scores[best])) == 1
    np.testing.assert_allclose(scores[compositions.index((6, 0, 0))], 0.0)


def test_t_similarity_known_values():
    identical = _one_hot(np.array([[0, 2], [0, 2], [0, 2]]), 3)
    np.testing.assert_allclose(acq.t_similarity(identical), [1.0, 1.0])
    np.testing.assert_allclose(acq.t_disagreement(identical), [0.0, 0.0])

    disjoint = _one_hot(np.array([[0], [1], [2]]), 3)
    np.testing.assert_allclose(acq.t_similarity(disjoint), [0.0])
    np.testing.assert_allclose(acq.t_disagreement(disjoint), [1.0])

    # Pairs: <a,b> = 0.5, <a,c> = 0.0, <b,c> = 0.5 -> mean 1/3.
    mixed = np.array([[[1.0, 0.0]], [[0.5, 0.5]], [[0.0, 1.0]]])
    np.testing.assert_allclose(acq.t_similarity(mixed), [1.0 / 3.0])

    single_head = np.array([[[0.5, 0.5], [1.0, 0.0]]])
    np.testing.assert_allclose(acq.t_similarity(single_head), [0.5, 1.0])


def test_margin_and_least_confidence_known_values():
    probs = np.array([[[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]], [[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]]])
    np.testing.assert_allclose(acq.margin(probs), [0.8, 0.0])
    np.testing.assert_allclose(acq.least_confidence(probs), [0.5, 0.0])
    np.testing.assert_allclose(acq.entropy(probs)[1], 0.0)

    uniform = np.full((2, 3, 4), 0.25)
    np.testing.assert_allclose(acq.entropy(uniform), math.log(4))
    np.testing.assert_allclose(acq.consensus_entropy(uniform), math.log(4))
    np.testing.assert_allclose(acq.margin(uniform), 1.0)


def test_margin_of_a_single_class_is_zero():
    probs = np.ones((3, 4, 1))
    np.testing.assert_array_equal(acq.margin(probs), np.zeros(4))
    np.testing.assert_array_equal(acq.least_confidence(probs), np.zeros(4))


def test_measures_accept_an_empty_pool():
    probs = np.empty((3, 0, 4))
    for name, scores in acq.all_scores(probs).items():
        assert scores.shape == (0,), name


@pytest.mark.parametrize(
    "probs",
    [
        pytest.param(np.full((4, 3), 1 / 3), id="2-D"),
        pytest.param(np.full((2, 4, 3, 1), 1 / 3), id="4-D"),
        pytest.param(np.empty((0, 4, 3)), id="no-heads"),
        pytest.param(np.empty((2, 4, 0)), id="no-classes"),
        pytest.param(np.where(np.eye(3)[None, :2] > 0, np.nan, 0.0), id="nan"),
        pytest.param(np.array([[[np.inf, 0.0]]]), id="inf"),
        pytest.param(np.array([[[1.5, -0.5]]]), id="negative"),
        pytest.param(np.array([[[0.3, 0.3]]]), id="sums-below-one"),
        pytest.param(np.array([[[2.0, -1.0, 3.0]]]), id="logits"),
    ],
)
@pytest.mark.parametrize("method", list(acq.STRATEGIES))
def test_invalid_probs_raise_value_error(probs, method):
    with pytest.raises(ValueError):
        acq.score(probs, method, rng=np.random.default_rng(0))


def test_rows_within_tolerance_are_accepted_and_renormalised():
    probs = np.array([[[0.5004, 0.5]]])  # sums to 1.0004 < 1 + SUM_ATOL
    np.testing.assert_allclose(acq.margin(probs), [1.0 - 0.0004 / 1.0004])


@settings(max_examples=150, deadline=None)
@given(
    k=st.integers(1, 6),
    n=st.integers(1, 8),
    c=st.integers(1, 6),
    alpha=st.sampled_from([0.02, 0.3, 1.0, 20.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_measure_is_finite_and_in_its_documented_range(k, n, c, alpha, dtype, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, alpha), size=(k, n)).astype(dtype)
    # Very small alpha can underflow a row to all zeros; a one-hot row is the limit.
    dead = probs.sum(axis=-1) == 0
    probs[dead] = np.eye(c, dtype=dtype)[0]
    log_c, log_kc = math.log(c), math.log(min(k, c))
    eps = 1e-9
    ranges = {
        "least_confidence": (0.0, 1.0 - 1.0 / c),
        "margin": (0.0, 1.0),
        "entropy": (0.0, log_c),
        "consensus_entropy": (0.0, log_c),
        "vote_entropy": (0.0, log_kc),
        "bald": (0.0, log_kc),
        "mutual_information": (0.0, log_kc),
        "kl_to_consensus": (0.0, math.log(k)),
        "t_similarity": (0.0, 1.0),
        "most_confident": (1.0 / c, 1.0),
    }
    scores = acq.all_scores(probs)
    assert set(scores) == set(ranges)
    extra = {
        "random": (acq.random_scores(probs, rng=rng), (0.0, 1.0)),
        "raw_t_similarity": (acq.t_similarity(probs), (0.0, 1.0)),
        "confidence": (acq.confidence(probs), (1.0 / c, 1.0)),
    }
    checks = {name: (scores[name], ranges[name]) for name in ranges} | extra
    for name, (values, (low, high)) in checks.items():
        assert values.shape == (n,), name
        assert np.all(np.isfinite(values)), name
        assert np.all(values >= low - eps), (name, values.min(), low)
        assert np.all(values <= high + eps), (name, values.max(), high)


# --------------------------------------------------------- name -> function


def test_all_scores_chunked_equals_whole():
    probs = np.random.default_rng(3).dirichlet(np.full(6, 0.4), size=(4, 103))
    whole = acq.all_scores(probs, chunk_size=10_000)
    assert set(whole) == set(DETERMINISTIC_METHODS)
    for chunk_size in (1, 7, 50):
        chunked = acq.all_scores(probs, chunk_size=chunk_size)
        for name in DETERMINISTIC_METHODS:
            np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-12, atol=1e-15)
    for name in DETERMINISTIC_METHODS:
        np.testing.assert_allclose(whole[name], acq.score(probs, name), rtol=1e-12, atol=1e-15)


def test_all_scores_reads_a_memory_mapped_float32_file(tmp_path):
    probs = np.random.default_rng(4).dirichlet(np.ones(3), size=(3, 40)).astype(np.float32)
    path = tmp_path / "probs.npy"
    np.save(path, probs)
    mapped = np.load(path, mmap_mode="r")
    from_disk = acq.all_scores(mapped, chunk_size=16)
    in_memory = acq.all_scores(probs)
    for name in DETERMINISTIC_METHODS:
        np.testing.assert_array_equal(from_disk[name], in_memory[name])


def test_all_scores_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        acq.all_scores(np.full((1, 2, 2), 0.5), chunk_size=0)


def test_unknown_method_raises_value_error_naming_valid_ones():
    with pytest.raises(ValueError, match="unknown acquisition method 'uncertainty'") as info:
        acq.score(np.full((1, 2, 2), 0.5), "uncertainty")
    for name in acq.STRATEGIES:
        assert name in str(info.value)


def test_random_needs_rng_and_is_reproducible():
    probs = np.full((2, 50, 3), 1 / 3)
    with pytest.raises(ValueError, match="rng"):
        acq.score(probs, "random")
    first = acq.score(probs, "random", rng=np.random.default_rng(5))
    again = acq.score(probs, "random", rng=np.random.default_rng(5))
    other = acq.score(probs, "random", rng=np.random.default_rng(6))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(TypeError, match="Generator"):
        acq.random_scores(probs, rng=5)


def test_strategies_is_read_only_and_names_the_aliases():
    with pytest.raises(TypeError):
        acq.STRATEGIES["mine"] = acq.margin  # type: ignore[index]
    assert acq.STRATEGIES["bald"] is acq.mutual_information
    assert acq.STRATEGIES["t_similarity"] is acq.t_disagreement
