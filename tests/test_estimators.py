"""Known-answer tests for the log Z estimator and its diagnostics."""

import math

import numpy as np
import pytest
from scipy import stats

from examples import log_z_sequences
from iswcli import estimators as est
from iswcli.errors import IswtError
from tests import per_prompt as one

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
    assert one.log_z_hat(est.log_weights(None, None, reward, beta)) == pytest.approx(expected, rel=1e-12)

    p, n_groups = 0.3, 5000
    rewards = (np.random.default_rng(7).random((n_groups, k)) < p).astype(float)
    table = est.estimate_groups(np.repeat(np.arange(n_groups), k), est.log_weights(None, None, rewards.ravel(), beta))
    z_exact = 1.0 + math.expm1(beta) * p
    ratio = np.exp(table.log_z) / z_exact
    assert abs(ratio.mean() - 1.0) < 3 * ratio.std(ddof=1) / math.sqrt(n_groups)


def test_large_rewards_and_beta_stay_finite():
    lw = est.log_weights(None, None, np.full(8, 100.0), 50.0)
    e = one.estimate(lw, all_equal_rewards=True)
    assert e.log_z == 5000.0
    assert e.ess == pytest.approx(8.0)
    assert e.log_z_se == pytest.approx(0.0, abs=1e-6)
    assert e.flags == ("all_equal_rewards",)

    lw = est.log_weights(None, None, np.array([100.0, 0.0]), 50.0)
    assert one.log_z_hat(lw) == pytest.approx(5000.0 - math.log(2.0))
    assert one.kish_ess(lw) == pytest.approx(1.0)
    assert one.max_weight_share(lw) == pytest.approx(1.0)


# --------------------------------------------------------------------------
# Diagnostics by hand
# --------------------------------------------------------------------------


def test_weights_ess_share_and_se_by_hand():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    for offset in (0.0, 1000.0):  # shifting log-weights must not change anything but log Z
        lw = np.log(w) + offset
        assert one.kish_ess(lw) == pytest.approx(100.0 / 30.0, rel=1e-12)  # (sum w)^2 / sum w^2
        assert one.max_weight_share(lw) == pytest.approx(0.4, rel=1e-12)
        assert one.log_z_hat(lw) == pytest.approx(math.log(2.5) + offset, rel=1e-12)
        # sample sd of w is sqrt(5/3); se(mean) = sd / 2; divided by the mean 2.5
        assert one.log_z_standard_error(lw) == pytest.approx(math.sqrt(5.0 / 3.0) / 2.0 / 2.5, rel=1e-12)

    e = one.estimate(np.log(np.array([1.0, 1.0, 98.0])))
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
    first = one.bootstrap_log_z_interval(lw, 500, np.random.default_rng(11))
    again = one.bootstrap_log_z_interval(lw, 500, np.random.default_rng(11))
    assert first == again
    assert first[0] < one.log_z_hat(lw) < first[1]


def test_no_bootstrap_gives_the_delta_method_interval():
    e = one.estimate(np.array([0.0, 1.0, 2.0]))
    half = 1.959963984540054 * e.log_z_se
    assert (e.log_z_lo, e.log_z_hi) == pytest.approx((e.log_z - half, e.log_z + half), rel=1e-12)


def test_unseen_rewards_widen_the_interval_by_hand():
    # Two prompts of K = 8, beta 2: "a" earned 0 eight times, "b" earned 0, 1 and 2 (the bounds are 0 and 2).
    beta, k = 2.0, 8
    rewards = np.array([0.0] * k + [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0])
    groups = np.repeat(["a", "b"], k)
    plain = est.estimate_groups(groups, beta * rewards, rewards=rewards)
    table = est.estimate_groups(groups, beta * rewards, rewards=rewards, reward_bounds=(0.0, 2.0), beta=beta)
    p = 1.0 - 0.025 ** (1.0 / k)  # zero hits in 8 draws: at most this share missed, at 97.5% one-sided
    assert est.unseen_mass_bound(k, 0.95) == pytest.approx(p, rel=1e-12)
    # "a": log Z_hat = 0 with se 0; the missed share could have earned 2: Z <= (1 - p) + p e^{2 * 2}
    assert table.log_z_lo[0] == pytest.approx(0.0, abs=1e-7)  # the se of equal weights is 0 up to rounding
    assert table.log_z_hi[0] == pytest.approx(math.log(1.0 - p + p * math.exp(4.0)), abs=1e-7)
    assert plain.log_z_hi[0] - plain.log_z_lo[0] < 1e-7  # what collapsed before
    # "b" saw 0, 1 and 2: the missed share could still be all weight e^{2 * 2} (its top) or all e^0 (its bottom)
    lo, hi = plain.log_z_lo[1], plain.log_z_hi[1]
    assert table.log_z_hi[1] == pytest.approx(math.log((1 - p) * math.exp(hi) + p * math.exp(4.0)), rel=1e-12)
    assert table.log_z_lo[1] == pytest.approx(min(lo, math.log((1 - p) * math.exp(lo) + p)), rel=1e-12)

    # all equal at the top reward: only the lower end moves, toward (1 - p) e^{4} + p e^{0}
    top = est.estimate_groups(
        np.zeros(k, int), np.full(k, 4.0), rewards=np.full(k, 2.0), reward_bounds=(0.0, 2.0), beta=beta
    )
    assert top.log_z_lo[0] == pytest.approx(math.log((1.0 - p) * math.exp(4.0) + p), abs=1e-7)
    assert top.log_z_hi[0] == pytest.approx(4.0, abs=1e-7)


def test_interval_covers_exact_log_z_of_an_enumerable_distribution():
    """An answer-set prompt in miniature: "anything else" (r 0) has 3/4 of pi_ref, two answers earn 1 and 2.

    q = pi_ref, so lw = beta * r and Z is exact. At K = 8 a tenth of the
    draws see "anything else" only: without the widening their interval has
    zero width and coverage falls short of 95%.
    """
    p_ref = np.array([0.75, 0.15, 0.10])
    reward = np.array([0.0, 1.0, 2.0])
    beta, k, reps = 2.0, 8, 4000
    exact = math.log(float(np.sum(p_ref * np.exp(beta * reward))))
    drawn = reward[np.random.default_rng(3).choice(3, size=(reps, k), p=p_ref)].ravel()
    groups = np.repeat(np.arange(reps), k)
    plain = est.estimate_groups(groups, beta * drawn, rewards=drawn)
    widened = est.estimate_groups(groups, beta * drawn, rewards=drawn, reward_bounds=(0.0, 2.0), beta=beta)
    covers = lambda t: np.mean((t.log_z_lo <= exact) & (exact <= t.log_z_hi))
    all_equal = np.array(["all_equal_rewards" in f for f in widened.flags])
    assert all_equal.mean() == pytest.approx(0.75**8, abs=0.02)
    assert covers(plain) < 0.9
    assert covers(widened) >= 0.93
    assert np.all(widened.log_z_hi - widened.log_z_lo > 0.5)
    n = 800 * k  # the bootstrap interval is widened the same way
    boot = est.estimate_groups(
        groups[:n],
        beta * drawn[:n],
        rewards=drawn[:n],
        reward_bounds=(0.0, 2.0),
        beta=beta,
        n_boot=200,
        rng=np.random.default_rng(4),
    )
    assert covers(boot) >= 0.92


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
    khat, note = one.pareto_khat(np.log(draws[0]))
    assert khat == pytest.approx(table.khat[0], rel=1e-12) and note == ""


@pytest.mark.parametrize("k", [5, 19, 20])
def test_khat_is_nan_with_a_reason_for_small_k(k):
    khat, note = one.pareto_khat(np.random.default_rng(0).normal(size=k))
    assert math.isnan(khat)
    assert f"K={k}" in note
    e = one.estimate(np.random.default_rng(0).normal(size=k))
    assert math.isnan(e.khat) and e.khat_note == note and "high_khat" not in e.flags


def test_khat_is_nan_when_tail_values_repeat():
    lw = np.concatenate([np.zeros(80), np.full(20, 2.0)])  # binary rewards, log-ratio 0
    khat, note = one.pareto_khat(lw)
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
    e = one.estimate(heavy)
    assert e.khat > est.khat_threshold(1000)
    assert e.flags == ("low_ess", "high_khat")

    spread = one.estimate(np.linspace(0.0, 0.1, 50))
    assert spread.flags == ()
    dominated = one.estimate(np.array([50.0, 0.0, 0.0, 0.0]), low_ess_frac=0.3)
    assert dominated.flags == ("low_ess",)


def test_groups_match_single_group_results_in_any_row_order():
    rng = np.random.default_rng(9)
    ids = np.array(["b"] * 30 + ["a"] * 5 + ["c"] * 25)
    lw = rng.normal(size=ids.size) * 2
    rewards = np.where(ids == "a", 1.0, rng.random(ids.size))
    perm = rng.permutation(ids.size)
    log_ratio = rng.normal(size=ids.size)
    table = est.estimate_groups(ids[perm], lw[perm], log_ratio=log_ratio[perm], rewards=rewards[perm])
    assert list(table.group_id) == ["a", "b", "c"]
    for i, gid in enumerate(table.group_id):
        single = one.estimate(lw[ids == gid], all_equal_rewards=(gid == "a"), log_ratio=log_ratio[ids == gid])
        assert table.log_z[i] == pytest.approx(single.log_z, rel=1e-12)
        assert table.ess[i] == pytest.approx(single.ess, rel=1e-12)
        assert table.log_z_se[i] == pytest.approx(single.log_z_se, rel=1e-12)
        assert table.log_mean_ratio[i] == pytest.approx(single.log_mean_ratio, rel=1e-12)
        np.testing.assert_equal(table.ratio_khat[i], single.ratio_khat)
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
        one.log_z_hat(np.array([0.0, math.nan]))
    with pytest.raises(IswtError, match="at least 2"):
        one.estimate(np.array([0.0]))
    with pytest.raises(IswtError, match="'x' has 1 sample"):
        est.estimate_groups(np.array(["x", "y", "y"]), np.zeros(3))
    with pytest.raises(IswtError, match="rng"):
        one.estimate(np.zeros(5), n_boot=10)


# --------------------------------------------------------------------------
# A proposal that is not the reference: self-normalized against plain IS
# --------------------------------------------------------------------------


def _from_q(n_groups, k, seed, estimator, **options):
    """The mismatched 30-outcome prompt above, estimated with its log-ratios given (as estimate-z does)."""
    y = np.random.default_rng(seed).choice(N_OUTCOMES, size=(n_groups, k), p=Q)
    ratio = (np.log(PI_REF) - np.log(Q))[y].ravel()
    lw = est.log_weights(np.log(PI_REF)[y].ravel(), np.log(Q)[y].ravel(), REWARD[y].ravel(), BETA)
    groups = np.repeat(np.arange(n_groups), k)
    return est.estimate_groups(groups, lw, log_ratio=ratio, estimator=estimator, **options)


def test_plain_minus_self_normalized_is_the_log_mean_ratio():
    snis, plain = _from_q(50, 16, 1, "snis"), _from_q(50, 16, 1, "is")
    np.testing.assert_allclose(plain.log_z, snis.log_z_is, rtol=0, atol=1e-12)
    np.testing.assert_allclose(plain.log_z - snis.log_z, snis.log_mean_ratio, rtol=0, atol=1e-12)
    # by hand: ratios 1/2 and 2, rewards 0 and 1, beta 1: mean ratio 5/4; IS (1/2 + 2e)/2; SNIS (1/2 + 2e)/(5/2)
    lr = np.log([0.5, 2.0])
    e = one.estimate(lr + np.array([0.0, 1.0]), log_ratio=lr)
    assert e.log_mean_ratio == pytest.approx(math.log(1.25), rel=1e-12)
    assert e.log_z_is == pytest.approx(math.log((0.5 + 2 * math.e) / 2), rel=1e-12)
    assert e.log_z == pytest.approx(math.log((0.5 + 2 * math.e) / 2.5), rel=1e-12)


def test_equal_ratios_make_both_estimators_the_same_numbers():
    lw = np.random.default_rng(3).normal(size=40)
    for log_ratio in (None, np.full(40, -7.0)):  # any constant log-ratio cancels in the self-normalized one
        snis = one.estimate(lw + (0.0 if log_ratio is None else log_ratio), log_ratio=log_ratio, estimator="snis")
        plain = one.estimate(lw, estimator="is")
        assert snis.log_z == pytest.approx(plain.log_z, rel=1e-12)
        assert snis.log_z_se == pytest.approx(plain.log_z_se, rel=1e-9)
        assert snis.ess == pytest.approx(plain.ess, rel=1e-12)


def test_self_normalized_estimate_converges_and_its_se_matches_its_spread():
    table = _from_q(100, 2048, 2, "snis")
    assert abs(table.log_z.mean() - LOG_Z) < 3 * table.log_z.std(ddof=1) / math.sqrt(table.log_z.size)
    spread = _from_q(400, 256, 3, "snis")
    assert spread.log_z_se.mean() == pytest.approx(spread.log_z.std(ddof=1), rel=0.2)
    boot = _from_q(200, 256, 5, "snis", n_boot=200, rng=np.random.default_rng(6))
    assert ((boot.log_z_lo <= LOG_Z) & (LOG_Z <= boot.log_z_hi)).mean() >= 0.85


@pytest.mark.parametrize("length", [100, 400])
def test_long_tempered_sequences_break_plain_is_and_are_flagged(length):
    """The issue's failure, exactly: plain IS falls below beta * min r; the self-normalized estimate cannot.

    Sequences of binary tokens from the reference at temperature 0.7, with an exact Z
    (examples/log_z_sequences.py): the log-ratio sums a term per token, as over a reasoning trace.
    """
    beta, k = 1.0, 32
    groups, log_ratio, reward, log_z = log_z_sequences.sequences(length, k, 300, beta, 0.7, seed=length)
    lw = log_ratio + beta * reward
    options = dict(log_ratio=log_ratio, rewards=reward, reward_bounds=(0.0, 1.0), beta=beta)
    plain = est.estimate_groups(groups, lw, estimator="is", **options)
    snis = est.estimate_groups(groups, lw, estimator="snis", n_boot=200, rng=np.random.default_rng(0), **options)
    bit = {name: 1 << i for i, name in enumerate(est.FLAG_NAMES)}

    assert np.all((snis.log_z >= -1e-9) & (snis.log_z <= beta + 1e-9))
    below = plain.log_z < 0.0
    assert below.mean() > 0.4  # plain estimates break a bound no Z can break ...
    assert np.all(plain.flag_bits[below] & bit["outside_reward_bounds"])  # ... and each says so
    assert not np.any(snis.flag_bits & bit["outside_reward_bounds"])
    # the weight-mass flag marks every plain estimate off by more than 0.5 nats for want of mass
    bad_plain = np.abs(plain.log_z - log_z) > 0.5 + np.abs(snis.log_z - log_z)
    assert np.all(plain.flag_bits[bad_plain] & bit["weight_mass_off"])
    assert np.median(np.abs(snis.log_z - log_z)) < np.median(np.abs(plain.log_z - log_z)) / 2
    covered = (snis.log_z_lo <= log_z) & (log_z <= snis.log_z_hi)
    assert covered.mean() >= 0.8  # the interval spans the share of pi_ref the samples did not reach
    if length == 400:  # where the proposal never reaches pi_ref's typical set, every miss is flagged
        assert np.all(snis.flag_bits[~covered] & bit["weight_mass_off"])


def test_a_truncated_proposal_shows_the_share_it_covers_in_the_mean_ratio():
    """q = pi_ref cut to its 10 likeliest outcomes and renormalized: E_q[pi_ref/q] = pi_ref(those 10)."""
    keep = np.argsort(PI_REF)[-10:]
    q = np.zeros(N_OUTCOMES)
    q[keep] = PI_REF[keep] / PI_REF[keep].sum()
    y = np.random.default_rng(8).choice(N_OUTCOMES, size=(200, 64), p=q)
    ratio = (np.log(PI_REF) - np.log(np.where(q > 0, q, 1.0)))[y].ravel()
    table = est.estimate_groups(
        np.repeat(np.arange(200), 64), ratio + BETA * REWARD[y].ravel(), log_ratio=ratio, weight_mass_nats=0.5
    )
    covered = PI_REF[keep].sum()
    np.testing.assert_allclose(table.log_mean_ratio, math.log(covered), rtol=1e-9)  # every ratio is that share
    assert (math.log(covered) < -0.5) == bool(table.flag_bits[0] & (1 << est.FLAG_NAMES.index("weight_mass_off")))


def test_unknown_estimator_and_misshapen_log_ratios_are_refused():
    with pytest.raises(IswtError, match="estimator 'mean'"):
        est.estimate_groups(np.zeros(4), np.zeros(4), estimator="mean")
    with pytest.raises(IswtError, match="one value per sample"):
        est.estimate_groups(np.zeros(4), np.zeros(4), log_ratio=np.zeros(3))
    with pytest.raises(IswtError, match="log-ratios contains NaN"):
        est.estimate_groups(np.zeros(4), np.zeros(4), log_ratio=np.array([0.0, np.nan, 0.0, 0.0]))


def test_control_variate_estimate_by_hand():
    """Z_hat = mean(rho f) - c (mean(rho) - 1), c = Cov(rho f, rho) / Var(rho), cut to the reward bounds."""
    rho, reward, beta = np.array([0.5, 2.0, 1.0, 0.25]), np.array([0.0, 1.0, 0.0, 1.0]), 1.0
    g = rho * np.exp(beta * reward)
    c = np.sum((rho - rho.mean()) * (g - g.mean())) / np.sum((rho - rho.mean()) ** 2)
    expected = g.mean() - c * (rho.mean() - 1.0)
    assert 1.0 < expected < math.e  # inside the bounds here, so nothing is cut
    lr = np.log(rho)
    e = one.estimate(lr + beta * reward, log_ratio=lr, estimator="cv")
    assert e.log_z == pytest.approx(math.log(expected), rel=1e-12)
    residual = g - c * rho
    assert e.log_z_se == pytest.approx(residual.std(ddof=1) / 2.0 / expected, rel=1e-12)
    # equal ratios: the mean of e^{beta r}, the plain estimate
    flat = one.estimate(beta * reward, log_ratio=np.zeros(4), estimator="cv")
    assert flat.log_z == pytest.approx(math.log(np.exp(beta * reward).mean()), rel=1e-12)


def test_control_variate_converges_and_stays_within_the_bounds():
    table = _from_q(100, 2048, 2, "cv")
    assert abs(table.log_z.mean() - LOG_Z) < 3 * table.log_z.std(ddof=1) / math.sqrt(table.log_z.size)
    groups, log_ratio, reward, _ = log_z_sequences.sequences(400, 8, 300, 1.0, 0.5, seed=1)
    cut = est.estimate_groups(
        groups, log_ratio + reward, log_ratio=log_ratio, estimator="cv", rewards=reward, reward_bounds=(0, 1), beta=1
    )
    assert np.all((cut.log_z >= -1e-12) & (cut.log_z <= 1 + 1e-12))
