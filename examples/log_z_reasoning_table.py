"""Tables of the offline log Z study on reasoning traces (examples/log_z_reasoning.mk), against the truth.

    python examples/log_z_reasoning_table.py runs/log-z-reasoning [--out docs/study/log_z_reasoning.md]

RUN/LEN/ holds, for each response cap LEN (a directory named tokensN), the
reference's own large sample (ref.parquet, ref.scores.parquet: the truth,
Z = 1 + (e^beta - 1) P_ref(correct)) and one samples/scores pair per
proposal (PROPOSAL.parquet, PROPOSAL.scores.parquet with logprob_ref). Each
proposal's K_max samples per prompt are cut, in sample order, into disjoint
replicates of K samples for every K of --ks; every replicate is estimated at
every beta of --betas with each estimator, by `estimators.estimate_groups`,
the function `iswt estimate-z` runs (the Makefile's z-PROPOSAL-bB.parquet,
all K_max samples, are checked to hold the same numbers). Per cell: the
mean and largest |error| against the truth, the share of intervals that
hold it, the share of estimates outside [beta min r, beta max r]; per
flag: the share of estimates off by more than --bad nats it fires on, and
the share of the others.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iswcli import binary_truth, estimators  # noqa: E402
from iswcli.chain import load_scored  # noqa: E402
from iswcli.errors import IswtError  # noqa: E402

PROPOSALS = {
    "t1": "reference, temperature 1",
    "t07": "temperature 0.7",
    "t05": "temperature 0.5",
    "topp09": "top-p 0.9",
    "sft": "SFT adapter",
    "disa": "DISA adapter",
}
BOOTSTRAP = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="The study's output directory (OUT of the Makefile).")
    parser.add_argument("--out", help="Write the tables here (markdown); default: print them.")
    parser.add_argument("--betas", default="0.5,1,2,4")
    parser.add_argument("--ks", default="8,32,128")
    parser.add_argument("--bad", type=float, default=0.5, help="An estimate off by more than this (nats) is bad.")
    args = parser.parse_args(argv)
    try:
        rows = study_rows(Path(args.run), _numbers(args.betas, float), _numbers(args.ks, int))
    except IswtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = render(rows, args.bad, args.run)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _numbers(text: str, kind):
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise IswtError(f"{text!r}: expected comma-separated numbers") from None


def study_rows(run: Path, betas: list[float], ks: list[int]) -> list[dict]:
    """One row per (cap, proposal, beta, K, estimator, replicate, prompt): estimate, interval, flags, truth."""
    caps = sorted((d for d in run.glob("tokens*") if d.is_dir()), key=lambda d: int(d.name[6:]))
    if not caps:
        raise IswtError(f"{run}: no tokensN directories (run examples/log_z_reasoning.mk first)")
    rows = []
    for cap in caps:
        if not (cap / "ref.scores.parquet").exists():
            print(f"note: {cap} has no ref.scores.parquet yet (the truth); left out", file=sys.stderr)
            continue
        counts = binary_truth.reference_counts(str(cap / "ref.parquet"), str(cap / "ref.scores.parquet"))
        position = {pid: i for i, pid in enumerate(counts.prompt_ids)}
        for name in PROPOSALS:
            if not (cap / f"{name}.scores.parquet").exists():
                continue
            samples, scores = str(cap / f"{name}.parquet"), str(cap / f"{name}.scores.parquet")
            scored = load_scored(
                samples, scores, sample_columns=["logprob_q"], score_columns=["reward", "logprob_ref"], purpose="z"
            )
            ratio = scored.finite("logprob_ref", scores, "finite") - scored.finite("logprob_q", samples, "finite")
            reward = scored.finite("reward", scores, "finite")
            ids = scored.prompt_ids.to_pylist()
            truth_index = np.array([position[pid] for pid in ids])
            for beta in betas:
                true = binary_truth.log_z_of(counts.correct / counts.n, beta)[truth_index]
                _check_against_stage(cap / f"z-{name}-b{beta:g}.parquet", scored, ratio, reward, beta)
                for k in ks:
                    for estimator in estimators.ESTIMATORS:
                        rows += _replicates(cap, name, scored, ratio, reward, beta, k, estimator, true)
    return rows


def _replicates(cap, name, scored, ratio, reward, beta, k, estimator, true) -> list[dict]:
    """Each prompt's samples cut into disjoint groups of k (in sample order), estimated together."""
    within = np.arange(ratio.size) - np.repeat(np.cumsum(scored.counts) - scored.counts, scored.counts)
    replicate = within // k
    keep = replicate < (scored.counts // k)[scored.group]  # only whole replicates
    if not keep.any():
        return []
    group = scored.group[keep] * 10_000 + replicate[keep]
    z = estimators.estimate_groups(
        group,
        ratio[keep] + beta * reward[keep],
        log_ratio=ratio[keep],
        estimator=estimator,
        rewards=reward[keep],
        n_boot=BOOTSTRAP,
        rng=np.random.default_rng(0),
        reward_bounds=(0.0, 1.0),
        beta=beta,
    )
    prompt = z.group_id // 10_000
    return [
        {
            "cap": int(cap.name[6:]),
            "proposal": name,
            "beta": beta,
            "k": k,
            "estimator": estimator,
            "prompt": int(p),
            "log_z": float(z.log_z[i]),
            "true": float(true[p]),
            "covered": bool(z.log_z_lo[i] <= true[p] <= z.log_z_hi[i]),
            "width": float(z.log_z_hi[i] - z.log_z_lo[i]),
            "log_mean_ratio": float(z.log_mean_ratio[i]),
            "flags": z.flags[i],
        }
        for i, p in enumerate(prompt)
    ]


def _check_against_stage(z_path: Path, scored, ratio, reward, beta) -> None:
    """The Makefile's estimate-z output at this beta holds what the library gives on all samples."""
    if not z_path.exists():
        return
    z = estimators.estimate_groups(
        scored.group, ratio + beta * reward, log_ratio=ratio, rewards=reward, reward_bounds=(0.0, 1.0), beta=beta
    )
    stage = pq.read_table(z_path, columns=["log_z"])["log_z"].to_numpy()
    if not np.allclose(stage, z.log_z, rtol=0, atol=1e-9):
        raise IswtError(f"{z_path}: log_z differs from estimators.estimate_groups on the same samples")


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def _cells(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault(tuple(row[k] for k in keys), []).append(row)
    return cells


def error_table(rows: list[dict]) -> list[str]:
    lines = [
        "| cap | proposal | beta | K | estimator | estimates | mean abs error | largest | mean error | covered | "
        "median width | outside bounds | mean log mean ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (cap, proposal, beta, k, estimator), cell in sorted(
        _cells(rows, ("cap", "proposal", "beta", "k", "estimator")).items()
    ):
        error = np.array([r["log_z"] - r["true"] for r in cell])
        outside = np.mean([bool(r["log_z"] < -1e-9 or r["log_z"] > beta + 1e-9) for r in cell])
        lines.append(
            f"| {cap} | {PROPOSALS[proposal]} | {beta:g} | {k} | {estimator} | {len(cell)} | "
            f"{np.abs(error).mean():.3f} | {np.abs(error).max():.3f} | {error.mean():+.3f} | "
            f"{np.mean([r['covered'] for r in cell]):.2f} | {np.median([r['width'] for r in cell]):.2f} | {outside:.2f} | "
            f"{np.mean([r['log_mean_ratio'] for r in cell]):+.2f} |"
        )
    return lines


def flag_table(rows: list[dict], bad: float) -> list[str]:
    """How well each flag separates estimates off by more than ``bad`` from the rest, per estimator and cap."""
    lines = [
        f"| cap | estimator | estimates | off by > {bad:g} | not covered | flag | fires on bad | fires on good | "
        "fires on not covered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (cap, estimator), cell in sorted(_cells(rows, ("cap", "estimator")).items()):
        is_bad = np.array([abs(r["log_z"] - r["true"]) > bad for r in cell])
        missed = np.array([not r["covered"] for r in cell])
        for flag in estimators.FLAG_NAMES:
            fired = np.array([flag in r["flags"] for r in cell])
            if not fired.any():
                continue
            lines.append(
                f"| {cap} | {estimator} | {len(cell)} | {is_bad.mean():.2f} | {missed.mean():.2f} | {flag} | "
                f"{_share(fired, is_bad)} | {_share(fired, ~is_bad)} | {_share(fired, missed)} |"
            )
    return lines


def _share(fired: np.ndarray, among: np.ndarray) -> str:
    return "-" if not among.any() else f"{fired[among].mean():.2f} ({int(among.sum())})"


def render(rows: list[dict], bad: float, run: str) -> str:
    return "\n".join(
        [
            "# Offline log Z on reasoning traces, against the truth",
            "",
            f"Generated by `python examples/log_z_reasoning_table.py {run}` from the runs of "
            "`examples/log_z_reasoning.mk`; the reading is in docs/study/log_z_reasoning_study.md.",
            "",
            "## Error and coverage per cell",
            "",
            "Each estimate is one prompt's disjoint replicate of K samples; the truth is log(1 + (e^beta - 1) "
            "P_ref(correct)) from the reference's own sample at the same cap.",
            "",
            *error_table(rows),
            "",
            "## Which flags mark the bad estimates",
            "",
            *flag_table(rows, bad),
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
