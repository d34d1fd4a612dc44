"""`iswt train --loss tb` on a shared-prompt workload: this tree vs another revision, side by side.

The workload of issue #15: a few few-shot arithmetic prompts (about 60 prompt
tokens, no chat template) x many samples of a few response tokens, batch 16,
several epochs: almost every token a per-sequence pass runs is a repeated
prompt token. The data (samples from the embedded model, deterministic
pseudo-random rewards, a frozen log Z) is built once with this tree; then
`iswt train --loss tb` runs as a whole process with this tree's code and with
the code of `--against REV` (its iswcli/ and stages/ extracted from git into
a temporary directory), interleaved (`--repeat`), with the same torch
threads. Both compute their reference log-probs in the run (the scores carry
none), as a user's run would.

Reported per side: whole-process wall time, the training loop's time (sum of
the per-step times in train_log.parquet), and tokens/s with prompt and
response tokens counted separately (the tokens of the sequences trained on,
the same count on both sides; how many prompt tokens this tree actually ran
is printed beside it).

    .venv/bin/python benchmarks/bench_train_tb.py [--prompts 4] [--n 64] [--max-new-tokens 6]
        [--batch-size 16] [--epochs 4] [--threads 1] [--repeat 1] [--against c191ebc]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()


def random_reward(row, response):
    digest = hashlib.sha256(f"{row['prompt_id']}:{row['sample_idx']}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def few_shot_prompts(n: int) -> list[dict]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        shots = []
        for _ in range(3):  # about 60 prompt tokens with the embedded tokenizer (one token per digit)
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            shots.append(f"Q: {a} + {b} = ?\nA: {a + b}")
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        out.append({"prompt_id": f"fewshot-{i}", "prompt": "\n".join(shots) + f"\nQ: {a} + {b} = ?\nA:"})
    return out


def env(threads: int, code: Path) -> dict:
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = e["MKL_NUM_THREADS"] = str(threads)
    e.setdefault("TOKENIZERS_PARALLELISM", "false")
    e.setdefault("HF_HUB_OFFLINE", "1")
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), e.get("PYTHONPATH")]))
    return e


def iswt(code: Path, threads: int, *args: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "iswcli.cli", "-q", *args],
        env=env(threads, code),
        cwd=code,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"iswt {args[0]} ({code}) failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def build_data(args, work: Path) -> dict[str, str]:
    files = {k: str(work / f"{k}.parquet") for k in ("samples", "scores", "z")}
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in few_shot_prompts(args.prompts)))
    iswt(
        ROOT,
        args.threads,
        "sample",
        "--prompts",
        str(prompts),
        "--n",
        str(args.n),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--no-chat-template",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--out",
        files["samples"],
    )
    iswt(
        ROOT,
        args.threads,
        "score",
        "--samples",
        files["samples"],
        "--reward",
        f"python:{THIS}:random_reward",
        "--out",
        files["scores"],
    )
    iswt(
        ROOT,
        args.threads,
        "estimate-z",
        "--proposal",
        files["samples"],
        "--scores",
        files["scores"],
        "--beta",
        "1",
        "--out",
        files["z"],
    )
    return files


def extract(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "iswcli", "stages"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def train(args, code: Path, files: dict, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    wall = iswt(
        code,
        args.threads,
        "train",
        "--loss",
        "tb",
        "--samples",
        files["samples"],
        "--scores",
        files["scores"],
        "--z",
        files["z"],
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--device",
        "cpu",
        "--seed",
        "0",
        "--out",
        str(out),
    )
    import pyarrow.parquet as pq

    log = pq.read_table(out / "train_log.parquet").to_pylist()
    return {"wall": wall, "log": log, "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}


def token_counts(args, files: dict, steps: int) -> list[dict]:
    """Per step: prompt and response tokens of the sequences trained on, and the distinct-prompt tokens run."""
    import numpy as np

    from iswcli import train_data

    data, _ = train_data.load(files["samples"], files["scores"])
    n = len(data.prompt_ids)
    batches = [b for e in range(args.epochs) for b in train_data.epoch_batches(n, args.batch_size, e, 0)][:steps]
    out = []
    for rows in batches:
        distinct = {tuple(data.prompt_tokens[r]) for r in rows}
        out.append(
            {
                "prompt": int(sum(len(data.prompt_tokens[r]) for r in rows)),
                "response": int(sum(len(data.response_tokens[r]) for r in rows)),
                "prompt_run": int(sum(len(p) for p in distinct)),
            }
        )
    assert np.all([c["response"] > 0 for c in out])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--against", default="c191ebc", help="the revision to compare with (before prompt sharing)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tb-") as tmp:
        work = Path(tmp)
        print(f"load average {os.getloadavg()[0]:.1f}: building the data", flush=True)
        files = build_data(args, work)
        sides = {"this tree": ROOT, f"--against {args.against}": extract(args.against, work / "against")}
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for r in range(args.repeat):
            for name, code in sides.items():
                result = train(args, code, files, work / f"run-{r}-{len(runs[name])}-{name.split()[0]}")
                runs[name].append(result)
                print(
                    f"{name} (run {r + 1}/{args.repeat}): {len(result['log'])} steps, {result['wall']:.1f}s whole "
                    f"process (load {result['load']})",
                    flush=True,
                )
        steps = len(runs["this tree"][0]["log"])
        counts = token_counts(args, files, steps)
        prompt, response = sum(c["prompt"] for c in counts), sum(c["response"] for c in counts)
        ran = sum(c["prompt_run"] for c in counts)

    print()
    print(
        f"iswt train --loss tb: {args.prompts} few-shot prompts x {args.n} samples (max {args.max_new_tokens} new "
        f"tokens), batch {args.batch_size}, {args.epochs} epochs = {steps} steps, LoRA defaults, fp32, "
        f"{args.threads} torch threads, {os.cpu_count()} CPUs, best of {args.repeat}"
    )
    print(
        f"tokens trained on: {prompt} prompt + {response} response; prompt tokens run by this tree: {ran} "
        f"({ran / prompt:.1%} of the per-sequence count)"
    )
    print(f"{'':28}{'whole s':>9}{'loop s':>9}{'prompt tok/s':>14}{'response tok/s':>16}   load")
    best = {}
    for name, found in runs.items():
        b = min(found, key=lambda x: x["wall"])
        loop = sum(c["response"] / row["tokens_per_s"] for c, row in zip(counts, b["log"]))
        best[name] = b["wall"]
        print(f"{name:28}{b['wall']:>9.1f}{loop:>9.1f}{prompt / loop:>14.1f}{response / loop:>16.1f}   {b['load']}")
    ratio = best[f"--against {args.against}"] / best["this tree"]
    print(f"wall time: {ratio:.2f}x faster than {args.against} (target >= 3x: {'met' if ratio >= 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
