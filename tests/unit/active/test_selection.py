"""Tests for labeling.active.selection and coldstart: top-n, diversity, cold start, the default policy."""

from __future__ import annotations

import numpy as np
import pytest
from active_helpers import _blobs, _cosine_distance, _peaked

from labeling.active import acquisition as acq
from labeling.active import coldstart as cold
from labeling.active import selection as sel


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


def test_imagenet_guesses_show_only_where_the_backbone_sees_its_own_world():
    """Photo-like data spreads its confident guesses over many ImageNet classes; the demo's silhouettes
    pile up on "digital clock" at 99 %, and such guesses are not shown at all."""
    import numpy as np

    from labeling.active.coldstart import hints_are_meaningful

    photos = np.array([f"breed {k % 12}" for k in range(120)])
    assert hints_are_meaningful(photos, np.full(120, 0.8))
    silhouettes = np.array(["digital clock"] * 40 + [f"thing {k}" for k in range(80)])
    assert not hints_are_meaningful(silhouettes, np.full(120, 0.99))
    assert not hints_are_meaningful(photos, np.full(120, 0.3))  # nothing confident enough
    assert not hints_are_meaningful(None, None) and not hints_are_meaningful(np.array([]), np.array([]))


def test_cluster_count_steps_by_at_most_an_eighth():
    assert [cold.cluster_count(k) for k in (1, 5, 15, 16, 20, 31, 32, 50, 100, 200, 206, 208, 209)] == \
        [1, 5, 15, 16, 20, 32, 32, 52, 104, 208, 208, 208, 224]
    for k in range(1, 2000):
        got = cold.cluster_count(k)
        assert k <= got <= k + max(0, k // 8 + 1) and cold.cluster_count(got) == got


def test_cold_start_rounds_a_label_apart_share_one_clustering():
    """Asked for batches that keep labeled plus batch on one cluster count (as a round asks), the memo is
    asked for the same clustering, computes it once, and the picks are those of a fresh clustering."""
    rng0 = np.random.default_rng(0)
    x, _blob, _centres = _blobs(rng0)
    store, computed = {}, []

    def memo(key, compute):
        if key not in store:
            computed.append(key)
            store[key] = compute()
        return store[key]

    for n_labeled in (0, 1, 2, 3, 4, 5):  # 40 + n_labeled -> 40, 44, 44, 44, 44, 48 clusters
        labeled = np.zeros(len(x), bool)
        labeled[:n_labeled] = True
        n = cold.cluster_count(40 + n_labeled) - n_labeled
        with_memo = cold.typical_cold_start(x, n, labeled_mask=labeled, rng=np.random.default_rng(7), memo=memo)
        fresh = cold.typical_cold_start(x, n, labeled_mask=labeled, rng=np.random.default_rng(7))
        np.testing.assert_array_equal(with_memo, fresh)
    assert [k.split("-")[1] for k in computed] == ["40", "44", "48"]
