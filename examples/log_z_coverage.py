"""How often does estimate-z's 95% interval of log Z cover the exact log Z? Simulated exactly, no model needed.

    python examples/log_z_coverage.py EVAL.target.parquet [--beta 2] [--k 8 32] [--reps 2000]

EVAL.target.parquet is `evaluate --target-beta` of the *base* policy on
answer-set prompts: its p_answers are pi_ref(a|x) exactly. With the
reference itself as proposal (temperature 1, no truncation) every sample is
one of the |A| + 1 outcomes (an answer, or "anything else" with reward r_0)
and its log-weight is beta * r, so drawing outcomes from that categorical
*is* drawing responses from the model, as far as the estimator can tell.

For each prompt and K this draws `reps` sets of K samples and runs
`estimators.estimate_groups` on them exactly as estimate-z does (every
draw is one group; the reward bounds are the lowest and highest reward of
the whole task, as an artifact of all its prompts would show), and reports
how often each interval held the exact log Z: log Z_hat +- 1.96 se and the
percentile bootstrap, each without and with the widening of prompts whose
K rewards are all equal (what estimate-z writes).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow.parquet as pq

from iswcli import estimators, exact_targets, tasks


def prompt_rewards() -> dict[str, dict[str, float]]:
    return {
        p.prompt_id: p.fields["answers"] for split in ("train", "test") for p in tasks.load_prompts("sets", split=split)
    }


def covered(table, exact: float) -> np.ndarray:
    return (table.log_z_lo <= exact) & (exact <= table.log_z_hi)


def simulate(p_outcomes, rewards, bounds, beta, k, reps, n_boot, rng) -> dict:
    exact = exact_targets.logsumexp(np.log(np.maximum(p_outcomes, 1e-300)) + beta * rewards)
    drawn = rewards[rng.choice(len(p_outcomes), size=(reps, k), p=p_outcomes / p_outcomes.sum())].ravel()
    groups = np.repeat(np.arange(reps), k)
    lw = beta * drawn
    results = {}
    for name, n in (("delta", 0), ("boot", n_boot)):
        plain = estimators.estimate_groups(groups, lw, rewards=drawn, n_boot=n, rng=rng)
        widened = estimators.estimate_groups(
            groups, lw, rewards=drawn, n_boot=n, rng=rng, reward_bounds=bounds, beta=beta
        )
        results[name] = covered(plain, exact).mean()
        results[f"{name}_widened"] = covered(widened, exact).mean()
        results[f"{name}_width"] = np.median(widened.log_z_hi - widened.log_z_lo)
        all_equal = np.array(["all_equal_rewards" in f for f in widened.flags])
    results["all_equal"] = all_equal.mean()
    results["widened_when_all_equal"] = covered(widened, exact)[all_equal].mean() if all_equal.any() else np.nan
    results["abs_error"] = np.abs(widened.log_z - exact).mean()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--beta", type=float, default=2.0)
    ap.add_argument("--k", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--default", type=float, default=0.0)
    args = ap.parse_args()
    rows = pq.read_table(args.target).to_pylist()
    answers = prompt_rewards()
    outcomes = []
    for row in rows:
        names = json.loads(row["answers"])
        p = np.append(np.array(row["p_answers"]), max(1 - sum(row["p_answers"]), 0.0))
        r = np.append(np.array([answers[row["prompt_id"]][a] for a in names]), args.default)
        outcomes.append((p, r))
    every_reward = np.concatenate([r for _, r in outcomes])
    bounds = (float(every_reward.min()), float(every_reward.max()))
    rng = np.random.default_rng(0)
    print(
        "| K | prompts | +-1.96 se covers | bootstrap covers | draws with all rewards equal | "
        "+-1.96 se, widened (estimate-z) | bootstrap, widened (estimate-z --bootstrap) | "
        "widened covers when all equal | median width (se / bootstrap) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for k in args.k:
        results = [simulate(p, r, bounds, args.beta, k, args.reps, args.boot, rng) for p, r in outcomes]
        mean = {key: float(np.nanmean([res[key] for res in results])) for key in results[0]}
        print(
            f"| {k} | {len(rows)} | {mean['delta']:.3f} | {mean['boot']:.3f} | {mean['all_equal']:.3f} | "
            f"{mean['delta_widened']:.3f} | {mean['boot_widened']:.3f} | {mean['widened_when_all_equal']:.3f} | "
            f"{mean['delta_width']:.2f} / {mean['boot_width']:.2f} |"
        )


if __name__ == "__main__":
    main()
