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

Each iswt stage runs twice: on scores row for row with the samples (as one
`iswt score` writes them: read straight through) and on the same scores
shuffled (as from shards: DuckDB's out-of-core join and sort). It checks
that both orders give the same output and that pandas agrees, then prints
wall time, samples/s, peak RSS and the peak disk spill of the join against
the targets (peak RSS < 4 GiB each, estimate-z >= 1M samples/s). The inputs are built a
chunk at a time, so the stages can be timed at sizes no table in memory
could hold; skip pandas there:

    .venv/bin/python benchmarks/bench_weights.py [--prompts 62500] [--k 16] [--tokens 16] [--dir DIR]
    .venv/bin/python benchmarks/bench_weights.py --prompts 6250000 --tokens 16 --no-baseline --dir DIR --reuse
"""

from __future__ import annotations

import argparse
import contextlib
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
RSS_TARGET_GIB = 4.0
#: Prompts per chunk the builder generates and writes at once.
BUILD_CHUNK_PROMPTS = 125_000
#: The scores file of each order the stages are timed on.
SCORES = {"aligned": "scores.parquet", "shuffled": "scores-shuffled.parquet"}
#: Outputs up to this many rows are checked to be the same from both orders.
COMPARED_ROWS = 20_000_000


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


def build_inputs(directory: Path, n_prompts: int, k: int, n_tokens: int, seed: int = 0) -> None:
    """Write samples in key order, as `iswt sample` does, and the same scores in two orders.

    ``scores.parquet`` is row for row with the samples, as one `iswt score`
    writes them (the stages read both straight through);
    ``scores-shuffled.parquet`` holds the same rows out of order, as when
    shards or another tool wrote them (within a chunk the rows are permuted,
    and the chunks are written in reverse order), so the join has real work
    at every size. Written a chunk of prompts at a time, so 100M samples
    need no more memory than 2M.
    """
    from iswcli import artifacts

    rng = np.random.default_rng(seed)
    sampling = {"untruncated": True, "stop_token_ids": [2], "chat_template": True}
    config = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}
    chunks = [(lo, min(lo + BUILD_CHUNK_PROMPTS, n_prompts)) for lo in range(0, n_prompts, BUILD_CHUNK_PROMPTS)]
    with (
        artifacts.ArtifactWriter(str(directory / "samples.parquet"), artifacts.SAMPLES) as samples,
        artifacts.ArtifactWriter(str(directory / SCORES["aligned"]), artifacts.SCORES) as scores,
        artifacts.ArtifactWriter(str(directory / SCORES["shuffled"]), artifacts.SCORES) as shuffled,
    ):
        shuffled_chunks = []
        for lo, hi in chunks:
            chunk_samples, chunk_scores = _chunk(rng, lo, hi, k, n_tokens)
            samples.write(chunk_samples)
            scores.write(chunk_scores)
            shuffled_file = directory / f".scores-chunk-{lo}.parquet"
            pq.write_table(chunk_scores.take(pa.array(rng.permutation(chunk_scores.num_rows))), shuffled_file)
            shuffled_chunks.append(shuffled_file)
        sample_sha = samples.finish(artifacts.make_provenance("sample", config, seed=seed, sampling=sampling))
        made_from = {"samples": {"path": str(samples.target), "sha256": sample_sha}}
        scores.finish(artifacts.make_provenance("score", {}, inputs=made_from))
        for shuffled_file in reversed(shuffled_chunks):
            shuffled.write(pq.read_table(shuffled_file))
            shuffled_file.unlink()
        shuffled.finish(artifacts.make_provenance("score", {}, inputs=made_from))


def _chunk(rng, lo: int, hi: int, k: int, n_tokens: int) -> tuple[pa.Table, pa.Table]:
    """Prompts lo..hi-1, K samples each: the samples table and its scores, row for row.

    Constant text columns are dictionary arrays and the list columns come from
    one random block per chunk, so building is quick next to the stages.
    """
    n = (hi - lo) * k
    names = pa.array([f"prompt-{i:09d}" for i in range(lo, hi)])
    prompt_id = names.take(pa.array(np.repeat(np.arange(hi - lo), k)))
    sample_idx = pa.array(np.tile(np.arange(k, dtype=np.int32), hi - lo))
    logprob_q = -rng.gamma(4.0, 8.0, n)
    token_ids = _list_column(rng, n, n_tokens, _token_ids)
    token_logprobs = _list_column(rng, n, n_tokens, _token_logprobs)
    samples = pa.table(
        {
            "prompt_id": prompt_id,
            "sample_idx": sample_idx,
            "task": _constant("arith", n),
            "prompt": prompt_id,
            "task_fields": _constant("{}", n),
            "prompt_text": prompt_id,
            "response": _constant("The answer is 42.", n),
            "prompt_token_ids": _list_column(rng, n, n_tokens // 2, _token_ids),
            "response_token_ids": token_ids,
            "token_logprobs_q": token_logprobs,
            "logprob_q": logprob_q,
            "token_logprobs_model": token_logprobs,
            "logprob_model": logprob_q,
            "n_tokens": pa.array(np.full(n, n_tokens, dtype=np.int32)),
            "finish_reason": _constant("stop", n),
        }
    )
    scores = pa.table(
        {
            "prompt_id": prompt_id,
            "sample_idx": sample_idx,
            "reward": rng.normal(0.0, 1.0, n),
            "reward_info": _constant("synthetic", n),
            "logprob_ref": logprob_q + rng.normal(0.0, 0.5, n),
        }
    )
    return samples, scores


def _constant(text: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([text]))


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


def measure(command: list[str], watch: Path | None = None) -> tuple[float, float, float]:
    """Run a command; return wall seconds, peak RSS (GiB) of that child alone, and peak spill (GiB).

    The spill is the largest total size seen (polled every 0.2 s) of the
    DuckDB spill directories (.iswt-spill-*) the stage makes in ``watch``.
    """
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT)
    spill = 0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG if watch is not None else 0)
        if pid:
            break
        spill = max(spill, _spill_bytes(watch))
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"failed ({child.returncode}): {' '.join(command)}")
    return seconds, usage.ru_maxrss / 2**20, spill / 2**30  # ru_maxrss is in KiB on Linux


def _spill_bytes(directory: Path) -> int:
    total = 0
    for spill in directory.glob(".iswt-spill-*"):
        for file in spill.rglob("*"):
            try:
                total += file.stat().st_size
            except FileNotFoundError:  # DuckDB removes spill files as it goes
                pass
    return total


def iswt_command(name: str, samples: str, scores: str, out: str, max_pairs: int | None = None) -> list[str]:
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
        *([] if max_pairs is None else ["--max-pairs-per-prompt", str(max_pairs), "--seed", "0"]),
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
    parser.add_argument(
        "--scores-order",
        choices=[*SCORES, "both"],
        default="both",
        help="time the stages on scores row for row with the samples (as one `iswt score` writes them), "
        "shuffled (as from shards), or both",
    )
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed afterwards)")
    parser.add_argument("--reuse", action="store_true", help="keep --dir, and reuse the inputs already in it")
    parser.add_argument("--no-baseline", action="store_true", help="skip pandas (it holds everything in memory)")
    parser.add_argument("--max-pairs", type=int, help="weight-pairs --max-pairs-per-prompt (no pandas check)")
    parser.add_argument("--baseline", choices=list(BASELINES), help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare", choices=["same", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:  # child process: run one pandas baseline
        BASELINES[args.baseline](*args.paths)
        return
    if args.compare:  # child process: compare two outputs
        print(COMPARISONS[args.compare](*args.paths))
        return
    if args.build:  # child process: write the inputs
        build_inputs(Path(args.paths[0]), args.prompts, args.k, args.tokens)
        return
    if args.reuse and not args.dir:
        parser.error("--reuse needs --dir")

    # Everything heavy runs in children: Linux keeps a forked child's peak RSS
    # across exec, so a parent holding big tables would inflate every figure.
    orders = list(SCORES) if args.scores_order == "both" else [args.scores_order]
    with contextlib.ExitStack() as stack:
        if args.reuse:
            work = Path(args.dir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.dir)))
        samples = str(work / "samples.parquet")
        inputs = [samples, *(str(work / name) for name in SCORES.values())]
        n_samples = args.prompts * args.k
        if not (args.reuse and all(os.path.exists(path) for path in inputs)):
            sizes = ["--prompts", str(args.prompts), "--k", str(args.k), "--tokens", str(args.tokens)]
            seconds, _, _ = measure([sys.executable, __file__, "--build", *sizes, str(work)])
            print(f"inputs built in {seconds:.1f} s")
        size = sum(os.path.getsize(path) for path in inputs[:2]) / 2**30
        print(f"inputs: {args.prompts:,} prompts x {args.k} = {n_samples:,} samples, {size:.2f} GiB on disk")
        rows = []
        for name in ("estimate-z", "weight-pairs"):
            outputs = {}
            for order in orders:
                scores, ours = str(work / SCORES[order]), str(work / f"iswt-{name}-{order}.parquet")
                Path(ours).unlink(missing_ok=True)  # left by an interrupted run: it would be reused, not timed
                seconds, rss, spill = measure(iswt_command(name, samples, scores, ours, args.max_pairs), watch=work)
                out_gib = os.path.getsize(ours) / 2**30
                note = f"output {out_gib:.2f} GiB, {pq.ParquetFile(ours).metadata.num_rows:,} rows"
                baseline = None
                if not args.no_baseline and order == orders[0]:
                    theirs = str(work / f"pandas-{name}.parquet")
                    baseline = measure([sys.executable, __file__, "--baseline", name, samples, scores, theirs])[:2]
                    if not (name == "weight-pairs" and args.max_pairs):
                        note += "; pandas: " + compare_in_child("pandas", name, ours, theirs)
                    Path(theirs).unlink()
                if pq.ParquetFile(ours).metadata.num_rows > COMPARED_ROWS:
                    note += "; too large to compare with the other order"
                    Path(ours).unlink()  # two sets of 750M pairs would not fit on the disk together
                else:
                    if outputs:
                        note += "; " + compare_in_child("same", ours, *outputs.values())
                    outputs[order] = ours
                rows.append((f"{name} ({order})", seconds, rss, spill, n_samples / seconds, baseline, note))
            for path in outputs.values():
                Path(path).unlink()  # 100M samples make tens of GB of pairs
    report(rows)


def compare_in_child(what: str, *args: str) -> str:
    """A comparison of COMPARISONS in a child process: tables read here would raise every later child's peak RSS."""
    done = subprocess.run([sys.executable, __file__, "--compare", what, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip() or f"{what} comparison of {args} failed")
    return done.stdout.strip()


def check_same_output(path: str, other: str) -> str:
    """The stage gave the same rows from both orders of the scores."""
    ours, theirs = _plain(pq.read_table(path)), _plain(pq.read_table(other))
    same = ours.schema.equals(theirs.schema) and all(
        np.array_equal(ours[c].to_numpy(), theirs[c].to_numpy(), equal_nan=True)
        if pa.types.is_floating(ours.schema.field(c).type)
        else ours[c].equals(theirs[c])
        for c in ours.column_names
    )
    if not same:
        raise SystemExit(f"{path} and {other}: different rows from the two orders of the same scores")
    return "the same rows as from the other order"


#: What a child process run with --compare checks.
COMPARISONS = {"same": check_same_output, "pandas": check_agreement}


def report(rows) -> None:
    print(
        f"\n{'stage':<24}{'iswt s':>9}{'samples/s':>12}{'peak RSS':>10}{'spill':>9}{'pandas s':>10}{'pandas RSS':>12}"
        "  targets"
    )
    for name, seconds, rss, spill, rate, baseline, note in rows:
        met = [f"RSS < {RSS_TARGET_GIB:.0f} GiB: {'yes' if rss < RSS_TARGET_GIB else 'NO'}"]
        if name.startswith("estimate-z"):
            met.append(f">= 1M samples/s: {'yes' if rate >= 1e6 else 'NO'}")
        pandas = f"{baseline[0]:>10.2f}{baseline[1]:>10.2f} G" if baseline else f"{'-':>10}{'-':>12}"
        print(f"{name:<24}{seconds:>9.2f}{rate:>12,.0f}{rss:>8.2f} G{spill:>7.2f} G{pandas}  {', '.join(met)}")
        print(f"{'':<24}{note}")
    print("\ntimes are wall clock of the whole command (interpreter start, reads, hashing, join, write).")


if __name__ == "__main__":
    main()
