"""How often does estimate-z's 95% interval of log Z cover the exact log Z? Simulated exactly, no model needed.

    python examples/log_z_coverage.py EVAL.target.parquet [--beta 2] [--k 8 32] [--reps 2000]

EVAL.target.parquet is `evaluate --target-beta` of the *base* policy on
answer-set prompts: its p_answers are pi_ref(a|x) exactly. With the
reference itself as proposal (temperature 1, no truncation) every sample is
one of the |A| + 1 outcomes (an answer, or "anything else" with reward r_0)
and its log-weight is beta * r, so drawing outcomes from that categorical
*is* drawing responses from the model, as far as the estimator can tell.
For each prompt and K this draws `reps` sets of K samples and reports how
often each interval held the exact log Z: the delta-method one (log Z_hat
+- 1.96 se, what estimate-z writes as log_z_se; and +- the Student-t
quantile with K - 1 degrees of freedom) and the percentile
bootstrap (estimate-z --bootstrap). Intervals of zero width (all K samples
earned the same reward, so every weight is equal) are counted separately:
they cannot cover anything but a lucky exact hit.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pyarrow.parquet as pq
from scipy.stats import t as student_t

from iswcli import estimators, exact_targets, tasks


def prompt_rewards() -> dict[str, dict[str, float]]:
    return {
        p.prompt_id: p.fields["answers"] for split in ("train", "test") for p in tasks.load_prompts("sets", split=split)
    }


def simulate(p_outcomes, rewards, beta, k, reps, n_boot, rng):
    exact = exact_targets.logsumexp(np.log(np.maximum(p_outcomes, 1e-300)) + beta * rewards)
    draws = rng.choice(len(p_outcomes), size=(reps, k), p=p_outcomes / p_outcomes.sum())
    lw = beta * rewards[draws]
    log_z = np.array([estimators.log_z_hat(row) for row in lw])
    se = np.array([estimators.log_z_standard_error(row) for row in lw])
    degenerate = np.ptp(lw, axis=1) == 0
    delta = np.abs(log_z - exact) <= 1.96 * se
    t_quantile = float(student_t.ppf(0.975, k - 1))
    delta_t = np.abs(log_z - exact) <= t_quantile * se
    boot_reps = min(reps, 300)
    boot = np.array(
        [
            lo <= exact <= hi
            for lo, hi in (estimators.bootstrap_log_z_interval(row, n_boot, rng) for row in lw[:boot_reps])
        ]
    )
    return {
        "delta": delta.mean(),
        "delta_t": delta_t.mean(),
        "boot": boot.mean(),
        "degenerate": degenerate.mean(),
        "delta_nondeg": delta[~degenerate].mean() if (~degenerate).any() else math.nan,
        "z_err_sd": np.std(log_z[~degenerate] - exact) if (~degenerate).sum() > 1 else math.nan,
        "se_mean": se[~degenerate].mean() if (~degenerate).any() else math.nan,
        "khat": np.nanmean([estimators.pareto_khat(row)[0] for row in lw[:50]]) if k > 20 else math.nan,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--beta", type=float, default=2.0)
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--default", type=float, default=0.0)
    args = ap.parse_args()
    rows = pq.read_table(args.target).to_pylist()
    answers = prompt_rewards()
    rng = np.random.default_rng(0)
    print(
        "| K | prompts | delta-method 95% (+-1.96 se) covers | +-t(K-1) se covers | bootstrap 95% covers | "
        "all-equal-weight draws | delta covers (non-degenerate) | sd(log Z_hat - exact) / mean se |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k in args.k:
        results = []
        for row in rows:
            names = json.loads(row["answers"])
            p = np.append(np.array(row["p_answers"]), max(1 - sum(row["p_answers"]), 0.0))
            r = np.append(np.array([answers[row["prompt_id"]][a] for a in names]), args.default)
            results.append(simulate(p, r, args.beta, k, args.reps, args.boot, rng))
        mean = {key: float(np.nanmean([res[key] for res in results])) for key in results[0]}
        ratio = np.nanmean([res["z_err_sd"] / res["se_mean"] for res in results if res["se_mean"] > 0])
        print(
            f"| {k} | {len(rows)} | {mean['delta']:.3f} | {mean['delta_t']:.3f} | {mean['boot']:.3f} | {mean['degenerate']:.3f} | "
            f"{mean['delta_nondeg']:.3f} | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
