"""Known-answer tests for pair construction, ISO weights and rejection sampling."""

import math

import numpy as np
import pytest
from scipy import stats

from iswcli import pairing as pr
from iswcli.errors import IswtError
from tests import per_prompt as one


class FixedKeys:
    """Stand-in rng whose shuffle keys are given: a shuffle is argsort(rng.random(n))."""

    def __init__(self, keys):
        self.keys = np.asarray(keys, dtype=float)

    def random(self, size):
        return self.keys.reshape(size)


def _pairs(w, l):
    return list(zip(w.tolist(), l.tolist()))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------
# Pair log weights
# --------------------------------------------------------------------------


def test_margin_log_score_is_stable_at_both_ends():
    for d in (0.3, 1.0, 4.0):
        assert pr.margin_log_score(d, 0.0) == pytest.approx(math.log(_sigmoid(d) - 0.5), rel=1e-12)
    tiny = 1e-12
    assert pr.margin_log_score(tiny, 0.0) == pytest.approx(math.log(tiny / 4.0), rel=1e-9)
    assert pr.margin_log_score(1e4, 0.0) == pytest.approx(math.log(0.5), rel=1e-15)
    assert pr.margin_log_score(2.0, 2.0) == -math.inf  # a tie has weight 0
    with pytest.raises(IswtError, match="chosen reward"):
        pr.margin_log_score(0.0, 1.0)


def test_iso_weights_of_a_three_sample_prompt_by_hand():
    rewards, gamma = [1.0, 0.0, 2.0], 0.5
    got = one.iso_pairs(rewards, gamma)
    assert _pairs(got.chosen, got.rejected) == [(0, 1), (2, 0), (2, 1)]
    unnormalized = [
        math.exp((1 + 0) / gamma) * (_sigmoid(1.0) - 0.5),
        math.exp((2 + 1) / gamma) * (_sigmoid(1.0) - 0.5),
        math.exp((2 + 0) / gamma) * (_sigmoid(2.0) - 0.5),
    ]
    expected = np.array(unnormalized) / sum(unnormalized)
    np.testing.assert_allclose(got.weight, expected, rtol=1e-12)
    np.testing.assert_allclose(np.exp(got.log_weight_base), unnormalized, rtol=1e-12)
    np.testing.assert_allclose(got.margin_score, [math.log(_sigmoid(d) - 0.5) for d in (1.0, 1.0, 2.0)], rtol=1e-12)
    assert one.iso_log_weight(2.0, 1.0, gamma) == pytest.approx(math.log(unnormalized[1]), rel=1e-12)


def test_iso_weights_with_huge_rewards_and_tiny_gamma():
    rewards = np.array([100.0, 99.0, 100.0, 0.0, 50.0, 99.999])
    got = one.iso_pairs(rewards, gamma=0.05)
    assert np.all(np.isfinite(got.weight)) and np.all(np.isfinite(got.log_weight_base))
    assert got.weight.sum() == pytest.approx(1.0)
    assert (0, 2) not in _pairs(got.chosen, got.rejected) and (2, 0) not in _pairs(got.chosen, got.rejected)
    # the top two pairs (100 vs 99.999) carry nearly all the weight; against
    # 100 vs 99 their weight ratio is exp(0.999/gamma) * (s(0.001) - 1/2) / (s(1) - 1/2)
    top = np.argsort(got.weight)[-2:]
    assert set(_pairs(got.chosen[top], got.rejected[top])) == {(0, 5), (2, 5)}
    pairs = _pairs(got.chosen, got.rejected)
    ratio = got.weight[pairs.index((0, 5))] / got.weight[pairs.index((0, 1))]
    log_expected = 0.999 / 0.05 + math.log(math.tanh(0.0005) / 2) - math.log(_sigmoid(1.0) - 0.5)
    assert math.log(ratio) == pytest.approx(log_expected, rel=1e-9)
    assert got.weight[top].sum() > 0.99999


# --------------------------------------------------------------------------
# Candidate pairs
# --------------------------------------------------------------------------


def test_all_pairs_skip_ties_in_a_fixed_order():
    w, l = one.candidate_pairs([1.0, 0.0, 2.0, 2.0], "all")
    assert _pairs(w, l) == [(0, 1), (2, 0), (2, 1), (3, 0), (3, 1)]


def test_first_round_pairs_neighbours_of_the_shuffle():
    rewards = [2.0, 7.0, 1.0, 8.0, 2.0, 8.0]
    w, l = one.candidate_pairs(rewards, "first-round", FixedKeys([0, 1, 2, 3, 4, 5]))
    assert _pairs(w, l) == [(1, 0), (3, 2), (5, 4)]
    # shuffled order 5, 3, 1, 0, 2, 4: matches 5-3 (tie, no pair), 1-0, 2-4
    w, l = one.candidate_pairs(rewards, "first-round", FixedKeys([3, 2, 4, 1, 5, 0]))
    assert _pairs(w, l) == [(1, 0), (4, 2)]
    # odd count: the last of the shuffle sits out; ties are skipped
    w, l = one.candidate_pairs([1.0, 1.0, 3.0, 0.0, 5.0], "first-round", FixedKeys([0, 1, 2, 3, 4]))
    assert _pairs(w, l) == [(2, 3)]


def test_tournament_bracket_by_hand():
    rewards = [2.0, 7.0, 1.0, 8.0, 2.0, 8.0]
    w, l = one.candidate_pairs(rewards, "tournament", FixedKeys([0, 1, 2, 3, 4, 5]))
    # round 1: 1>0, 3>2, 5>4; round 2: 3>1, 5 has a bye; final 3 vs 5 is a tie: no pair
    assert _pairs(w, l) == [(1, 0), (3, 2), (5, 4), (3, 1)]


def test_tournament_structure_on_random_brackets():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rewards = rng.permutation(8).astype(float)
        w, l = one.candidate_pairs(rewards, "tournament", rng)
        assert len(w) == 7
        assert np.all(rewards[w] > rewards[l])
        champion = int(np.argmax(rewards))
        assert champion not in l
        assert sorted(np.bincount(l, minlength=8).tolist()) == [0] + [1] * 7  # all but the champion lose once
        assert sorted(np.bincount(w, minlength=8).tolist()) == [0, 0, 0, 0, 1, 1, 2, 3]
        assert np.count_nonzero(w == champion) == 3


def test_first_round_on_random_shuffles_is_a_perfect_matching():
    rng = np.random.default_rng(1)
    rewards = rng.permutation(10).astype(float)
    w, l = one.candidate_pairs(rewards, "first-round", rng)
    assert len(w) == 5 and sorted(np.concatenate([w, l]).tolist()) == list(range(10))


# --------------------------------------------------------------------------
# Grouped driver
# --------------------------------------------------------------------------


def test_weight_pairs_groups_drops_and_matches_single_prompts():
    ids = np.array(["p2"] * 4 + ["p1"] * 3 + ["p3"] * 3 + ["p4"] * 5)
    sample_idx = np.array([10, 11, 12, 13, 0, 1, 2, 7, 8, 9, 0, 1, 2, 3, 4])
    rewards = np.array([0.5, 0.1, 0.5, 0.9, 1.0, 0.0, 2.0, 3.0, 3.0, 3.0, 5.0, 1.0, 4.0, 1.0, 2.0])
    perm = np.random.default_rng(3).permutation(ids.size)
    table = pr.weight_pairs(ids[perm], sample_idx[perm], rewards[perm], method="iso", gamma=0.5)
    assert table.n_prompts == 4
    assert list(table.dropped_prompt_ids) == ["p3"]  # all equal rewards
    assert list(dict.fromkeys(table.prompt_id)) == ["p1", "p2", "p4"]
    assert np.all(table.r_chosen > table.r_rejected)
    for pid in ("p1", "p2", "p4"):
        mine = table.prompt_id == pid
        assert table.weight[mine].sum() == pytest.approx(1.0)
        rows = ids == pid
        single = one.iso_pairs(rewards[rows], 0.5)
        np.testing.assert_array_equal(table.chosen_idx[mine], sample_idx[rows][single.chosen])
        np.testing.assert_array_equal(table.rejected_idx[mine], sample_idx[rows][single.rejected])
        np.testing.assert_allclose(table.weight[mine], single.weight, rtol=1e-12)
    p2 = table.prompt_id == "p2"  # rewards 0.5, 0.1, 0.5, 0.9: the 0.5 tie is never a pair
    assert len(table.chosen_idx[p2]) == 5
    assert {(10, 12), (12, 10)}.isdisjoint(zip(table.chosen_idx[p2].tolist(), table.rejected_idx[p2].tolist()))
    assert table.acceptance_rate.size == 0 and table.method == "iso"


def test_direct_is_uniform_and_max_pairs_keeps_the_heaviest():
    got = one.direct_pairs([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(got.weight, np.full(6, 1 / 6))
    np.testing.assert_array_equal(got.log_weight_base, np.zeros(6))

    capped = one.direct_pairs([0.0, 1.0, 2.0, 3.0], max_pairs=2, rng=np.random.default_rng(0))
    np.testing.assert_allclose(capped.weight, [0.5, 0.5])

    rewards = [0.0, 1.0, 2.0, 3.0]
    full = one.iso_pairs(rewards, 1.0)
    top = one.iso_pairs(rewards, 1.0, max_pairs=3, rng=np.random.default_rng(0))
    heaviest = set(_pairs(full.chosen[np.argsort(full.weight)[-3:]], full.rejected[np.argsort(full.weight)[-3:]]))
    assert set(_pairs(top.chosen, top.rejected)) == heaviest
    kept = np.array([full.log_weight_base[i] for i in np.argsort(full.weight)[-3:]])
    np.testing.assert_allclose(np.sort(top.weight), np.sort(np.exp(kept) / np.exp(kept).sum()), rtol=1e-12)


def test_pair_weight_ess():
    ids, ess = pr.pair_weight_ess(["a", "a", "b", "c", "c", "c", "c"], [0.5, 0.5, 1.0, 0.7, 0.1, 0.1, 0.1])
    assert list(ids) == ["a", "b", "c"]
    np.testing.assert_allclose(ess, [2.0, 1.0, 1.0 / (0.49 + 0.03)])


# --------------------------------------------------------------------------
# Rejection sampling
# --------------------------------------------------------------------------

POOL_PI = np.array([0.2, 0.3, 0.25, 0.05, 0.2])
POOL_REWARD = np.array([0.0, 0.4, 0.8, 1.2, 1.6])  # the top outcome has pi = 0.2, so K=60 draws almost surely hold it
POOL_BETA = 0.5


def _tilted():
    t = POOL_PI * np.exp(POOL_REWARD / POOL_BETA)
    return t / t.sum()


def test_rso_accepts_from_the_tilted_distribution():
    rng = np.random.default_rng(12)
    runs, k = 20_000, 60
    draws = rng.choice(POOL_PI.size, size=(runs, k), p=POOL_PI)
    counts = np.zeros(POOL_PI.size)
    for y in draws:
        result = one.rso_accept(POOL_REWARD[y], POOL_BETA, 1, rng)
        counts[y[result.accepted[0]]] += 1
    assert stats.chisquare(counts, runs * _tilted()).pvalue > 0.001


def test_rso_with_a_proposal_ratio_targets_pi():
    rng = np.random.default_rng(13)
    runs, k = 10_000, 60
    q = np.full(POOL_PI.size, 1.0 / POOL_PI.size)
    draws = rng.choice(POOL_PI.size, size=(runs, k), p=q)
    log_ratio = np.log(POOL_PI) - np.log(q)
    counts = np.zeros(POOL_PI.size)
    for y in draws:
        result = one.rso_accept(POOL_REWARD[y], POOL_BETA, 1, rng, log_pi_ratio=log_ratio[y])
        counts[y[result.accepted[0]]] += 1
    assert stats.chisquare(counts, runs * _tilted()).pvalue > 0.001


def test_rso_ends_when_candidates_run_out():
    rewards = np.array([3.0, 1.0, 4.0, 0.0, 2.0])
    # tiny beta: each pass accepts only its best candidate, so acceptance goes
    # by descending reward and passes test 5 + 4 + 3 + 2 + 1 candidates
    result = one.rso_accept(rewards, 1e-3, 10, np.random.default_rng(0))
    assert result.accepted.tolist() == [2, 0, 4, 1, 3]
    assert result.n_examined == 15
    assert result.acceptance_rate == pytest.approx(5 / 15)
    # huge beta: everything is accepted in the first pass
    result = one.rso_accept(rewards, 1e9, 10, np.random.default_rng(0))
    assert sorted(result.accepted.tolist()) == [0, 1, 2, 3, 4] and result.acceptance_rate == 1.0
    result = one.rso_accept(rewards, 1e-3, 2, np.random.default_rng(0))
    assert result.accepted.tolist() == [2, 0]


def test_rso_pairs_and_grouped_acceptance_rates():
    rng = np.random.default_rng(4)
    got = one.rso_pairs(np.arange(10.0), 1.0, 4, "first-round", rng)
    assert len(got.chosen) == 2 and 0.0 < got.acceptance_rate <= 1.0
    np.testing.assert_allclose(got.weight, [0.5, 0.5])

    ids = np.repeat(["a", "b", "c"], 8)
    rewards = np.concatenate([np.arange(8.0), np.zeros(8), np.arange(8.0)])
    table = pr.weight_pairs(
        ids, np.tile(np.arange(8), 3), rewards, method="rso", beta=100.0, num_accept=8, pairing="tournament", rng=rng
    )
    assert list(table.dropped_prompt_ids) == ["b"]
    np.testing.assert_allclose(table.acceptance_rate, [1.0, 1.0, 1.0])  # beta 100: all accepted in one pass
    assert np.count_nonzero(table.prompt_id == "a") == 7
    np.testing.assert_allclose(table.weight, np.full(14, 1 / 7))

    single = pr.weight_pairs(ids, np.tile(np.arange(8), 3), rewards, method="rso", beta=1.0, num_accept=1, rng=rng)
    assert single.weight.size == 0 and list(single.dropped_prompt_ids) == ["a", "b", "c"]


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, -0.5, math.nan, None])
def test_bad_gamma(gamma):
    with pytest.raises(IswtError, match="gamma"):
        pr.weight_pairs(["a", "a"], [0, 1], [0.0, 1.0], method="iso", gamma=gamma)


@pytest.mark.parametrize("beta", [0.0, -1.0, math.inf])
def test_bad_beta(beta):
    with pytest.raises(IswtError, match="beta"):
        pr.weight_pairs(
            ["a", "a"], [0, 1], [0.0, 1.0], method="rso", beta=beta, num_accept=1, rng=np.random.default_rng(0)
        )


def test_bad_rewards_keys_and_options():
    with pytest.raises(IswtError, match="reward contains NaN"):
        pr.weight_pairs(["a", "a"], [0, 1], [0.0, math.nan], method="direct")
    with pytest.raises(IswtError, match="duplicate"):
        pr.weight_pairs(["a", "a", "a"], [0, 1, 1], [0.0, 1.0, 2.0], method="direct")
    with pytest.raises(IswtError, match="'b' has 1 sample"):
        pr.weight_pairs(["a", "a", "b"], [0, 1, 0], [0.0, 1.0, 2.0], method="direct")
    with pytest.raises(IswtError, match="method"):
        pr.weight_pairs(["a", "a"], [0, 1], [0.0, 1.0], method="best")
    with pytest.raises(IswtError, match="pairing"):
        pr.weight_pairs(["a", "a"], [0, 1], [0.0, 1.0], method="direct", pairing="swiss")
    with pytest.raises(IswtError, match="rng"):
        pr.weight_pairs(["a", "a"], [0, 1], [0.0, 1.0], method="direct", pairing="tournament")
    with pytest.raises(IswtError, match="num_accept"):
        pr.weight_pairs(
            ["a", "a"], [0, 1], [0.0, 1.0], method="rso", beta=1.0, num_accept=0, rng=np.random.default_rng(0)
        )
