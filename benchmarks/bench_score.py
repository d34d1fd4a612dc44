"""Code-reward throughput of `iswt score`: samples/s with --workers 1 vs 2.

Scores HumanEval's 164 canonical solutions (every one must pass) through the
score stage, `--repeat` times per worker count with the counts interleaved,
and prints the best run of each side by side (the best run is the one least
disturbed by other load on the machine).

    .venv/bin/python benchmarks/bench_score.py [--workers 1 2] [--repeat 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyarrow as pa  # noqa: E402

from iswcli import artifacts, console, sandbox, tasks  # noqa: E402
from stages.score import ScoreConfig, run  # noqa: E402


def canonical_samples(path: str) -> int:
    """A samples artifact whose responses are HumanEval's canonical solutions."""
    prompts = tasks.load_prompts("humaneval", None, None, None)
    rows = [{
        "prompt_id": p.prompt_id, "sample_idx": 0, "task": "humaneval", "prompt": p.prompt,
        "task_fields": json.dumps(p.fields), "prompt_text": p.prompt, "response": p.fields["canonical_solution"],
        "prompt_token_ids": [], "response_token_ids": [], "token_logprobs_q": [], "logprob_q": 0.0,
        "token_logprobs_model": [], "logprob_model": 0.0, "n_tokens": 0, "finish_reason": "stop",
    } for p in prompts]  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=artifacts.SAMPLES.schema)
    artifacts.write_artifact(table, path, artifacts.SAMPLES, artifacts.make_provenance("bench", {}))
    return len(rows)


def bench(samples: str, out: str, workers: int, batch_size: int) -> dict:
    config = ScoreConfig(samples=samples, reward="code", out=out, workers=workers, batch_size=batch_size)
    started = time.perf_counter()
    summary = run(config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "samples/s": summary["samples"] / seconds, "pass rate": summary["pass rate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    console.settings.quiet = True

    isolation = sandbox.sandbox_isolation()  # probed once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        samples = os.path.join(tmp, "samples.parquet")
        n = canonical_samples(samples)
        runs: dict[int, list[dict]] = {w: [] for w in args.workers}
        for r in range(args.repeat):
            for w in args.workers:
                runs[w].append(bench(samples, os.path.join(tmp, f"scores-w{w}-{r}.parquet"), w, args.batch_size))
    results = {w: min(found, key=lambda x: x["seconds"]) for w, found in runs.items()}

    print(f"code reward on {n} HumanEval canonical solutions; isolation: {isolation.kind}; "
          f"batch size {args.batch_size}; {os.cpu_count()} CPUs; best of {args.repeat}")
    print(f"{'':>12}" + "".join(f"{f'--workers {w}':>14}" for w in args.workers))
    for metric, fmt in (("seconds", "{:.2f}"), ("samples/s", "{:.1f}"), ("pass rate", "{:.3f}")):
        print(f"{metric:>12}" + "".join(f"{fmt.format(results[w][metric]):>14}" for w in args.workers))
    base = results[args.workers[0]]["samples/s"]
    print(f"{'speed-up':>12}" + "".join(f"{results[w]['samples/s'] / base:>13.2f}x" for w in args.workers))
    if any(r["pass rate"] != 1.0 for r in results.values()):
        sys.exit("error: not every canonical solution passed")


if __name__ == "__main__":
    main()
