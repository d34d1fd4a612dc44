"""One prompt's log Z estimate and diagnostics, for tests that reason about a single prompt.

estimate-z estimates every prompt at once (`estimators.estimate_groups`);
these helpers run that same grouped estimator on one prompt's log-weights.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from iswcli import estimators


def estimate(lw, *, all_equal_rewards: bool = False, **options) -> SimpleNamespace:
    """Every column of `estimate_groups` for one prompt, as plain values (``.log_z``, ``.flags``, ...)."""
    lw = np.asarray(lw, dtype=np.float64)
    # only whether the rewards are all equal matters to the estimator (the all_equal_rewards flag)
    rewards = np.zeros(lw.size) if all_equal_rewards else np.arange(lw.size, dtype=np.float64)
    table = estimators.estimate_groups(np.zeros(lw.size, dtype=np.int64), lw, rewards=rewards, **options)
    values = {name: column[0] for name, column in vars(table).items()}
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
