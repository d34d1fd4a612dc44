"""The closing tables of examples/distribution_matching.mk, printed as Markdown.

    python examples/distribution_matching_table.py OUT

Policies: OUT/eval-METHOD-sSEED.target.parquet (and eval-base): per method,
each prompt's value is averaged over the seeds, then the mean over prompts
gets a 95% percentile bootstrap interval (prompts resampled); "seeds" gives
the range of the per-seed means. log Z: OUT/zeval-PROPOSAL.target.parquet
with the z artifact's diagnostics (k-hat, ESS/K) beside it.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from iswcli import metrics

POLICY_COLUMNS = ("p_valid", "kl_set", "tv_set", "eff_answers")
ORDER = ("base", "disa", "dpg", "learned", "sft", "iso", "direct", "rso", "grpo", "gspo")


def ci_text(values, seed: int = 0) -> str:
    ci = metrics.bootstrap_ci(np.asarray(values, dtype=float), 2000, seed)
    return "n/a" if ci.n == 0 else f"{ci.estimate:.3f} [{ci.lo:.3f}, {ci.hi:.3f}]"


def nanmean_text(values, fmt: str = ".2f") -> str:
    """Mean over the finite values; 'n/a' when there is none (k-hat is NaN when the tail has too few distinct weights)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return f"{arr.mean():{fmt}}" if arr.size else "n/a"


def read(path: Path) -> dict[str, dict]:
    return {r["prompt_id"]: r for r in pq.read_table(path).to_pylist()}


def policy_table(out: Path) -> list[str]:
    runs: dict[str, dict[str, dict]] = defaultdict(dict)  # method -> seed -> prompt -> row
    for path in sorted(out.glob("eval-*.target.parquet")):
        name = path.name.removesuffix(".target.parquet").removeprefix("eval-")
        m = re.fullmatch(r"(.+)-s(\d+)", name)
        method, seed = (m.group(1), m.group(2)) if m else (name, "-")
        runs[method][seed] = read(path)
    if not runs:
        return ["(no eval-*.target.parquet in " + str(out) + ")"]
    base = next(iter(runs.get("base", {}).values()), None)
    lines = [
        "| policy | seeds | p_valid | kl_set | tv_set | eff_answers | kl_set per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    if base is not None:
        target = {c: [r[c] for r in base.values()] for c in ("p_valid_target", "eff_answers_target")}
        lines.append(
            f"| target pi* | | {ci_text(target['p_valid_target'])} | 0 | 0 | "
            f"{ci_text(target['eff_answers_target'])} | |"
        )
    for method in sorted(runs, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m)):
        seeds = runs[method]
        prompts = sorted(set.intersection(*(set(rows) for rows in seeds.values())))
        cells = []
        for c in POLICY_COLUMNS:
            per_prompt = [np.nanmean([seeds[s][p][c] for s in seeds]) for p in prompts]
            cells.append(ci_text(per_prompt))
        per_seed = [np.nanmean([seeds[s][p]["kl_set"] for p in prompts]) for s in sorted(seeds)]
        spread = ", ".join(f"{v:.3f}" for v in per_seed)
        lines.append(f"| {method} | {len(seeds)} | " + " | ".join(cells) + f" | {spread} |")
    return lines


def z_table(out: Path) -> list[str]:
    lines = [
        "| proposal | prompts | log_z_error (est - exact) | abs error | 95% interval covers exact | "
        "interval width | k-hat | ESS/K |",
        "|---|---|---|---|---|---|---|---|",
    ]
    found = False
    for path in sorted(out.glob("zeval-*.target.parquet")):
        found = True
        proposal = path.name.removesuffix(".target.parquet").removeprefix("zeval-")
        rows = list(read(path).values())
        z_path = out / f"z-{proposal}.parquet"
        z = read(z_path) if z_path.exists() else {}
        err = [r["log_z_error"] for r in rows]
        covered = [r["log_z_covered"] for r in rows]
        width = [r["log_z_hi"] - r["log_z_lo"] for r in rows]
        khat = [z[r["prompt_id"]]["khat"] for r in rows if r["prompt_id"] in z]
        ess = [z[r["prompt_id"]]["ess_frac"] for r in rows if r["prompt_id"] in z]
        lines.append(
            f"| {proposal} | {len(rows)} | {ci_text(err)} | {ci_text(np.abs(err))} | {ci_text(covered)} | "
            f"{nanmean_text(width, '.3f')} | {nanmean_text(khat)} | {nanmean_text(ess)} |"
        )
    return lines if found else []


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/distribution-matching")
    print("Policies against the exact target (means over prompts, 95% bootstrap CI; seeds averaged per prompt)\n")
    print("\n".join(policy_table(out)))
    z = z_table(out)
    if z:
        print("\nlog Z by importance sampling against the exact log Z (base policy's prompts)\n")
        print("\n".join(z))


if __name__ == "__main__":
    main()
