"""Preference pairs from scored samples, weighted toward the reward-tilted policy.

For one prompt, a pair (w, l) is two of its samples with r_w > r_l; ties never
become pairs. Three ways to weight the pairs, each normalized to sum to 1 over
a prompt's pairs:

- ``iso``: importance weights toward the tilted optimal policy,
  log w~ = (r_w + r_l)/gamma + log(sigmoid(r_w - r_l) - 1/2), softmax-normalized
  per prompt so the unknown normalizer cancels.
- ``direct``: uniform weights (gamma -> infinity, no margin term).
- ``rso``: statistical rejection sampling toward pi * exp(r/beta), then the
  accepted samples are paired and weighted uniformly.

Which pairs are candidates is set by ``pairing``: ``all`` untied ordered
pairs, ``first-round`` (shuffle, pair neighbours 0-1, 2-3, ...) or
``tournament`` (single elimination on a shuffled bracket).

Every shuffle of a prompt's n items is ``argsort`` of n uniform keys from
``rng.random`` (stable sort), drawn for a block of equally sized prompts at
once; the grouped driver `weight_pairs` works on whole (prompts x K) matrices
per group size rather than looping over prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iswcli.errors import IswtError
from iswcli.estimators import _finite_array, _positive, _shown

METHODS = ("iso", "direct", "rso")
PAIRINGS = ("all", "first-round", "tournament")
_LOG_HALF = math.log(0.5)
#: Upper bound on elements of one temporary (prompts x K x K) boolean comparison
#: array: 64 MiB, so a million samples at K = 16 pair in one pass, no concatenation.
_CHUNK_ELEMENTS = 1 << 26


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PairsTable:
    """Columns of the pairs artifact plus the counts the summary needs.

    Pairs are grouped by prompt in ascending prompt_id order. ``method`` is a
    single string for the whole table (broadcast it to a column when writing).
    ``dropped_prompt_ids`` are prompts that produced no untied pair.
    ``rso_prompt_id``/``acceptance_rate`` give every prompt's acceptance rate
    for rso and are empty for the other methods.
    """

    prompt_id: np.ndarray
    chosen_idx: np.ndarray
    rejected_idx: np.ndarray
    r_chosen: np.ndarray
    r_rejected: np.ndarray
    log_weight_base: np.ndarray
    margin_score: np.ndarray
    weight: np.ndarray
    method: str
    n_prompts: int
    dropped_prompt_ids: np.ndarray
    rso_prompt_id: np.ndarray
    acceptance_rate: np.ndarray


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------


def _count(value, name: str) -> int:
    """Return ``value`` as an int, or raise unless it is an integer >= 1."""
    if value is None or int(value) != value or value < 1:
        raise IswtError(f"{name} must be an integer >= 1 (got {value})")
    return int(value)


def _pairing_name(pairing: str) -> str:
    """Refuse an unknown pairing scheme."""
    if pairing not in PAIRINGS:
        raise IswtError(f"pairing must be one of {', '.join(PAIRINGS)} (got {pairing!r})")
    return pairing


def _need_rng(rng, why: str) -> None:
    """Refuse to shuffle or sample without a seeded Generator."""
    if rng is None:
        raise IswtError(f"{why} needs a seeded numpy Generator (rng)")


# --------------------------------------------------------------------------
# Pair log weights
# --------------------------------------------------------------------------


def _as_result(values: np.ndarray):
    """Return a Python float for 0-d results, the array otherwise."""
    return float(values) if values.ndim == 0 else values


def margin_log_score(r_w, r_l):
    """log(sigmoid(r_w - r_l) - 1/2) = log(tanh(d/2) / 2), with d = r_w - r_l >= 0.

    tanh is accurate for tiny d (about log(d/4)) and saturates cleanly for
    huge d (tends to log 1/2); one transcendental pair instead of four keeps
    millions of pairs cheap. A tie gives -inf, i.e. weight 0.
    """
    d = np.asarray(r_w, dtype=np.float64) - np.asarray(r_l, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise IswtError("rewards must be finite numbers (NaN or infinity in a pair)")
    if np.any(d < 0):
        raise IswtError("a pair's chosen reward must be >= its rejected reward")
    with np.errstate(divide="ignore"):
        score = np.asarray(0.5 * d)  # then in place: millions of pairs, one buffer
        np.tanh(score, out=score)
        np.log(score, out=score)
        score += _LOG_HALF
    return _as_result(score)


# --------------------------------------------------------------------------
# Candidate pairs on (prompts x K) reward matrices
# --------------------------------------------------------------------------


def _shuffle_order(n_rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of range(n) per row: argsort of rng.random keys."""
    return np.argsort(rng.random((n_rows, n)), axis=1, kind="stable")


def _pairs_all(rewards: np.ndarray):
    """Every (w, l) with r_w > r_l per row, as (row, w, l), row-major (w, then l, ascending)."""
    n_rows, k = rewards.shape
    step = max(1, _CHUNK_ELEMENTS // max(1, k * k))
    parts = []
    for lo in range(0, n_rows, step):
        block = rewards[lo : lo + step]
        # one flat index per pair, split by divmod: cheaper than a 3-d nonzero
        flat = np.flatnonzero(block[:, :, None] > block[:, None, :])
        row, cell = np.divmod(flat, k * k)
        w, l = np.divmod(cell, k)
        parts.append((row + lo, w, l))
    return _joined(parts) if parts else _no_pairs()


def _joined(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Concatenate same-shaped tuples of arrays field by field; a single part is returned as is (no copy)."""
    return parts[0] if len(parts) == 1 else tuple(np.concatenate(p) for p in zip(*parts))


def _no_pairs():
    """Empty (row, w, l) triple."""
    empty = np.empty(0, dtype=np.intp)
    return empty, empty, empty


def _matches(rewards: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Play matches a[:, j] vs b[:, j]; return strict results as (row, w, l) and each match's winner.

    The higher reward wins; on a tie there is no pair and ``a`` (the earlier
    slot of the bracket) goes through.
    """
    ra = np.take_along_axis(rewards, a, axis=1)
    rb = np.take_along_axis(rewards, b, axis=1)
    row, col = np.nonzero(ra != rb)
    a_wins = ra[row, col] > rb[row, col]
    w = np.where(a_wins, a[row, col], b[row, col])
    l = np.where(a_wins, b[row, col], a[row, col])
    winners = np.where(rb > ra, b, a)
    return (row, w, l), winners


def _pairs_first_round(rewards: np.ndarray, rng: np.random.Generator):
    """Shuffle each row and pair neighbours (0-1, 2-3, ...); an odd last item sits out."""
    n_rows, k = rewards.shape
    order = _shuffle_order(n_rows, k, rng)
    half = k // 2
    (row, w, l), _ = _matches(rewards, order[:, 0 : 2 * half : 2], order[:, 1 : 2 * half : 2])
    return row, w, l


def _pairs_tournament(rewards: np.ndarray, rng: np.random.Generator):
    """Single elimination on a shuffled bracket; every strict match becomes a pair.

    Each round pairs neighbours; winners keep their bracket order and an odd
    last entrant gets a bye to the end of the next round. Pairs come per row
    in round order, then bracket order.
    """
    n_rows, k = rewards.shape
    entrants = _shuffle_order(n_rows, k, rng)
    rounds = []
    while entrants.shape[1] > 1:
        half = entrants.shape[1] // 2
        result, winners = _matches(rewards, entrants[:, 0 : 2 * half : 2], entrants[:, 1 : 2 * half : 2])
        rounds.append(result)
        entrants = np.concatenate([winners, entrants[:, 2 * half :]], axis=1)
    if not rounds:
        return _no_pairs()
    row, w, l = _joined(rounds)
    order = np.argsort(row, kind="stable")
    return row[order], w[order], l[order]


def _candidate_rows(rewards: np.ndarray, pairing: str, rng):
    """Candidate pairs (row, w, l) for each row of a (prompts x K) reward matrix."""
    if pairing == "all":
        return _pairs_all(rewards)
    _need_rng(rng, f"pairing {pairing!r}")
    if pairing == "first-round":
        return _pairs_first_round(rewards, rng)
    return _pairs_tournament(rewards, rng)


# --------------------------------------------------------------------------
# Statistical rejection sampling
# --------------------------------------------------------------------------


def _rso_rows(score: np.ndarray, num_accept: int, rng: np.random.Generator):
    """Rejection sampling on each row of a (prompts x K) matrix of log-targets.

    ``score`` is r/beta (+ log pi/q). Candidates are shuffled per row, then
    in passes: s_max is the largest score among candidates not yet accepted,
    and each remaining candidate, in shuffled order, is accepted when
    log(u) < s - s_max with u ~ U[0, 1). The pass's best candidate is always
    accepted (log u < 0), so every pass accepts at least one candidate and the
    loop ends after at most K passes: when the row has ``num_accept`` (or
    fewer, if it has fewer candidates) or its candidates have run out.

    Returns accepted positions (rows padded with -1) in acceptance order, the
    number accepted and the number of acceptance tests per row.
    """
    n_rows, k = score.shape
    target = min(num_accept, k)
    order = _shuffle_order(n_rows, k, rng)
    shuffled = np.take_along_axis(score, order, axis=1)
    remaining = np.ones((n_rows, k), dtype=bool)
    accepted = np.full((n_rows, target), -1, dtype=np.intp)
    n_accepted = np.zeros(n_rows, dtype=np.intp)
    n_examined = np.zeros(n_rows, dtype=np.intp)
    active = np.arange(n_rows)
    while active.size:
        rem = remaining[active]
        s = np.where(rem, shuffled[active], -np.inf)
        s_max = s.max(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            hit = rem & (np.log(rng.random(rem.shape)) < s - s_max)
        need = target - n_accepted[active]
        rank = np.cumsum(hit, axis=1)
        take = hit & (rank <= need[:, None])
        done = rank[:, -1] >= need
        stop_col = np.argmax(rank >= need[:, None], axis=1)
        tested = np.cumsum(rem, axis=1)
        n_examined[active] += np.where(done, tested[np.arange(active.size), stop_col], tested[:, -1])
        row, col = np.nonzero(take)
        slot = n_accepted[active[row]] + rank[row, col] - 1
        accepted[active[row], slot] = order[active[row], col]
        remaining[active[row], col] = False
        n_accepted[active] += take.sum(axis=1)
        still = (n_accepted[active] < target) & remaining[active].any(axis=1)
        active = active[still]
    return accepted, n_accepted, n_examined


# --------------------------------------------------------------------------
# Grouped driver
# --------------------------------------------------------------------------


def _check_method(method, pairing, gamma, beta, num_accept, max_pairs, rng) -> dict:
    """Validate the method's parameters; return them cleaned."""
    if method not in METHODS:
        raise IswtError(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    clean = {"pairing": _pairing_name(pairing), "gamma": None, "beta": None, "num_accept": None}
    if method == "iso":
        clean["gamma"] = _positive(gamma, "gamma")
    if method == "rso":
        clean["beta"] = _positive(beta, "beta")
        clean["num_accept"] = _count(num_accept, "num_accept")
        _need_rng(rng, "method 'rso'")
    clean["max_pairs"] = None if max_pairs is None else _count(max_pairs, "max_pairs_per_prompt")
    if clean["max_pairs"] is not None:
        _need_rng(rng, "max_pairs_per_prompt (random tie-breaking)")
    return clean


def _sorted_layout(prompt_ids: np.ndarray, sample_idx: np.ndarray):
    """Order rows by (prompt, sample_idx); refuse duplicates and one-sample prompts.

    Returns unique prompt ids, the row order, and each prompt's start and size
    in that order.
    """
    unique, codes = np.unique(prompt_ids, return_inverse=True)
    codes = codes.ravel()
    order = np.lexsort((sample_idx, codes))
    c, s = codes[order], sample_idx[order]
    dup = np.nonzero((c[1:] == c[:-1]) & (s[1:] == s[:-1]))[0]
    if dup.size:
        i = dup[0]
        raise IswtError(
            f"duplicate (prompt_id, sample_idx) = ({_shown(unique[c[i]])}, {_shown(s[i])}); "
            "each sample must appear once"
        )
    counts = np.bincount(codes, minlength=unique.size)
    if counts.min() < 2:
        bad = unique[int(np.argmin(counts))]
        raise IswtError(f"prompt {_shown(bad)} has 1 sample; pairing needs at least 2 per prompt")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return unique, order, starts, counts


def _collect_pairs(rewards: np.ndarray, starts, counts, method: str, params: dict, rng):
    """Candidate pairs of every prompt as (prompt, chosen row, rejected row), plus rso acceptance rates.

    Rows index the prompt-sorted arrays. Prompts are processed per group size
    (ascending), each size as one matrix.
    """
    parts = []
    rates = np.full(counts.size, np.nan) if method == "rso" else np.empty(0)
    for size in np.unique(counts):
        groups = np.nonzero(counts == size)[0]
        rows = starts[groups][:, None] + np.arange(size)[None, :]
        block = rewards[rows]
        if method != "rso":
            g, w, l = _candidate_rows(block, params["pairing"], rng)
            first = starts[groups][g]  # a prompt's rows are consecutive: row = first + position
            parts.append((groups[g], first + w, first + l))
            continue
        accepted, n_acc, n_exam = _rso_rows(block / params["beta"], params["num_accept"], rng)
        rates[groups] = n_acc / n_exam
        for n in np.unique(n_acc[n_acc >= 2]):
            sub = np.nonzero(n_acc == n)[0]
            pos = accepted[sub, :n]
            g, w, l = _candidate_rows(np.take_along_axis(block[sub], pos, axis=1), params["pairing"], rng)
            parts.append((groups[sub[g]], rows[sub[g], pos[g, w]], rows[sub[g], pos[g, l]]))
    if not parts:
        return (*_no_pairs(), rates)
    g, w, l = _joined(parts)
    if np.any(g[1:] < g[:-1]):  # several group sizes interleave prompts
        order = np.argsort(g, kind="stable")
        g, w, l = g[order], w[order], l[order]
    return g, w, l, rates


def _segment_bounds(group: np.ndarray):
    """Starts and sizes of the runs of equal values in a sorted group array."""
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    counts = np.diff(np.append(starts, group.size))
    return starts, counts


def _top_per_group(group: np.ndarray, log_w: np.ndarray, limit: int, rng) -> np.ndarray:
    """Indices of the ``limit`` highest log weights per group, in their original order.

    Ties in log weight are broken by a uniform random key from ``rng``, so
    among equal weights (e.g. 'direct') the kept pairs are a random subset.
    """
    tiebreak = rng.random(group.size)
    order = np.lexsort((tiebreak, -log_w, group))
    starts, counts = _segment_bounds(group[order])
    rank = np.arange(group.size) - np.repeat(starts, counts)
    return np.sort(order[rank < limit])


def _segment_softmax(group: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """Softmax of ``log_w`` within each run of the sorted ``group`` array."""
    if group.size == 0:
        return np.empty(0)
    starts, counts = _segment_bounds(group)
    peak = np.maximum.reduceat(log_w, starts)
    weight = log_w - np.repeat(peak, counts)
    np.exp(weight, out=weight)  # in place: these arrays hold millions of pairs
    weight /= np.repeat(np.add.reduceat(weight, starts), counts)
    return weight


def weight_pairs(
    prompt_ids,
    sample_idx,
    rewards,
    *,
    method: str,
    pairing: str = "all",
    gamma: float | None = None,
    beta: float | None = None,
    num_accept: int | None = None,
    max_pairs_per_prompt: int | None = None,
    rng: np.random.Generator | None = None,
) -> PairsTable:
    """Build the pairs table for many prompts: one row per sample in, one row per pair out.

    Rows may come in any order; they are sorted by (prompt_id, sample_idx)
    first, so a seed gives the same pairs for the same rows. ``iso`` needs
    ``gamma``; ``rso`` needs ``beta``, ``num_accept`` and ``rng``; shuffled
    pairings and ``max_pairs_per_prompt`` need ``rng``. Weights sum to 1 per
    kept prompt; prompts with no untied pair are dropped and listed.
    """
    params = _check_method(method, pairing, gamma, beta, num_accept, max_pairs_per_prompt, rng)
    rewards = _finite_array(rewards, "reward")
    prompt_ids = np.asarray(prompt_ids)
    sample_idx = np.asarray(sample_idx)
    if not (prompt_ids.shape == sample_idx.shape == rewards.shape):
        raise IswtError("prompt_id, sample_idx and reward must have one value per sample")
    if rewards.size == 0:
        raise IswtError("no scored samples to pair")
    unique, order, starts, counts = _sorted_layout(prompt_ids, sample_idx)
    r_sorted, idx_sorted = rewards[order], sample_idx[order]
    group, w_row, l_row, rates = _collect_pairs(r_sorted, starts, counts, method, params, rng)
    r_w, r_l = r_sorted[w_row], r_sorted[l_row]
    margin = np.asarray(margin_log_score(r_w, r_l), dtype=np.float64)
    if method == "iso":
        log_w = r_w + r_l
        log_w /= params["gamma"]
        log_w += margin
    else:
        log_w = np.zeros(group.size)
    if params["max_pairs"] is not None:
        keep = _top_per_group(group, log_w, params["max_pairs"], rng)
        group, w_row, l_row, r_w, r_l, margin, log_w = (a[keep] for a in (group, w_row, l_row, r_w, r_l, margin, log_w))
    has_pairs = np.zeros(unique.size, dtype=bool)
    has_pairs[group] = True
    return PairsTable(
        prompt_id=unique[group],
        chosen_idx=idx_sorted[w_row],
        rejected_idx=idx_sorted[l_row],
        r_chosen=r_w,
        r_rejected=r_l,
        log_weight_base=log_w,
        margin_score=margin,
        weight=_segment_softmax(group, log_w),
        method=method,
        n_prompts=int(unique.size),
        dropped_prompt_ids=unique[~has_pairs],
        rso_prompt_id=unique if method == "rso" else unique[:0],
        acceptance_rate=rates,
    )


def pair_weight_ess(prompt_ids, weight):
    """Kish ESS of each prompt's pair weights, (sum w)^2 / sum w^2, as (prompt ids, ess).

    1 means one pair carries all the weight; the number of pairs means uniform.
    """
    weight = _finite_array(weight, "weight")
    unique, inverse = np.unique(np.asarray(prompt_ids), return_inverse=True)
    inverse = inverse.ravel()
    total = np.bincount(inverse, weights=weight, minlength=unique.size)
    square = np.bincount(inverse, weights=weight * weight, minlength=unique.size)
    return unique, total * total / square
