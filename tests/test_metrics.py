"""Known-answer tests for the evaluation metrics."""

import itertools
import math

import numpy as np
import pytest

from iswcli import metrics as m
from iswcli.errors import IswtError

# --------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------


def _pass_brute_force(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration_of_all_subsets():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert m.pass_at_k(n, c, k) == pytest.approx(_pass_brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_arrays_per_prompt():
    n = np.array([8, 8, 5, 5, 3])
    c = np.array([0, 8, 2, 1, 1])
    got = m.pass_at_k(n, c, 2)
    want = [_pass_brute_force(ni, ci, 2) for ni, ci in zip(n, c)]
    assert isinstance(got, np.ndarray) and got.shape == (5,)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert isinstance(m.pass_at_k(5, 2, 2), float)
    # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert m.pass_at_k(5, 2, 2) == pytest.approx(0.7)


def test_pass_at_k_is_stable_for_large_n():
    # 1 - C(n-c, k)/C(n, k) with n = 1000: the binomials alone overflow float64.
    assert m.pass_at_k(1000, 1, 1) == pytest.approx(1e-3, rel=1e-12)
    assert m.pass_at_k(1000, 0, 512) == 0.0
    assert m.pass_at_k(1000, 489, 512) == 1.0  # n - c < k: every subset holds a correct one
    assert 0.0 < m.pass_at_k(1000, 1, 512) < 1.0


@pytest.mark.parametrize("n, c, k", [(4, 1, 5), ([8, 3], [1, 1], 4)])
def test_pass_at_k_refuses_k_above_n(n, c, k):
    with pytest.raises(IswtError, match="only k <= n"):
        m.pass_at_k(n, c, k)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4.5, 1, 1), (0, 0, 1)])
def test_pass_at_k_refuses_bad_counts(n, c, k):
    with pytest.raises(IswtError):
        m.pass_at_k(n, c, k)


def test_ks_up_to_ends_with_n():
    assert m.ks_up_to(1) == [1]
    assert m.ks_up_to(2) == [1, 2]
    assert m.ks_up_to(8) == [1, 2, 4, 8]
    assert m.ks_up_to(10) == [1, 2, 4, 8, 10]
    with pytest.raises(IswtError):
        m.ks_up_to(0)


# --------------------------------------------------------------------------
# Mean@k, maj@k, win rate
# --------------------------------------------------------------------------


def test_mean_at_k_by_hand():
    correct = [[1, 0, 1, 1], [0, 0, 0, 0], [True, True, False, False]]
    np.testing.assert_allclose(m.mean_at_k_per_prompt(correct), [0.75, 0.0, 0.5])
    assert m.mean_at_k(correct) == pytest.approx((0.75 + 0.0 + 0.5) / 3)


def test_mean_at_k_refuses_ragged_or_non_binary():
    with pytest.raises(IswtError):
        m.mean_at_k([[1, 0], [1]])
    with pytest.raises(IswtError):
        m.mean_at_k([[1, 0.5]])


ANSWERS = [
    ["4", "5", "4", "5", "4"],  # majority "4", correct
    ["7", "8", "8", None, None],  # majority "8" (None never votes), wrong
    ["1", "2", "2", "1"],  # tie 2-2; "1" seen first is wrong, "2" is right
    [None, None, None],  # nothing extracted: wrong
]
CORRECT = [[1, 0, 1, 0, 1], [1, 0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0]]


def test_maj_at_k_by_hand():
    np.testing.assert_allclose(m.maj_at_k_per_prompt(ANSWERS, CORRECT), [1, 0, 0, 0])
    assert m.maj_at_k(ANSWERS, CORRECT) == pytest.approx(0.25)
    # fractional ties: prompt 3 scores 1/2
    np.testing.assert_allclose(m.maj_at_k_per_prompt(ANSWERS, CORRECT, ties="fractional"), [1, 0, 0.5, 0])


def test_maj_at_k_uses_the_first_k_samples():
    answers = [["9", "3", "3", "3"]]
    correct = [[0, 1, 1, 1]]
    assert m.maj_at_k(answers, correct, k=1) == 0.0  # only "9" votes
    assert m.maj_at_k(answers, correct, k=3) == 1.0
    # k=2: "9" and "3" tie; first-seen "9" is wrong, fractional gives 1/2
    assert m.maj_at_k(answers, correct, k=2) == 0.0
    assert m.maj_at_k(answers, correct, k=2, ties="fractional") == 0.5


def test_maj_at_k_refuses_bad_input():
    with pytest.raises(IswtError, match="only k <= n"):
        m.maj_at_k([["1", "2"]], [[1, 0]], k=3)
    with pytest.raises(IswtError, match="both correct and incorrect"):
        m.maj_at_k([["1", "1"]], [[1, 0]])
    with pytest.raises(IswtError, match="ties"):
        m.maj_at_k([["1"]], [[1]], ties="random")


def test_win_rate_ties_count_half():
    policy = [1.0, 2.0, 3.0, 4.0]
    baseline = [0.0, 2.0, 5.0, 4.0]  # win, tie, loss, tie
    np.testing.assert_allclose(m.win_rate_per_prompt(policy, baseline), [1, 0.5, 0, 0.5])
    assert m.win_rate(policy, baseline) == 0.5
    assert m.win_rate([1, 1], [1, 1]) == 0.5


def test_win_rate_with_matched_sample_indices():
    policy = [[1.0, 0.0], [2.0, 2.0]]
    baseline = [[0.0, 0.0], [3.0, 1.0]]  # prompt 0: win, tie -> 0.75; prompt 1: loss, win -> 0.5
    np.testing.assert_allclose(m.win_rate_per_prompt(policy, baseline), [0.75, 0.5])
    assert m.win_rate(policy, baseline) == pytest.approx(0.625)


def test_win_rate_refuses_unmatched_or_missing_scores():
    with pytest.raises(IswtError, match="must match"):
        m.win_rate([1, 2, 3], [1, 2])
    with pytest.raises(IswtError, match="NaN"):
        m.win_rate([1, math.nan], [1, 2])


# --------------------------------------------------------------------------
# Bootstrap over prompts
# --------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_mean_and_is_seeded():
    values = np.random.default_rng(0).uniform(size=200)
    ci = m.bootstrap_ci(values, n_boot=1000, seed=7)
    assert ci.estimate == pytest.approx(values.mean())
    assert ci.lo < ci.estimate < ci.hi and ci.n == 200
    # roughly mean +- 1.96 * se for a uniform sample
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert ci.hi - ci.lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert m.bootstrap_ci(values, n_boot=1000, seed=7) == ci
    assert m.bootstrap_ci(values, n_boot=1000, seed=8) != ci
    narrow = m.bootstrap_ci(values, n_boot=1000, seed=7, level=0.5)
    assert ci.lo < narrow.lo < narrow.hi < ci.hi


def test_bootstrap_ci_drops_nan_and_handles_degenerate_input():
    ci = m.bootstrap_ci([1.0, math.nan, 3.0], n_boot=200)
    assert ci.n == 2 and ci.estimate == 2.0 and 1.0 <= ci.lo <= ci.hi <= 3.0
    flat = m.bootstrap_ci([0.4, 0.4, 0.4])
    assert flat.n == 3 and flat.estimate == flat.lo == flat.hi == pytest.approx(0.4)
    empty = m.bootstrap_ci([math.nan])
    assert empty.n == 0 and math.isnan(empty.estimate)
    with pytest.raises(IswtError):
        m.bootstrap_ci([1.0, 2.0], level=1.5)


def test_paired_bootstrap_diff():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=300)
    # a constant shift: every resample has the same difference
    shifted = m.paired_bootstrap_diff(a + 0.1, a, n_boot=500)
    assert shifted.estimate == pytest.approx(0.1)
    assert shifted.lo == pytest.approx(0.1) and shifted.hi == pytest.approx(0.1)
    # a small noisy improvement: the paired interval is far narrower than the runs' own
    b = a + 0.05 + rng.normal(0, 0.02, size=300)
    diff = m.paired_bootstrap_diff(b, a, n_boot=1000, seed=3)
    own = m.bootstrap_ci(a, n_boot=1000, seed=3)
    assert diff.lo > 0 and diff.lo < diff.estimate < diff.hi
    assert (diff.hi - diff.lo) < (own.hi - own.lo) / 5
    assert m.paired_bootstrap_diff(b, a, n_boot=1000, seed=3) == diff
    with pytest.raises(IswtError, match="same prompts"):
        m.paired_bootstrap_diff([1, 2, 3], [1, 2])
