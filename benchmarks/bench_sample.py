"""Sampling throughput: `iswt sample --backend hf` vs `--backend vllm` on the same work, and a naive loop.

All rows run the embedded default model on the same arithmetic prompts with
the same token budget, K samples per prompt, seed and sampling settings.
Each `iswt sample` runs as its own process, so its wall time includes
start-up (imports, model load; for vLLM the engine start, a minute on CPU);
its summary's tokens/s counts only the sampling loop, which gives the time
without start-up. The naive baseline calls transformers' `generate` once per
sample at batch 1, the way a quick script would (start-up excluded).

vLLM lives in its own virtualenv on CPU machines (`make setup-vllm` builds
.venv-vllm): --vllm-python names the interpreter that has it (default: this
one if it imports vllm, else .venv-vllm/bin/python if present; otherwise the
vLLM row is skipped with a note).

    .venv/bin/python benchmarks/bench_sample.py [--prompts 4] [--k 8] [--max-new-tokens 48] [--vllm-python PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def iswt_run(args, python: str, backend: str) -> dict:
    """Run `iswt sample` in its own process; tokens, wall seconds and sampling-only seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "samples.parquet"
        cmd = [
            python,
            "-m",
            "iswcli.cli",
            "--json",
            "sample",
            "--task",
            "arith",
            "--limit",
            str(args.prompts),
            "--n",
            str(args.k),
            "--max-new-tokens",
            str(args.max_new_tokens),
            "--batch-size",
            str(args.batch_size),
            "--temperature",
            str(args.temperature),
            "--seed",
            "0",
            "--backend",
            backend,
            "--out",
            str(out),
        ]
        if backend == "hf":
            cmd += ["--device", "cpu"]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{backend}: iswt sample failed ({done.returncode}):\n{done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        import pyarrow.parquet as pq

        tokens = sum(pq.read_table(out, columns=["n_tokens"]).column("n_tokens").to_pylist())
        rate = summary["tokens_per_s"]
        return {"tokens": tokens, "wall": wall, "sampling": tokens / rate if rate else float("nan")}


def naive_run(args) -> dict:
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
                temperature=args.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=args.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
            tokens += out.shape[1] - input_ids.shape[1]
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "wall": float("nan"), "sampling": seconds}


def vllm_python(choice: str | None) -> str | None:
    if choice:
        return choice
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    local = ROOT / ".venv-vllm" / "bin" / "python"
    return str(local) if local.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--vllm-python", default=None, help="An interpreter with vllm and this project installed.")
    parser.add_argument("--no-naive", action="store_true", help="Skip the naive per-sample generate loop.")
    args = parser.parse_args()

    print(
        f"{args.prompts} prompts x K={args.k}, max {args.max_new_tokens} new tokens, temperature "
        f"{args.temperature}, batch {args.batch_size}, {os.cpu_count()} CPU cores"
    )
    print(f"{'':28}{'tokens':>8}{'wall s':>9}{'tok/s':>9}{'sampling s':>12}{'tok/s':>9}")
    print(f"{'':28}{'':>8}{'(start-up included)':>18}{'(start-up excluded)':>21}", flush=True)
    rows: dict[str, dict] = {}

    def show(name: str, r: dict) -> None:
        rows[name] = r
        with_startup = r["tokens"] / r["wall"] if r["wall"] == r["wall"] else float("nan")
        print(
            f"{name:28}{r['tokens']:>8}{r['wall']:>9.1f}{with_startup:>9.1f}{r['sampling']:>12.1f}"
            f"{r['tokens'] / r['sampling']:>9.1f}",
            flush=True,
        )

    show("iswt sample --backend hf", iswt_run(args, sys.executable, "hf"))
    python = vllm_python(args.vllm_python)
    if python is None:
        print("iswt sample --backend vllm: skipped (no interpreter with vllm: make setup-vllm, or --vllm-python PATH)")
    else:
        show("iswt sample --backend vllm", iswt_run(args, python, "vllm"))
    if not args.no_naive:
        show("naive generate, batch 1", naive_run(args))
    hf = rows["iswt sample --backend hf"]
    if "naive generate, batch 1" in rows:
        naive = rows["naive generate, batch 1"]
        ratio = (hf["tokens"] / hf["sampling"]) / (naive["tokens"] / naive["sampling"])
        print(f"hf batched vs naive (start-up excluded): {ratio:.2f}x (target >= 4x)")
    if "iswt sample --backend vllm" in rows:
        v = rows["iswt sample --backend vllm"]
        print(
            f"vllm vs hf: {(v['tokens'] / v['sampling']) / (hf['tokens'] / hf['sampling']):.2f}x start-up excluded, "
            f"{(v['tokens'] / v['wall']) / (hf['tokens'] / hf['wall']):.2f}x included"
        )


if __name__ == "__main__":
    main()
