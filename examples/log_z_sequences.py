"""Offline log Z over sequences whose Z is exact: each estimator of estimate-z, by length, temperature, beta and K.

    python examples/log_z_sequences.py [--draws 300] [--out docs/study/log_z_sequences.md]

A sequence is LENGTH binary tokens; the reference says 1 with probability
0.3 at every position, the proposal is the reference at temperature T (a
cooler proposal says 1 less often), and a sequence earns reward 1 when it
has at most c ones, c the 10% quantile under the reference. Everything
depends on the count of ones, so Z = 1 + (e^beta - 1) P_ref(count <= c) is
exact (the binomial), and the log-ratio log pi_ref - log q sums one term
per token, as over a reasoning trace: its spread grows with the square root
of the length. Each cell draws --draws prompts' worth of K samples and
estimates them with `estimators.estimate_groups` (what `iswt estimate-z`
runs) with bootstrap intervals; the tables give error, coverage and how
often each flag fires on estimates off by more than 0.5 nats and on the rest.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iswcli import estimators  # noqa: E402

P_REF = 0.3
LENGTHS = (30, 100, 200, 400)
TEMPERATURES = (1.0, 0.7, 0.5)
BETAS = (0.5, 1.0, 2.0, 4.0)
KS = (8, 32, 128)
BAD = 0.5


def sequences(length: int, k: int, n_groups: int, beta: float, temperature: float, seed: int):
    """Group ids, log-ratios, rewards and the exact log Z for n_groups prompts of k sequences each."""
    q1 = P_REF ** (1 / temperature) / (P_REF ** (1 / temperature) + (1 - P_REF) ** (1 / temperature))
    c = int(stats.binom.ppf(0.1, length, P_REF))
    log_z = math.log1p(math.expm1(beta) * stats.binom.cdf(c, length, P_REF))
    ones = np.random.default_rng(seed).binomial(length, q1, size=n_groups * k)
    log_ratio = ones * math.log(P_REF / q1) + (length - ones) * math.log((1 - P_REF) / (1 - q1))
    reward = (ones <= c).astype(np.float64)
    return np.repeat(np.arange(n_groups), k), log_ratio, reward, log_z


def cell(length, temperature, beta, k, estimator, draws):
    groups, log_ratio, reward, log_z = sequences(length, k, draws, beta, temperature, seed=length * 7 + k)
    z = estimators.estimate_groups(
        groups,
        log_ratio + beta * reward,
        log_ratio=log_ratio,
        estimator=estimator,
        rewards=reward,
        n_boot=200,
        rng=np.random.default_rng(0),
        reward_bounds=(0.0, 1.0),
        beta=beta,
    )
    error = z.log_z - log_z
    covered = (z.log_z_lo <= log_z) & (log_z <= z.log_z_hi)
    return error, covered, z.flags, float(log_ratio.std())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300, help="Prompts' worth of K samples per cell.")
    parser.add_argument("--out", help="Write the tables here (markdown); default: print them.")
    args = parser.parse_args(argv)
    errors = [
        "| length | T | sd log-ratio | beta | K | estimator | mean abs error | mean error | covered | outside bounds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fired: dict[tuple, list] = {}
    for length in LENGTHS:
        for temperature in TEMPERATURES:
            for beta in BETAS:
                for k in KS:
                    for estimator in estimators.ESTIMATORS:
                        error, covered, flags, spread = cell(length, temperature, beta, k, estimator, args.draws)
                        outside = np.mean([("outside_reward_bounds" in f) for f in flags])
                        errors.append(
                            f"| {length} | {temperature:g} | {spread:.2f} | {beta:g} | {k} | {estimator} | "
                            f"{np.abs(error).mean():.3f} | {error.mean():+.3f} | {covered.mean():.2f} | {outside:.2f} |"
                        )
                        fired.setdefault((length, estimator), []).append((np.abs(error) > BAD, ~covered, flags))
    flags_table = [
        "| length | estimator | off by > 0.5 | not covered | flag | fires on bad | fires on good | fires on not covered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (length, estimator), parts in fired.items():
        bad = np.concatenate([p[0] for p in parts])
        missed = np.concatenate([p[1] for p in parts])
        flags = [f for p in parts for f in p[2]]
        for name in ("weight_mass_off", "low_ess", "high_khat", "high_ratio_khat", "outside_reward_bounds"):
            on = np.array([name in f for f in flags])
            flags_table.append(
                f"| {length} | {estimator} | {bad.mean():.2f} | {missed.mean():.2f} | {name} | "
                f"{_share(on, bad)} | {_share(on, ~bad)} | {_share(on, missed)} |"
            )
    text = "\n".join(
        [
            "# Offline log Z over sequences with an exact Z",
            "",
            f"Generated by `python examples/log_z_sequences.py --draws {args.draws}`; the reading is in "
            "[log_z_reasoning_study.md](log_z_reasoning_study.md). T = 1 is the reference itself (log-ratio "
            "0, all estimators equal); every other row is a proposal that is not the reference.",
            "",
            *errors,
            "",
            "## Which flags mark the bad estimates (all temperatures, betas and K of a length)",
            "",
            *flags_table,
            "",
        ]
    )
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _share(on: np.ndarray, among: np.ndarray) -> str:
    return "-" if not among.any() else f"{on[among].mean():.2f} ({int(among.sum())})"


if __name__ == "__main__":
    sys.exit(main())
