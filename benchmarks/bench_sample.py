"""Sampling throughput: `iswt sample` (batched, KV cache) vs a naive per-prompt generate loop.

Both run the embedded default model on the same arithmetic prompts with the
same token budget, K samples per prompt. The naive baseline calls
transformers' `generate` once per sample at batch 1, the way a quick script
would. Prints generated tokens/s for each and their ratio.

    .venv/bin/python benchmarks/bench_sample.py [--prompts 4] [--k 8] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def iswt_tokens_per_s(args) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "samples.parquet"
        cmd = [
            sys.executable, "-m", "iswcli.cli", "--json", "sample", "--task", "arith", "--limit", str(args.prompts),
            "--n", str(args.k), "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
            "--device", "cpu", "--out", str(out),
        ]  # fmt: skip
        summary = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        import pyarrow.parquet as pq

        tokens = sum(pq.read_table(out, columns=["n_tokens"]).column("n_tokens").to_pylist())
        return summary["tokens/s (this run)"], tokens


def naive_tokens_per_s(args) -> tuple[float, int]:
    import torch

    from iswcli import models, tasks

    path = models.local_path(models.resolve_model(models.DEFAULT_MODEL))
    tokenizer = models.load_tokenizer(path)
    model = models.load_model(path)
    prompts = tasks.load_prompts("arith", limit=args.prompts)
    torch.manual_seed(0)
    tokens, started = 0, time.perf_counter()
    for prompt in prompts:
        _, ids = models.render_prompt(tokenizer, tasks.messages_of(prompt))
        input_ids = torch.tensor([ids])
        for _ in range(args.k):
            out = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=args.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
            tokens += out.shape[1] - input_ids.shape[1]
    return tokens / (time.perf_counter() - started), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    iswt_rate, iswt_tokens = iswt_tokens_per_s(args)
    naive_rate, naive_tokens = naive_tokens_per_s(args)
    print(f"{'':28}{'tokens':>10}{'tokens/s':>12}")
    print(f"{'iswt sample (batched)':28}{iswt_tokens:>10}{iswt_rate:>12.1f}")
    print(f"{'naive generate, batch 1':28}{naive_tokens:>10}{naive_rate:>12.1f}")
    print(f"ratio: {iswt_rate / naive_rate:.2f}x  (target >= 4x; {args.prompts} prompts x K={args.k}, "
          f"max {args.max_new_tokens} new tokens, batch {args.batch_size})")


if __name__ == "__main__":
    main()
