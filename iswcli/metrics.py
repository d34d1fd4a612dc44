"""Accuracy and comparison metrics for `iswt evaluate`: pure numpy functions.

Conventions used throughout:

- A *correctness matrix* is (prompts x k) of 0/1 (or bool), row i holding the
  k samples of prompt i in sample-index order.
- Functions named ``*_per_prompt`` return one value per prompt (for the
  per-prompt table and for bootstrap intervals); their pooled counterpart is
  the plain mean over prompts, so every prompt weighs the same whatever its
  sample count.
- Bad input raises `IswtError` with a one-line message naming the rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np

from iswcli.errors import IswtError

#: Upper bound on elements of one (bootstrap draws x prompts) index array, so
#: memory stays flat however many prompts are evaluated.
_CHUNK_ELEMENTS = 4_000_000
TIE_RULES = ("first", "fractional")


# --------------------------------------------------------------------------
# pass@k, Mean@k
# --------------------------------------------------------------------------


def pass_at_k(n, c, k: int):
    """Unbiased pass@k of Chen et al. (2021): 1 - C(n-c, k) / C(n, k).

    ``n`` samples of which ``c`` are correct; scalars give a float, arrays (one
    entry per prompt, broadcast together) give an array. Computed in the
    product form 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge
    binomials; when n - c < k every k-subset holds a correct sample and the
    value is exactly 1. Only k <= n is defined (the estimator needs k distinct
    samples), so k > n raises rather than silently reporting pass@n.
    """
    n_arr, c_arr = np.broadcast_arrays(_int_array(n, "n"), _int_array(c, "c"))
    k = _positive_int(k, "k")
    if np.any(n_arr < 1):
        raise IswtError(f"pass@k: n must be >= 1 samples per prompt, got {n_arr.min()}")
    if np.any((c_arr < 0) | (c_arr > n_arr)):
        raise IswtError("pass@k: c (correct samples) must lie in 0..n for every prompt")
    if np.any(k > n_arr):
        raise IswtError(f"pass@k: k={k} exceeds the {n_arr.min()} samples available; only k <= n is defined")
    # Few distinct (n, c) pairs occur (c ranges over 0..n), so compute each once.
    pairs, inverse = np.unique(np.stack([n_arr.ravel(), c_arr.ravel()], axis=1), axis=0, return_inverse=True)
    values = np.array([_pass_one(int(ni), int(ci), k) for ni, ci in pairs])
    out = values[inverse.reshape(-1)].reshape(n_arr.shape)
    return float(out) if out.ndim == 0 else out


def _pass_one(n: int, c: int, k: int) -> float:
    """pass@k for one (n, c): the product form, exact 1 when no k-subset can miss."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=float)))


def ks_up_to(n: int) -> list[int]:
    """The k values to report for n samples: 1, 2, 4, ... below n, then n itself.

    n is always included (even when not a power of 2) so the table always ends
    with pass@n, "solved by any sample", the number readers look for.
    """
    n = _positive_int(n, "n")
    ks = [1 << p for p in range(n.bit_length()) if (1 << p) < n]
    return ks + [n]


def mean_at_k_per_prompt(correct) -> np.ndarray:
    """Each prompt's share of correct samples (its row mean)."""
    return _correct_matrix(correct).mean(axis=1)


def mean_at_k(correct) -> float:
    """Mean@k: mean correctness over each prompt's k samples, averaged over prompts.

    With equal k per prompt this equals pass@1 averaged over prompts.
    """
    return float(mean_at_k_per_prompt(correct).mean())


# --------------------------------------------------------------------------
# maj@k
# --------------------------------------------------------------------------


def majority_vote(answers: Sequence[Hashable | None], ties: str = "first") -> dict[Hashable, float]:
    """Vote weights of one prompt's answers: {answer: weight}, weights summing to 1.

    ``None`` (no answer could be extracted) never votes. The most frequent
    answer wins. Ties: ``first`` gives the win to the tied answer seen first
    in sample order (what `collections.Counter.most_common` does, and so what
    the common evaluation harnesses report); ``fractional`` splits the win
    equally among the tied answers, the expected score under a uniformly
    random tie-break and independent of sample order. No votes at all gives {}.
    """
    if ties not in TIE_RULES:
        raise IswtError(f"maj@k: ties must be one of {', '.join(TIE_RULES)}, got {ties!r}")
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return {}
    top = max(counts.values())
    tied = [a for a, count in counts.items() if count == top]  # Counter keeps first-seen order
    if ties == "first":
        return {tied[0]: 1.0}
    return {a: 1.0 / len(tied) for a in tied}


def maj_at_k_per_prompt(answers, correct, k: int | None = None, ties: str = "first") -> np.ndarray:
    """Per prompt: is the majority-voted answer among its first k samples correct?

    ``answers[i][j]`` is the extracted answer of sample j of prompt i (any
    hashable, None when extraction failed) and ``correct[i][j]`` whether that
    sample was scored correct. An answer's correctness is read from the samples
    that gave it, so answers must already be canonical (equal strings for equal
    values); samples with the same answer but different correctness are an
    error. The first k samples (sample-index order) vote; k=None uses all. A
    prompt whose samples all failed extraction scores 0. With ``ties=
    "fractional"`` a prompt can score a fraction (see `majority_vote`).
    """
    if len(answers) != len(correct):
        raise IswtError(f"maj@k: {len(answers)} prompts of answers but {len(correct)} of correctness")
    scores = np.empty(len(answers), dtype=float)
    for i, (row_answers, row_correct) in enumerate(zip(answers, correct)):
        row_answers, row_correct = _first_k(list(row_answers), list(row_correct), k, i)
        truth = _answer_truth(row_answers, row_correct, i)
        votes = majority_vote(row_answers, ties)
        scores[i] = sum(weight * truth[a] for a, weight in votes.items())
    return scores


def maj_at_k(answers, correct, k: int | None = None, ties: str = "first") -> float:
    """maj@k pooled over prompts: the mean of `maj_at_k_per_prompt`."""
    return float(maj_at_k_per_prompt(answers, correct, k, ties).mean())


def _first_k(row_answers: list, row_correct: list, k: int | None, prompt: int) -> tuple[list, list]:
    if len(row_answers) != len(row_correct):
        raise IswtError(
            f"maj@k: prompt {prompt} has {len(row_answers)} answers but {len(row_correct)} correctness flags"
        )
    if k is None:
        return row_answers, row_correct
    k = _positive_int(k, "k")
    if k > len(row_answers):
        raise IswtError(
            f"maj@k: k={k} exceeds the {len(row_answers)} samples of prompt {prompt}; only k <= n is defined"
        )
    return row_answers[:k], row_correct[:k]


def _answer_truth(row_answers: list, row_correct: list, prompt: int) -> dict:
    """{answer: correct?}, refusing an answer scored both right and wrong."""
    truth: dict = {}
    for answer, ok in zip(row_answers, row_correct):
        if answer is None:
            continue
        ok = bool(ok)
        if truth.setdefault(answer, ok) != ok:
            raise IswtError(
                f"maj@k: prompt {prompt} answer {answer!r} is scored both correct and incorrect; canonicalize answers first"
            )
    return truth


# --------------------------------------------------------------------------
# Win rate
# --------------------------------------------------------------------------


def win_rate_per_prompt(policy_rewards, baseline_rewards) -> np.ndarray:
    """Per prompt: share of matched samples where the policy out-scores the baseline.

    Inputs are (prompts,) for one response each, or (prompts x k) where column
    j of both holds sample index j of that prompt (matched indices). A win is
    1, a tie 1/2, a loss 0; with k columns the prompt's value is their mean.
    """
    policy = _finite_array(policy_rewards, "win rate: policy rewards")
    baseline = _finite_array(baseline_rewards, "win rate: baseline rewards")
    if policy.shape != baseline.shape:
        raise IswtError(
            f"win rate: policy rewards {policy.shape} and baseline rewards {baseline.shape} must match sample for sample"
        )
    if policy.ndim not in (1, 2) or policy.size == 0:
        raise IswtError("win rate: rewards must be a non-empty (prompts,) or (prompts x k) array")
    outcome = np.where(policy > baseline, 1.0, np.where(policy == baseline, 0.5, 0.0))
    return outcome if outcome.ndim == 1 else outcome.mean(axis=1)


def win_rate(policy_rewards, baseline_rewards) -> float:
    """Share of prompts where the policy out-scores the baseline, ties counting half."""
    return float(win_rate_per_prompt(policy_rewards, baseline_rewards).mean())


# --------------------------------------------------------------------------
# Bootstrap over prompts
# --------------------------------------------------------------------------


class Interval(NamedTuple):
    """A point estimate with its percentile bootstrap interval; n = prompts used."""

    estimate: float
    lo: float
    hi: float
    n: int


def bootstrap_ci(per_prompt_values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """Mean over prompts with a percentile bootstrap interval, resampling prompts.

    Prompts are the unit of resampling because samples of one prompt are
    correlated. NaN entries (e.g. a diversity score undefined for a prompt)
    are dropped first; nothing left gives an all-NaN interval with n=0. The
    same seed always gives the same interval.
    """
    values = np.asarray(per_prompt_values, dtype=float).ravel()
    values = values[~np.isnan(values)]
    return _bootstrap_mean(values, n_boot, seed, level)


def paired_bootstrap_diff(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """mean(a - b) over prompts with a paired percentile bootstrap interval.

    ``a`` and ``b`` are per-prompt values of two runs on the same prompts in
    the same order; for `evaluate --compare` call it as (run, first run).
    Resampling the per-prompt differences keeps the pairing, so the interval
    is much tighter than two independent intervals would suggest. Prompts where
    either value is NaN are dropped.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise IswtError(f"paired bootstrap: runs have {a.size} and {b.size} prompts; they must cover the same prompts")
    diff = a - b
    return _bootstrap_mean(diff[~np.isnan(diff)], n_boot, seed, level)


def _bootstrap_mean(values: np.ndarray, n_boot: int, seed: int, level: float) -> Interval:
    n_boot = _positive_int(n_boot, "n_boot")
    if not 0.0 < level < 1.0:
        raise IswtError(f"bootstrap: level must lie strictly between 0 and 1, got {level}")
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // values.size)
    means = np.concatenate(
        [
            values[rng.integers(0, values.size, size=(min(rows, n_boot - start), values.size))].mean(axis=1)
            for start in range(0, n_boot, rows)
        ]
    )
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(values.mean()), float(lo), float(hi), int(values.size))


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------


def _int_array(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.any(arr != np.round(arr)):
        raise IswtError(f"pass@k: {name} must be whole numbers")
    return arr.astype(np.int64)


def _positive_int(x, name: str) -> int:
    if isinstance(x, bool) or int(x) != x or x < 1:
        raise IswtError(f"{name} must be a whole number >= 1, got {x!r}")
    return int(x)


def _correct_matrix(correct) -> np.ndarray:
    try:
        arr = np.asarray(correct, dtype=float)
    except ValueError:
        raise IswtError("Mean@k: correctness must be a (prompts x k) matrix with the same k for every prompt") from None
    if arr.ndim != 2 or arr.size == 0:
        raise IswtError(f"Mean@k: correctness must be a non-empty (prompts x k) matrix, got shape {arr.shape}")
    if np.any((arr != 0) & (arr != 1)):
        raise IswtError("Mean@k: correctness values must be 0/1 or booleans")
    return arr


def _finite_array(x, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except ValueError:
        raise IswtError(f"{what} must be numbers with the same k for every prompt") from None
    if not np.all(np.isfinite(arr)):
        raise IswtError(f"{what} contain NaN or infinite values; every matched sample needs a score")
    return arr


# Bootstrap resamples for the confidence intervals of summaries and comparisons.
N_BOOT = 2000


def nanmean(values) -> float:
    """Mean over the finite entries; NaN (without numpy's warning) when there are none."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def side_by_side(paths: list[str], values: list[dict[str, np.ndarray]], seed: int = 0) -> dict:
    """Per metric: each run's mean over prompts with a bootstrap interval, and each
    later run's paired difference to the first (prompts where either is NaN dropped)."""
    rows = []
    for name in values[0]:
        first = values[0][name]
        rows.append(
            {
                "metric": name,
                "runs": [bootstrap_ci(v[name], N_BOOT, seed)._asdict() for v in values],
                "diff_to_first": [None]
                + [paired_bootstrap_diff(v[name], first, N_BOOT, seed)._asdict() for v in values[1:]],
            }
        )
    return {"runs": list(paths), "metrics": rows}
