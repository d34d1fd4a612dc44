"""One prompt's log Z estimate, diagnostics and preference pairs, for tests that reason about a single prompt.

estimate-z and weight-pairs work on every prompt at once
(`estimators.estimate_groups`, `pairing.weight_pairs`); these helpers run
those same grouped functions, or their per-matrix parts, on one prompt.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from iswcli import estimators, pairing


def estimate(lw, *, all_equal_rewards: bool = False, **options) -> SimpleNamespace:
    """Every column of `estimate_groups` for one prompt, as plain values (``.log_z``, ``.flags``, ...)."""
    lw = np.asarray(lw, dtype=np.float64)
    # only whether the rewards are all equal matters to the estimator (the all_equal_rewards flag)
    rewards = np.zeros(lw.size) if all_equal_rewards else np.arange(lw.size, dtype=np.float64)
    table = estimators.estimate_groups(np.zeros(lw.size, dtype=np.int64), lw, rewards=rewards, **options)
    values = {name: column[0] for name, column in vars(table).items()}
    values["flags"] = table.flags[0]
    return SimpleNamespace(
        **{name: value.item() if isinstance(value, np.generic) else value for name, value in values.items()}
    )


def log_z_hat(lw) -> float:
    return estimate(lw).log_z


def kish_ess(lw) -> float:
    return estimate(lw).ess


def max_weight_share(lw) -> float:
    return estimate(lw).max_weight_share


def log_z_standard_error(lw) -> float:
    return estimate(lw).log_z_se


def bootstrap_log_z_interval(lw, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    e = estimate(lw, n_boot=n_boot, rng=rng)
    return e.log_z_lo, e.log_z_hi


def pareto_khat(lw) -> tuple[float, str]:
    e = estimate(lw)
    return e.khat, e.khat_note


# --------------------------------------------------------------------------
# One prompt's preference pairs, through the grouped pairing driver
# --------------------------------------------------------------------------


def pairs(rewards, **options) -> SimpleNamespace:
    """`pairing.weight_pairs` on one prompt whose samples are numbered 0..K-1: chosen, rejected, weights, rate."""
    rewards = np.asarray(rewards, dtype=np.float64)
    table = pairing.weight_pairs(np.zeros(rewards.size, dtype=np.int64), np.arange(rewards.size), rewards, **options)
    rate = float(table.acceptance_rate[0]) if table.acceptance_rate.size else math.nan
    return SimpleNamespace(
        chosen=table.chosen_idx,
        rejected=table.rejected_idx,
        log_weight_base=table.log_weight_base,
        margin_score=table.margin_score,
        weight=table.weight,
        acceptance_rate=rate,
    )


def iso_pairs(rewards, gamma: float, *, pairing: str = "all", rng=None, max_pairs: int | None = None):
    return pairs(rewards, method="iso", gamma=gamma, pairing=pairing, rng=rng, max_pairs_per_prompt=max_pairs)


def direct_pairs(rewards, *, pairing: str = "all", rng=None, max_pairs: int | None = None):
    return pairs(rewards, method="direct", pairing=pairing, rng=rng, max_pairs_per_prompt=max_pairs)


def rso_pairs(rewards, beta: float, num_accept: int, pairing: str, rng, *, max_pairs: int | None = None):
    return pairs(
        rewards,
        method="rso",
        beta=beta,
        num_accept=num_accept,
        pairing=pairing,
        rng=rng,
        max_pairs_per_prompt=max_pairs,
    )


def iso_log_weight(r_w, r_l, gamma: float):
    """Unnormalized ISO log weight by its formula: (r_w + r_l)/gamma + log(sigmoid(r_w - r_l) - 1/2)."""
    return (np.asarray(r_w, dtype=np.float64) + np.asarray(r_l, dtype=np.float64)) / gamma + pairing.margin_log_score(
        r_w, r_l
    )


def candidate_pairs(rewards, pairing_name: str, rng=None):
    """Candidate (chosen, rejected) positions of one prompt, from the driver's per-matrix pairing."""
    _, w, l = pairing._candidate_rows(np.asarray(rewards, dtype=np.float64)[None, :], pairing_name, rng)
    return w, l


def rso_accept(rewards, beta: float, num_accept: int, rng, log_pi_ratio=None) -> SimpleNamespace:
    """Rejection sampling of one prompt's candidates toward pi exp(r / beta), as the driver runs it per matrix.

    ``log_pi_ratio`` (log pi - log q per candidate) targets pi from candidates drawn from q.
    """
    score = np.asarray(rewards, dtype=np.float64) / beta
    if log_pi_ratio is not None:
        score = score + np.asarray(log_pi_ratio, dtype=np.float64)
    accepted, n_accepted, n_examined = pairing._rso_rows(score[None, :], num_accept, rng)
    n, examined = int(n_accepted[0]), int(n_examined[0])
    return SimpleNamespace(accepted=accepted[0, :n].copy(), n_examined=examined, acceptance_rate=n / examined)
