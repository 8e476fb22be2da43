"""Tests for labeling.active.acquisition: measures, selection, diversity, cold start."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling.active import acquisition as acq
from labeling.active import coldstart as cold
from labeling.active import selection as sel
UNCERTAINTY_METHODS = (
    "least_confidence",
    "margin",
    "entropy",
    "vote_entropy",
    "consensus_entropy",
    "bald",
    "mutual_information",
    "kl_to_consensus",
    "t_similarity",
)
DETERMINISTIC_METHODS = tuple(name for name in acq.STRATEGIES if name != "random")


def _peaked(c: int, cls: int, top: float = 0.9) -> np.ndarray:
    """A distribution with ``top`` on ``cls`` and the rest spread evenly."""
    row = np.full(c, (1.0 - top) / (c - 1))
    row[cls] = top
    return row


def _pool_with_one_uncertain_row(n_items: int, uncertain: int) -> np.ndarray:
    """K=3 identical confident heads everywhere but one row where they disagree."""
    k = c = 3
    probs = np.empty((k, n_items, c))
    for n in range(n_items):
        probs[:, n] = _peaked(c, n % c)
    for head in range(k):
        probs[head, uncertain] = _peaked(c, head)  # each head sure of a different class
    return probs


def _one_hot(votes: np.ndarray, c: int) -> np.ndarray:
    """(K, N) class votes -> (K, N, C) one-hot probabilities."""
    return np.eye(c)[votes]


def _blobs(rng: np.random.Generator, *, n_blobs: int = 5, per_blob: int = 100, dim: int = 8):
    """Well-separated Gaussian blobs on orthogonal axes; returns (X, blob, centres)."""
    centres = 10.0 * np.eye(dim)[:n_blobs]
    x = np.concatenate([c + rng.normal(size=(per_blob, dim)) for c in centres])
    blob = np.repeat(np.arange(n_blobs), per_blob)
    return x, blob, centres


def _cosine_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return 1.0 - np.sum(x * y, axis=-1)


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


# ---------------------------------------------------------------- select_top


def test_select_top_returns_best_first_and_skips_excluded():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(sel.select_top(scores, 3, rng=rng), [1, 3, 2])
    exclude = np.array([False, True, False, False, False])
    np.testing.assert_array_equal(sel.select_top(scores, 3, rng=rng, exclude=exclude), [3, 2, 4])


def test_select_top_returns_every_eligible_item_when_asked_for_more():
    exclude = np.array([True, False, True, False])
    picks = sel.select_top(np.zeros(4), 10, rng=np.random.default_rng(0), exclude=exclude)
    assert sorted(picks) == [1, 3]
    assert sel.select_top(np.zeros(4), 0, rng=np.random.default_rng(0)).shape == (0,)


def test_select_top_breaks_ties_at_random():
    scores = np.zeros(100)
    scores[:5] = 1.0  # five clear winners, then a 95-way tie
    first = sel.select_top(scores, 10, rng=np.random.default_rng(7))
    again = sel.select_top(scores, 10, rng=np.random.default_rng(7))
    other = sel.select_top(scores, 10, rng=np.random.default_rng(8))
    assert set(first[:5]) == set(range(5))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[5:], other[5:])
    assert not np.array_equal(first[5:], np.arange(5, 10))  # not the lowest indices


def test_select_top_raises_when_the_pool_is_empty():
    with pytest.raises(acq.EmptyPoolError):
        sel.select_top(np.zeros(3), 1, rng=np.random.default_rng(0), exclude=np.ones(3, bool))


@pytest.mark.parametrize(
    ("scores", "n", "exclude", "error"),
    [
        (np.array([0.1, np.nan]), 1, None, ValueError),
        (np.zeros((2, 2)), 1, None, ValueError),
        (np.zeros(3), -1, None, ValueError),
        (np.zeros(3), 1.5, None, TypeError),
        (np.zeros(3), 1, np.array([0, 1, 0]), ValueError),
        (np.zeros(3), 1, np.zeros(4, bool), ValueError),
    ],
)
def test_select_top_rejects_bad_input(scores, n, exclude, error):
    with pytest.raises(error):
        sel.select_top(scores, n, rng=np.random.default_rng(0), exclude=exclude)


# --------------------------------------------------------------- diversity


@pytest.fixture
def duplicated_pool():
    """40 distinct vectors, each 5 times, shuffled; copies share their score."""
    rng = np.random.default_rng(9)
    distinct = rng.normal(size=(40, 16))
    group = rng.permutation(np.repeat(np.arange(40), 5))  # (200,)
    vectors = distinct[group]
    scores = rng.random(40)[group]
    return vectors, scores, group


@pytest.mark.parametrize("method", ["clusters", "coreset"])
def test_diverse_batch_never_holds_two_duplicates(duplicated_pool, method):
    vectors, scores, group = duplicated_pool
    rng = np.random.default_rng(10)
    plain = sel.select_top(scores, 8, rng=rng)
    assert len(set(group[plain])) < 8  # without diversity the batch repeats images
    picks = sel.diverse_top(scores, vectors, 8, rng=rng, method=method)
    assert picks.shape == (8,)
    assert len(set(group[picks])) == 8
    assert len(np.unique(vectors[picks], axis=0)) == 8


@pytest.mark.parametrize("method", ["clusters", "coreset"])
def test_diverse_top_draws_from_top_candidates_best_first(duplicated_pool, method):
    vectors, scores, group = duplicated_pool
    exclude = np.zeros(200, dtype=bool)
    exclude[np.argsort(-scores)[:10]] = True  # the two best groups are already labeled
    picks = sel.diverse_top(
        scores,
        vectors,
        6,
        rng=np.random.default_rng(11),
        exclude=exclude,
        candidate_factor=3,
        method=method,
    )
    assert not exclude[picks].any()
    eligible_scores = np.sort(scores[~exclude])[::-1]
    assert scores[picks].min() >= eligible_scores[6 * 3 - 1]
    assert np.all(np.diff(scores[picks]) <= 0)


@pytest.mark.parametrize("method", ["clusters", "coreset"])
def test_diverse_top_spreads_over_blobs(method):
    x, blob, _ = _blobs(np.random.default_rng(12), n_blobs=4, per_blob=50)
    scores = np.where(blob == 0, 1.0, 0.5) + 0.01 * np.random.default_rng(13).random(200)
    plain = sel.select_top(scores, 4, rng=np.random.default_rng(14))
    assert set(blob[plain]) == {0}
    picks = sel.diverse_top(
        scores, x, 4, rng=np.random.default_rng(14), candidate_factor=50, method=method
    )
    assert set(blob[picks]) == {0, 1, 2, 3}
    assert blob[picks[0]] == 0  # still led by the best-scored region


@pytest.mark.parametrize("method", ["clusters", "coreset"])
def test_diverse_top_with_fewer_distinct_vectors_than_n(method):
    group = np.repeat(np.arange(3), 10)
    vectors = np.eye(4)[group]
    scores = np.linspace(0, 1, 30)
    picks = sel.diverse_top(scores, vectors, 5, rng=np.random.default_rng(15), method=method)
    assert len(set(picks)) == 5
    assert set(group[picks]) == {0, 1, 2}


def test_diverse_top_rejects_unknown_method_and_mismatched_vectors():
    with pytest.raises(ValueError, match="clusters"):
        sel.diverse_top(
            np.zeros(3), np.zeros((3, 2)), 1, rng=np.random.default_rng(0), method="grid"
        )
    with pytest.raises(ValueError, match="rows"):
        sel.diverse_top(np.zeros(3), np.zeros((4, 2)), 1, rng=np.random.default_rng(0))


# --------------------------------------------------------------- cold start


def test_typicality_is_higher_inside_a_cluster_than_for_an_outlier():
    rng = np.random.default_rng(16)
    cluster = np.array([10.0, 0.0, 0.0]) + 0.3 * rng.normal(size=(60, 3))
    x = np.concatenate([cluster, [[0.0, 0.0, 10.0]]])  # one far-away outlier last
    typ = cold.typicality(x, k=10)
    assert typ.shape == (61,)
    assert np.all(typ[:60] > 10 * typ[60])


def test_typicality_uses_precomputed_neighbour_similarities():
    x = np.random.default_rng(17).normal(size=(80, 5))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    knn_sims = -np.sort(-sims, axis=1)[:, :7]  # (N, 7), nearest first, self excluded
    np.testing.assert_allclose(
        cold.typicality(x, k=7), cold.typicality(x, k=7, knn_sims=knn_sims), rtol=1e-5
    )
    with pytest.raises(ValueError, match="knn_sims"):
        cold.typicality(x, knn_sims=knn_sims[:10])


def test_typicality_ignores_missing_neighbours_marked_minus_inf():
    x = np.random.default_rng(21).normal(size=(4, 3))
    computed = cold.typicality(x, k=20)  # only 3 neighbours exist
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    padded = np.concatenate([-np.sort(-sims, axis=1)[:, :3], np.full((4, 2), -np.inf)], axis=1)
    np.testing.assert_allclose(cold.typicality(x, k=20, knn_sims=padded), computed, rtol=1e-5)
    alone = cold.typicality(x, knn_sims=np.full((4, 2), -np.inf))
    np.testing.assert_array_equal(alone, np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        cold.typicality(x, knn_sims=np.where(np.isinf(padded), np.nan, padded))


def test_typicality_with_duplicates_and_tiny_pools():
    x = np.repeat(np.eye(3), 4, axis=0)  # each vector four times
    typ = cold.typicality(x, k=3)
    assert np.all(np.isfinite(typ)) and np.all(typ > 1e5)
    np.testing.assert_array_equal(cold.typicality(np.ones((1, 3))), [1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cold_start_covers_every_blob_near_its_centre(seed):
    rng = np.random.default_rng(seed)
    x, blob, centres = _blobs(rng)
    picks = cold.typical_cold_start(x, 5, labeled_mask=np.zeros(len(x), bool), rng=rng)
    assert sorted(blob[picks]) == [0, 1, 2, 3, 4]
    dist = _cosine_distance(x, centres[blob])  # (N,) to the pick's own blob centre
    for i in picks:
        # Closer to its centre than three quarters of its blob.
        assert np.mean(dist[blob == blob[i]] < dist[i]) < 0.25


def test_cold_start_skips_blobs_that_already_have_labels():
    rng = np.random.default_rng(18)
    x, blob, _ = _blobs(rng)
    labeled = np.zeros(len(x), bool)
    labeled[[3, 150]] = True  # one label in blob 0, one in blob 1
    exclude = blob == 2
    exclude[np.flatnonzero(blob == 2)[:1]] = False  # one item left eligible in blob 2
    picks = cold.typical_cold_start(x, 3, labeled_mask=labeled, rng=rng, exclude=exclude)
    assert sorted(blob[picks]) == [2, 3, 4]
    assert not (labeled | exclude)[picks].any()


def test_cold_start_asked_for_more_than_the_blobs():
    rng = np.random.default_rng(19)
    x, blob, _ = _blobs(rng, per_blob=30)
    labeled = np.zeros(len(x), bool)
    labeled[0] = True
    picks = cold.typical_cold_start(x, 12, labeled_mask=labeled, rng=rng)
    assert len(set(picks)) == 12
    assert set(blob[picks]) == set(range(5))
    assert 0 not in picks
    with pytest.raises(acq.EmptyPoolError):
        cold.typical_cold_start(x, 1, labeled_mask=np.ones(len(x), bool), rng=rng)


# ----------------------------------------------------------- default policy


@pytest.fixture
def three_class_pool():
    """3 blobs = 3 classes; heads agree everywhere but one item per blob."""
    rng = np.random.default_rng(20)
    x, blob, _ = _blobs(rng, n_blobs=3, per_blob=40)
    probs = np.stack([np.array([_peaked(3, b, 0.95) for b in blob])] * 3)  # (3, 120, 3)
    uncertain = np.array([5, 45, 85])  # one in each blob
    for head in range(3):
        probs[head, uncertain] = _peaked(3, head, 0.95)
    labels = np.full(len(x), -1)
    human = [0, 1, 2, 40, 41, 42, 80, 81]  # three labels for classes 0 and 1, two for class 2
    labels[human] = blob[human]
    return probs, x, labels, uncertain


def test_default_policy_cold_starts_without_a_model(three_class_pool):
    probs, x, labels, _ = three_class_pool
    labels = labels.copy()
    labels[82] = 2  # every class has three labels now
    picks, phase = sel.default_policy(
        None, x, 3, labels=labels, n_classes=3, rng=np.random.default_rng(0)
    )
    assert phase == "typicality"
    assert picks.shape == (3,) and np.all(labels[picks] == -1)


def test_default_policy_switches_phase_when_every_class_has_labels(three_class_pool):
    probs, x, labels, uncertain = three_class_pool
    picks, phase = sel.default_policy(
        probs, x, 3, labels=labels, n_classes=3, rng=np.random.default_rng(0)
    )
    assert phase == sel.COLD_START_PHASE  # class 2 has only two labels
    assert np.all(labels[picks] == -1)

    labels = labels.copy()
    labels[82] = 2
    exclude = np.zeros(len(x), bool)
    exclude[7] = True
    picks, phase = sel.default_policy(
        probs, x, 3, labels=labels, n_classes=3, rng=np.random.default_rng(0), exclude=exclude
    )
    assert phase == sel.DISAGREEMENT_PHASE
    assert sorted(picks) == sorted(uncertain)


def test_default_policy_reuses_a_rounds_scores(three_class_pool):
    probs, x, labels, uncertain = three_class_pool
    labels = labels.copy()
    labels[82] = 2
    rng = np.random.default_rng(1)
    probs = np.clip(probs + rng.uniform(0, 0.2, probs.shape), 0, None)
    probs /= probs.sum(axis=-1, keepdims=True)
    fresh = sel.default_policy(probs, x, 6, labels=labels, n_classes=3, rng=np.random.default_rng(0))
    reused = sel.default_policy(probs, x, 6, labels=labels, n_classes=3, rng=np.random.default_rng(0),
                                scores=acq.all_scores(probs))
    assert fresh[1] == reused[1] == sel.DISAGREEMENT_PHASE
    np.testing.assert_array_equal(fresh[0], reused[0])
    assert set(uncertain) <= set(reused[0].tolist())
    # the scores are what ranks: reversed, the batch changes
    flipped = {name: -v for name, v in acq.all_scores(probs).items()}
    other = sel.default_policy(probs, x, 6, labels=labels, n_classes=3, rng=np.random.default_rng(0),
                               scores=flipped)
    assert not set(uncertain) & set(other[0].tolist())
    with pytest.raises(ValueError, match="scores"):
        sel.default_policy(probs, x, 6, labels=labels, n_classes=3, rng=np.random.default_rng(0),
                           scores={"margin": np.zeros(3), "bald": np.zeros(3)})


def test_default_policy_rejects_bad_labels(three_class_pool):
    probs, x, labels, _ = three_class_pool
    bad = labels.copy()
    bad[10] = 3
    with pytest.raises(ValueError, match="labels"):
        sel.default_policy(probs, x, 3, labels=bad, n_classes=3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="labels"):
        sel.default_policy(
            probs, x, 3, labels=labels[:-1], n_classes=3, rng=np.random.default_rng(0)
        )
    with pytest.raises(ValueError, match="items"):
        sel.default_policy(
            probs[:, :-1],
            x,
            3,
            labels=np.arange(len(x)) % 3,
            n_classes=3,
            rng=np.random.default_rng(0),
        )
