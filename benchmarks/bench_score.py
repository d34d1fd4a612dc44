"""Code-reward throughput of `iswt score`: samples/s with --workers 1 vs 2.

Scores HumanEval's 164 canonical solutions (every one must pass) through the
score stage, `--repeat` times per worker count with the counts interleaved,
and prints the best run of each side by side (the best run is the one least
disturbed by other load on the machine).

`--against REV` times the code at git revision REV too (its `iswcli` and
`stages` extracted to a temporary directory), interleaved with this tree's
runs, and prints the ratio: e.g. `--against 2c6388c` compares with the code
reward before tests and candidate ran in separate processes.

    .venv/bin/python benchmarks/bench_score.py [--workers 1 2] [--repeat 2] [--batch-size 32] [--against REV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def canonical_samples(path: str) -> int:
    """A samples artifact whose responses are HumanEval's canonical solutions."""
    import pyarrow as pa

    from iswcli import artifacts, tasks

    prompts = tasks.load_prompts("humaneval", None, None, None)
    rows = [
        {
            "prompt_id": p.prompt_id,
            "sample_idx": 0,
            "task": "humaneval",
            "prompt": p.prompt,
            "task_fields": json.dumps(p.fields),
            "prompt_text": p.prompt,
            "response": p.fields["canonical_solution"],
            "prompt_token_ids": [],
            "response_token_ids": [],
            "token_logprobs_q": [],
            "logprob_q": 0.0,
            "token_logprobs_model": [],
            "logprob_model": 0.0,
            "n_tokens": 0,
            "finish_reason": "stop",
        }
        for p in prompts
    ]
    table = pa.Table.from_pylist(rows, schema=artifacts.SAMPLES.schema)
    artifacts.write_artifact(table, path, artifacts.SAMPLES, artifacts.make_provenance("bench", {}))
    return len(rows)


def bench(samples: str, out: str, workers: int, batch_size: int) -> dict:
    """One timed `score --reward code` run with the code on sys.path."""
    from iswcli import console
    from stages.score import ScoreConfig, run

    console.settings.quiet = True
    config = ScoreConfig(samples=samples, reward="code", out=out, workers=workers, batch_size=batch_size)
    started = time.perf_counter()
    result = run(config)
    seconds = time.perf_counter() - started
    if isinstance(result, dict):  # --against a revision from before the stages returned typed results
        return {"seconds": seconds, "samples/s": result["samples"] / seconds, "pass rate": result["pass rate"]}
    return {"seconds": seconds, "samples/s": result.samples / seconds, "pass rate": result.pass_rate}


def bench_in(root: str, samples: str, out: str, workers: int, batch_size: int) -> dict:
    """bench() in a fresh interpreter that imports the code under `root`."""
    argv = [sys.executable, os.path.abspath(__file__), "--child", root, samples, out, str(workers), str(batch_size)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=root)
    if done.returncode:
        sys.exit(f"error: benchmark run under {root} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def extract(rev: str, into: str) -> str:
    """The tree's iswcli/ and stages/ at `rev`, under `into`; returns the short hash."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", rev, "iswcli", "stages"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return short


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        root, samples, out, workers, batch_size = sys.argv[2:7]
        sys.path.insert(0, root)
        print(json.dumps(bench(samples, out, int(workers), int(batch_size))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--against", metavar="REV", help="also time the code at this git revision")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from iswcli import sandbox

    isolation = sandbox.sandbox_isolation()  # probed once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        samples = os.path.join(tmp, "samples.parquet")
        n = canonical_samples(samples)
        sides = {"this tree": ROOT}
        if args.against:
            old = os.path.join(tmp, "against")
            os.mkdir(old)
            sides[extract(args.against, old)] = old
        runs = {(s, w): [] for s in sides for w in args.workers}
        for r in range(args.repeat):
            for side, root in sides.items():
                for w in args.workers:
                    out = os.path.join(tmp, f"scores-{len(runs)}-{r}-{w}-{abs(hash(side))}.parquet")
                    runs[side, w].append(bench_in(root, samples, out, w, args.batch_size))
    results = {key: min(found, key=lambda x: x["seconds"]) for key, found in runs.items()}

    print(
        f"code reward on {n} HumanEval canonical solutions; isolation: {isolation.kind}; "
        f"batch size {args.batch_size}; {os.cpu_count()} CPUs; best of {args.repeat}"
    )
    columns = [(s, w) for s in sides for w in args.workers]
    labels = [f"{s[:11]} w{w}" for s, w in columns]
    print(f"{'':>12}" + "".join(f"{label:>16}" for label in labels))
    for metric, fmt in (("seconds", "{:.2f}"), ("samples/s", "{:.1f}"), ("pass rate", "{:.3f}")):
        print(f"{metric:>12}" + "".join(f"{fmt.format(results[c][metric]):>16}" for c in columns))
    for side in sides:
        base = results[side, args.workers[0]]["samples/s"]
        print(
            f"{'speed-up':>12} {side}: "
            + ", ".join(f"--workers {w} {results[side, w]['samples/s'] / base:.2f}x" for w in args.workers)
        )
    if args.against:
        old = list(sides)[1]
        print(
            f"{'slowdown':>12} this tree vs {old}: "
            + ", ".join(
                f"--workers {w} {results[old, w]['samples/s'] / results['this tree', w]['samples/s']:.2f}x"
                for w in args.workers
            )
        )
    if any(r["pass rate"] != 1.0 for r in results.values()):
        sys.exit("error: not every canonical solution passed")


if __name__ == "__main__":
    main()
