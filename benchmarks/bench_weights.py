"""Benchmark `iswt estimate-z` and `iswt weight-pairs --method iso` against pandas.

Builds a synthetic samples/scores pair on disk (default 62,500 prompts x 16
samples = 1M rows, with realistic token-id and token-log-prob list columns
that the stages must not read), then times in one run, each in its own
subprocess so its peak RSS can be measured (os.wait4):

- iswt estimate-z (with logprob_ref, so the importance ratio is used),
- a straightforward pandas version: merge, then groupby-apply of the same
  per-prompt formulas (log Z, Kish ESS, ESS/K, largest share, delta-method se),
- iswt weight-pairs --method iso --pairing all (7.5M pairs at K = 16),
- pandas: groupby-apply building every untied pair with the same log weight
  and per-prompt softmax.

It checks that both sides agree, then prints times, speedups and peak RSS
against the issue's targets (estimate-z < 10 s, weight-pairs < 60 s, peak RSS
< 4 GiB, >= 10x pandas).

    .venv/bin/python benchmarks/bench_weights.py [--prompts 62500] [--k 16] [--dir DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BETA = 1.0
GAMMA = 1.0
TARGETS = {"estimate-z": 10.0, "weight-pairs": 60.0}
RSS_TARGET_GIB = 4.0


# --------------------------------------------------------------------------
# Synthetic inputs
# --------------------------------------------------------------------------


def _list_column(rng, n_rows: int, length: int, values) -> pa.ListArray:
    """n_rows lists of ``length`` values each, built from flat arrays (no Python loop)."""
    offsets = pa.array(np.arange(0, (n_rows + 1) * length, length, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values(rng, n_rows * length)))


def _token_ids(rng, m: int) -> np.ndarray:
    return rng.integers(0, 49_152, m, dtype=np.int32)


def _token_logprobs(rng, m: int) -> np.ndarray:
    return -rng.exponential(1.0, m).astype(np.float32)


def build_inputs(directory: Path, n_prompts: int, k: int, n_tokens: int, seed: int = 0) -> tuple[str, str]:
    from iswcli import artifacts

    rng = np.random.default_rng(seed)
    n = n_prompts * k
    names = pa.array([f"prompt-{i:07d}" for i in range(n_prompts)])
    prompt_id = names.take(pa.array(np.repeat(np.arange(n_prompts), k)))
    sample_idx = pa.array(np.tile(np.arange(k, dtype=np.int32), n_prompts))
    logprob_q = -rng.gamma(4.0, 8.0, n)
    samples = pa.table(
        {
            "prompt_id": prompt_id,
            "sample_idx": sample_idx,
            "task": pa.array(["arith"] * n),
            "prompt": names.take(pa.array(np.repeat(np.arange(n_prompts), k))),
            "task_fields": pa.array(["{}"] * n),
            "prompt_text": prompt_id,
            "response": pa.array(["The answer is 42."] * n),
            "prompt_token_ids": _list_column(rng, n, n_tokens // 2, _token_ids),
            "response_token_ids": _list_column(rng, n, n_tokens, _token_ids),
            "token_logprobs_q": _list_column(rng, n, n_tokens, _token_logprobs),
            "logprob_q": logprob_q,
            "token_logprobs_model": _list_column(rng, n, n_tokens, _token_logprobs),
            "logprob_model": logprob_q,
            "n_tokens": pa.array(np.full(n, n_tokens, dtype=np.int32)),
            "finish_reason": pa.array(["stop"] * n),
        }
    )
    # Scores come back shuffled, as from sharded scoring: the join has real work.
    order = pa.array(rng.permutation(n))
    scores = pa.table(
        {
            "prompt_id": prompt_id,
            "sample_idx": sample_idx,
            "reward": rng.normal(0.0, 1.0, n),
            "reward_info": pa.array(["synthetic"] * n),
            "logprob_ref": logprob_q + rng.normal(0.0, 0.5, n),
        }
    ).take(order)
    sample_path, score_path = str(directory / "samples.parquet"), str(directory / "scores.parquet")
    sampling = {"untruncated": True, "stop_token_ids": [2], "chat_template": True}
    config = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}
    artifacts.write_artifact(
        samples,
        sample_path,
        artifacts.SAMPLES,
        artifacts.make_provenance("sample", config, seed=seed, sampling=sampling),
    )
    artifacts.write_artifact(scores, score_path, artifacts.SCORES, artifacts.make_provenance("score", {}))
    return sample_path, score_path


# --------------------------------------------------------------------------
# The pandas baselines (run in a child process: --baseline NAME ...)
# --------------------------------------------------------------------------


def pandas_estimate_z(samples: str, scores: str, out: str) -> None:
    import pandas as pd

    keys = ["prompt_id", "sample_idx"]
    s = pd.read_parquet(samples, columns=[*keys, "logprob_q"])
    sc = pd.read_parquet(scores, columns=[*keys, "reward", "logprob_ref"])
    df = s.merge(sc, on=keys, how="inner", validate="one_to_one")
    df["lw"] = df["logprob_ref"] - df["logprob_q"] + BETA * df["reward"]

    def per_prompt(group):
        lw = group["lw"].to_numpy()
        k, peak = lw.size, lw.max()
        lse = peak + math.log(np.exp(lw - peak).sum())
        lse2 = 2 * peak + math.log(np.exp(2 * (lw - peak)).sum())
        ess = math.exp(2 * lse - lse2)
        return pd.Series(
            {
                "log_z": lse - math.log(k),
                "n_samples": k,
                "ess": ess,
                "ess_frac": ess / k,
                "max_weight_share": math.exp(peak - lse),
                "log_z_se": math.sqrt(max(k / ess - 1, 0) / (k - 1)),
            }
        )

    df.groupby("prompt_id")[["lw"]].apply(per_prompt).reset_index().to_parquet(out)


def pandas_weight_pairs(samples: str, scores: str, out: str) -> None:
    import pandas as pd

    keys = ["prompt_id", "sample_idx"]
    s = pd.read_parquet(samples, columns=keys)
    sc = pd.read_parquet(scores, columns=[*keys, "reward"])
    df = s.merge(sc, on=keys, how="inner", validate="one_to_one")

    def per_prompt(group):
        r, idx = group["reward"].to_numpy(), group["sample_idx"].to_numpy()
        w, l = np.nonzero(r[:, None] > r[None, :])
        d = r[w] - r[l]
        margin = math.log(0.5) + np.log(-np.expm1(-d)) - np.log1p(np.exp(-d))
        log_w = (r[w] + r[l]) / GAMMA + margin
        weight = np.exp(log_w - log_w.max())
        return pd.DataFrame(
            {
                "chosen_idx": idx[w],
                "rejected_idx": idx[l],
                "r_chosen": r[w],
                "r_rejected": r[l],
                "log_weight_base": log_w,
                "margin_score": margin,
                "weight": weight / weight.sum(),
            }
        )

    pairs = df.groupby("prompt_id")[["sample_idx", "reward"]].apply(per_prompt)
    pairs = pairs.reset_index(level=0).reset_index(drop=True)
    pairs["method"] = "iso"
    pairs.to_parquet(out)


BASELINES = {"estimate-z": pandas_estimate_z, "weight-pairs": pandas_weight_pairs}


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def measure(command: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in GiB) of that child alone."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"failed ({child.returncode}): {' '.join(command)}")
    return seconds, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def iswt_command(name: str, samples: str, scores: str, out: str) -> list[str]:
    cli = [sys.executable, "-m", "iswcli.cli", "--quiet"]
    if name == "estimate-z":
        return [*cli, "estimate-z", "--proposal", samples, "--scores", scores, "--beta", str(BETA), "--out", out]
    return [
        *cli,
        "weight-pairs",
        "--samples",
        samples,
        "--scores",
        scores,
        "--method",
        "iso",
        "--gamma",
        str(GAMMA),
        "--pairing",
        "all",
        "--out",
        out,
    ]


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns (pairs' prompt_id and method) as their plain values, so they sort."""
    fields = [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def check_agreement(name: str, iswt_out: str, pandas_out: str) -> str:
    """Both implementations must produce the same numbers; return a one-line note."""
    ours, theirs = _plain(pq.read_table(iswt_out)), _plain(pq.read_table(pandas_out))
    if name == "estimate-z":
        keys, columns = ["prompt_id"], ["log_z", "ess", "max_weight_share", "log_z_se"]
    else:
        keys, columns = ["prompt_id", "chosen_idx", "rejected_idx"], ["log_weight_base", "weight"]
    ours = ours.select([*keys, *columns]).sort_by([(k, "ascending") for k in keys])
    theirs = theirs.select([*keys, *columns]).cast(ours.schema).sort_by([(k, "ascending") for k in keys])
    if ours.num_rows != theirs.num_rows or not all(ours[k].equals(theirs[k]) for k in keys):
        raise SystemExit(f"{name}: iswt and pandas produced different rows")
    worst = max(
        float(np.max(np.abs(ours[c].to_numpy() - theirs[c].to_numpy()) / (1e-12 + np.abs(theirs[c].to_numpy()))))
        for c in columns
    )
    return f"{ours.num_rows:,} rows agree (max relative difference {worst:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=62_500)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32, help="response tokens per sample (list columns)")
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed afterwards)")
    parser.add_argument("--baseline", choices=list(BASELINES), help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:  # child process: run one pandas baseline
        BASELINES[args.baseline](*args.paths)
        return
    if args.build:  # child process: write the inputs
        build_inputs(Path(args.paths[0]), args.prompts, args.k, args.tokens)
        return

    # Everything heavy runs in children: Linux keeps a forked child's peak RSS
    # across exec, so a parent holding big tables would inflate every figure.
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        samples, scores = str(work / "samples.parquet"), str(work / "scores.parquet")
        sizes = ["--prompts", str(args.prompts), "--k", str(args.k), "--tokens", str(args.tokens)]
        seconds, _ = measure([sys.executable, __file__, "--build", *sizes, tmp])
        size = (os.path.getsize(samples) + os.path.getsize(scores)) / 2**20
        print(
            f"inputs: {args.prompts:,} prompts x {args.k} = {args.prompts * args.k:,} samples, "
            f"{size:.0f} MiB on disk, built in {seconds:.1f} s"
        )
        timings = {}
        for name in ("estimate-z", "weight-pairs"):
            ours, theirs = str(work / f"iswt-{name}.parquet"), str(work / f"pandas-{name}.parquet")
            timings[name] = (
                *measure(iswt_command(name, samples, scores, ours)),
                *measure([sys.executable, __file__, "--baseline", name, samples, scores, theirs]),
            )
        rows = []
        for name, (t_iswt, rss_iswt, t_pd, rss_pd) in timings.items():
            note = check_agreement(name, str(work / f"iswt-{name}.parquet"), str(work / f"pandas-{name}.parquet"))
            rows.append((name, t_iswt, t_pd, rss_iswt, rss_pd, note))
    report(rows)


def report(rows) -> None:
    print(f"\n{'stage':<14}{'iswt s':>9}{'pandas s':>10}{'speedup':>9}{'iswt RSS':>10}{'pandas RSS':>12}  targets")
    for name, t_iswt, t_pd, rss_iswt, rss_pd, note in rows:
        speedup = t_pd / t_iswt
        met = [
            f"time < {TARGETS[name]:.0f} s: {'yes' if t_iswt < TARGETS[name] else 'NO'}",
            f"RSS < {RSS_TARGET_GIB:.0f} GiB: {'yes' if rss_iswt < RSS_TARGET_GIB else 'NO'}",
            f">= 10x: {'yes' if speedup >= 10 else 'NO'}",
        ]
        print(
            f"{name:<14}{t_iswt:>9.2f}{t_pd:>10.2f}{speedup:>8.1f}x{rss_iswt:>8.2f} G{rss_pd:>10.2f} G  {', '.join(met)}"
        )
        print(f"{'':<14}{note}")
    print("\ntimes are wall clock of the whole command (interpreter start, reads, hashing, write).")


if __name__ == "__main__":
    main()
