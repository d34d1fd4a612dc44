"""Known-answer tests for the log Z estimator and its diagnostics."""

import math

import numpy as np
import pytest
from scipy import stats

from iswcli import estimators as est
from iswcli.errors import IswtError

# A synthetic prompt: pi_ref and a mismatched proposal q over 30 outcomes with
# fixed rewards, so Z = sum_y pi_ref(y) exp(beta r(y)) is known exactly.
N_OUTCOMES = 30
_setup = np.random.default_rng(2024)
PI_REF = _setup.dirichlet(np.ones(N_OUTCOMES))
Q = 0.5 * _setup.dirichlet(np.ones(N_OUTCOMES)) + 0.5 / N_OUTCOMES
REWARD = _setup.uniform(0.0, 1.0, N_OUTCOMES)
BETA = 2.0
LOG_Z = math.log(float(np.sum(PI_REF * np.exp(BETA * REWARD))))


def _estimate_from_q(n_groups, k, seed, **options):
    """Draw n_groups prompts' worth of K samples from q and estimate log Z for each."""
    y = np.random.default_rng(seed).choice(N_OUTCOMES, size=(n_groups, k), p=Q)
    lw = est.log_weights(np.log(PI_REF)[y].ravel(), np.log(Q)[y].ravel(), REWARD[y].ravel(), BETA)
    return est.estimate_groups(np.repeat(np.arange(n_groups), k), lw, **options)


# --------------------------------------------------------------------------
# log Z against exact answers
# --------------------------------------------------------------------------


def test_z_hat_is_unbiased_for_exact_z():
    table = _estimate_from_q(4000, 16, seed=1)
    ratio = np.exp(table.log_z - LOG_Z)  # Z_hat / Z, from log space
    se = ratio.std(ddof=1) / math.sqrt(ratio.size)
    assert abs(ratio.mean() - 1.0) < 3 * se


def test_log_z_hat_is_biased_low_for_small_k():
    table = _estimate_from_q(4000, 16, seed=1)
    se = table.log_z.std(ddof=1) / math.sqrt(table.log_z.size)
    assert table.log_z.mean() < LOG_Z - 3 * se


def test_log_z_hat_converges_at_large_k():
    table = _estimate_from_q(100, 2048, seed=2)
    se = table.log_z.std(ddof=1) / math.sqrt(table.log_z.size)
    assert abs(table.log_z.mean() - LOG_Z) < 3 * se


def test_binary_rewards_match_closed_form():
    beta, k = 3.0, 40
    reward = np.array([1.0] * 13 + [0.0] * 27)
    expected = math.log(1.0 + math.expm1(beta) * 13 / k)
    assert est.log_z_hat(est.log_weights(None, None, reward, beta)) == pytest.approx(expected, rel=1e-12)

    p, n_groups = 0.3, 5000
    rewards = (np.random.default_rng(7).random((n_groups, k)) < p).astype(float)
    table = est.estimate_groups(np.repeat(np.arange(n_groups), k), est.log_weights(None, None, rewards.ravel(), beta))
    z_exact = 1.0 + math.expm1(beta) * p
    ratio = np.exp(table.log_z) / z_exact
    assert abs(ratio.mean() - 1.0) < 3 * ratio.std(ddof=1) / math.sqrt(n_groups)


def test_large_rewards_and_beta_stay_finite():
    lw = est.log_weights(None, None, np.full(8, 100.0), 50.0)
    e = est.estimate_group(lw, all_equal_rewards=True)
    assert e.log_z == 5000.0
    assert e.ess == pytest.approx(8.0)
    assert e.log_z_se == pytest.approx(0.0, abs=1e-6)
    assert e.flags == ("all_equal_rewards",)

    lw = est.log_weights(None, None, np.array([100.0, 0.0]), 50.0)
    assert est.log_z_hat(lw) == pytest.approx(5000.0 - math.log(2.0))
    assert est.kish_ess(lw) == pytest.approx(1.0)
    assert est.max_weight_share(lw) == pytest.approx(1.0)


# --------------------------------------------------------------------------
# Diagnostics by hand
# --------------------------------------------------------------------------


def test_weights_ess_share_and_se_by_hand():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    for offset in (0.0, 1000.0):  # shifting log-weights must not change anything but log Z
        lw = np.log(w) + offset
        np.testing.assert_allclose(est.normalized_weights(lw), [0.1, 0.2, 0.3, 0.4], rtol=1e-12)
        assert est.kish_ess(lw) == pytest.approx(100.0 / 30.0, rel=1e-12)  # (sum w)^2 / sum w^2
        assert est.max_weight_share(lw) == pytest.approx(0.4, rel=1e-12)
        assert est.log_z_hat(lw) == pytest.approx(math.log(2.5) + offset, rel=1e-12)
        # sample sd of w is sqrt(5/3); se(mean) = sd / 2; divided by the mean 2.5
        assert est.log_z_standard_error(lw) == pytest.approx(math.sqrt(5.0 / 3.0) / 2.0 / 2.5, rel=1e-12)

    e = est.estimate_group(np.log(np.array([1.0, 1.0, 98.0])))
    assert e.ess == pytest.approx(100.0**2 / (1 + 1 + 98.0**2))
    assert e.ess_frac == pytest.approx(e.ess / 3)
    assert e.max_weight_share == pytest.approx(0.98)


def test_delta_method_se_matches_spread_across_seeds():
    table = _estimate_from_q(400, 256, seed=3)
    assert table.log_z_se.mean() == pytest.approx(table.log_z.std(ddof=1), rel=0.2)


def test_bootstrap_interval_covers_truth_and_is_seeded():
    table = _estimate_from_q(200, 256, seed=5, n_boot=200, rng=np.random.default_rng(6))
    covered = (table.log_z_lo <= LOG_Z) & (LOG_Z <= table.log_z_hi)
    assert covered.mean() >= 0.85
    assert np.all(table.log_z_lo < table.log_z_hi)

    lw = np.random.default_rng(0).normal(size=50)
    first = est.bootstrap_log_z_interval(lw, 500, np.random.default_rng(11))
    again = est.bootstrap_log_z_interval(lw, 500, np.random.default_rng(11))
    assert first == again
    assert first[0] < est.log_z_hat(lw) < first[1]


def test_no_bootstrap_gives_nan_interval():
    e = est.estimate_group(np.array([0.0, 1.0, 2.0]))
    assert math.isnan(e.log_z_lo) and math.isnan(e.log_z_hi)


# --------------------------------------------------------------------------
# Pareto k-hat
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [0.3, 0.8])
def test_khat_recovers_generalized_pareto_shape(shape):
    # Stated tolerance: the mean over 8 seeded draws of K=20000 weights is
    # within 0.1 of the true shape, and every single draw within 0.25
    # (one draw's k-hat has sd about 0.04-0.06 here).
    k, n_seeds = 20_000, 8
    draws = np.stack(
        [stats.genpareto.rvs(shape, size=k, random_state=np.random.default_rng(seed)) for seed in range(n_seeds)]
    )
    table = est.estimate_groups(np.repeat(np.arange(n_seeds), k), np.log(draws).ravel())
    assert abs(table.khat.mean() - shape) < 0.1
    assert np.all(np.abs(table.khat - shape) < 0.25)
    assert list(table.khat_note) == [""] * n_seeds
    khat, note = est.pareto_khat(np.log(draws[0]))
    assert khat == pytest.approx(table.khat[0], rel=1e-12) and note == ""


@pytest.mark.parametrize("k", [5, 19, 20])
def test_khat_is_nan_with_a_reason_for_small_k(k):
    khat, note = est.pareto_khat(np.random.default_rng(0).normal(size=k))
    assert math.isnan(khat)
    assert f"K={k}" in note
    e = est.estimate_group(np.random.default_rng(0).normal(size=k))
    assert math.isnan(e.khat) and e.khat_note == note and "high_khat" not in e.flags


def test_khat_is_nan_when_tail_values_repeat():
    lw = np.concatenate([np.zeros(80), np.full(20, 2.0)])  # binary rewards, log-ratio 0
    khat, note = est.pareto_khat(lw)
    assert math.isnan(khat)
    assert "distinct" in note


def test_khat_threshold():
    assert est.khat_threshold(100) == pytest.approx(0.5)
    assert est.khat_threshold(1000) == pytest.approx(1.0 - 1.0 / 3.0)
    assert est.khat_threshold(100_000) == 0.7


# --------------------------------------------------------------------------
# Flags, grouping and reward transforms
# --------------------------------------------------------------------------


def test_flags():
    heavy = np.log(stats.genpareto.rvs(1.5, size=1000, random_state=np.random.default_rng(1)))
    e = est.estimate_group(heavy, truncated_proposal=True)
    assert e.khat > est.khat_threshold(1000)
    assert e.flags == ("low_ess", "high_khat", "truncated_proposal")

    spread = est.estimate_group(np.linspace(0.0, 0.1, 50))
    assert spread.flags == ()
    dominated = est.estimate_group(np.array([50.0, 0.0, 0.0, 0.0]), low_ess_frac=0.3)
    assert dominated.flags == ("low_ess",)


def test_groups_match_single_group_results_in_any_row_order():
    rng = np.random.default_rng(9)
    ids = np.array(["b"] * 30 + ["a"] * 5 + ["c"] * 25)
    lw = rng.normal(size=ids.size) * 2
    rewards = np.where(ids == "a", 1.0, rng.random(ids.size))
    perm = rng.permutation(ids.size)
    table = est.estimate_groups(ids[perm], lw[perm], rewards=rewards[perm], truncated_proposal=True)
    assert list(table.group_id) == ["a", "b", "c"]
    for i, gid in enumerate(table.group_id):
        single = est.estimate_group(lw[ids == gid], all_equal_rewards=(gid == "a"), truncated_proposal=True)
        assert table.log_z[i] == pytest.approx(single.log_z, rel=1e-12)
        assert table.ess[i] == pytest.approx(single.ess, rel=1e-12)
        assert table.log_z_se[i] == pytest.approx(single.log_z_se, rel=1e-12)
        assert table.n_samples[i] == single.n_samples
        np.testing.assert_equal(table.khat[i], single.khat)
        assert table.khat_note[i] == single.khat_note
        assert table.flags[i] == single.flags
    assert "all_equal_rewards" in table.flags[0] and "all_equal_rewards" not in table.flags[1]


def test_group_zscore():
    rewards = np.array([1.0, 3.0, 5.0, 5.0, 2.0, 4.0])
    groups = np.array([0, 0, 1, 1, 0, 2])
    z = est.group_zscore(rewards, groups)
    # group 0: mean 2, population sd sqrt(2/3); group 1 constant; group 2 single
    s = math.sqrt(2.0 / 3.0)
    np.testing.assert_allclose(z, [-1 / s, 1 / s, 0.0, 0.0, 0.0, 0.0])


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, math.inf])
def test_bad_beta(beta):
    with pytest.raises(IswtError, match="beta"):
        est.log_weights(None, None, np.ones(3), beta)


def test_nan_reward():
    with pytest.raises(IswtError, match="reward contains NaN"):
        est.log_weights(None, None, np.array([0.0, math.nan]), 1.0)
    with pytest.raises(IswtError, match="NaN"):
        est.group_zscore(np.array([math.nan, 1.0]), np.array([0, 0]))


def test_bad_log_weights_and_groups():
    with pytest.raises(IswtError, match="both"):
        est.log_weights(np.zeros(2), None, np.zeros(2), 1.0)
    with pytest.raises(IswtError, match="one value per sample"):
        est.log_weights(np.zeros(2), np.zeros(3), np.zeros(2), 1.0)
    with pytest.raises(IswtError, match="NaN"):
        est.log_z_hat(np.array([0.0, math.nan]))
    with pytest.raises(IswtError, match="at least 2"):
        est.estimate_group(np.array([0.0]))
    with pytest.raises(IswtError, match="'x' has 1 sample"):
        est.estimate_groups(np.array(["x", "y", "y"]), np.zeros(3))
    with pytest.raises(IswtError, match="rng"):
        est.estimate_group(np.zeros(5), n_boot=10)
