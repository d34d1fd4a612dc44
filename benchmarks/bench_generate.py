"""Sampling throughput: `iswt sample` vs transformers' own batched `generate`, and the machine's compute limit.

Both sides run the embedded default model in float32 (or both in `--dtype
bfloat16`) on the same arithmetic prompts (chat template), K samples per
prompt, the same batches of rows (prompt after prompt, `--batch-size` rows
each), the same number of new tokens, temperature 1 without truncation, and
the same torch thread count, each as a whole process of its own (imports,
model load, sampling, writing the result), one after the other (`--repeat`
interleaves more runs):

- iswt: the real CLI, `iswt sample ... --device cpu`, which writes both
  log-prob columns (q's and the raw model's);
- generate: `model.generate(do_sample=True, output_scores=True,
  output_logits=True, return_dict_in_generate=True)` on the left-padded
  batch, the way a user gets the same two columns (log-softmax of the
  scores and of the logits, gathered at the drawn tokens), written to Parquet.

Tokens are counted the same way on both sides: each row's new tokens up to and
including its first stop token. Whole-process tokens/s is the headline; the
sampling loop alone is printed too (iswt's own summary; generate's call).

The compute limit: the benchmark times a float32 matmul on this machine with
the same threads (the best of a few shapes the model's own layers use, and a
square one) and counts the minimal FLOPs of the work, one prefill per distinct
prompt (every prompt position through the layers, the LM head only at the
last) plus every decoded token (the LM head for each, the layers for each
but a row's last, attention over its context). achieved/limit = (minimal
FLOPs / seconds) / matmul rate. It then times one decoding step's matmuls
alone and prints a floor for iswt's whole process: its measured start-up,
the prefill at the matmul rate and every token fed back at its share of a
step's matmuls, before any attention, sampling or other operation.

    .venv/bin/python benchmarks/bench_generate.py [--prompts 16] [--k 8] [--max-new-tokens 64]
        [--batch-size 64] [--threads 2] [--repeat 1] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_iswt(args, out: Path) -> dict:
    cmd = [
        sys.executable,
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
        "1.0",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--dtype",
        args.dtype,
        "--out",
        str(out),
    ]
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env(args.threads))
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"iswt sample failed ({done.returncode}):\n{done.stderr[-3000:]}")
    import pyarrow.parquet as pq

    table = pq.read_table(out, columns=["n_tokens", "prompt_token_ids", "token_logprobs_q", "token_logprobs_model"])
    lengths = table.column("n_tokens").to_pylist()
    rate = json.loads(done.stdout)["tokens_per_s"]
    return {
        "tokens": sum(lengths),
        "lengths": lengths,
        "wall": wall,
        "sampling": sum(lengths) / rate,
        "prompt_lengths": [len(p) for p in table.column("prompt_token_ids").to_pylist()],
    }


def run_generate(args, out: Path) -> dict:
    result = out.with_suffix(".json")
    cmd = [
        sys.executable,
        str(THIS),
        "--child",
        "--out",
        str(out),
        "--prompts",
        str(args.prompts),
        "--k",
        str(args.k),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--batch-size",
        str(args.batch_size),
        "--dtype",
        args.dtype,
    ]
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env(args.threads))
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"generate child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    found = json.loads(result.read_text())
    return {**found, "wall": wall}


def child_generate(args) -> None:
    """transformers' batched generate with per-token scores, as a user would write it; whole process timed outside."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from iswcli import models, tasks

    path = models.local_path(models.resolve_model(models.DEFAULT_MODEL))
    tokenizer = models.load_tokenizer(path)
    model = models.load_model(path, dtype=args.dtype)
    stop = models.stop_token_ids(model, tokenizer)
    prompts = tasks.load_prompts("arith", limit=args.prompts)
    ids = [models.render_prompt(tokenizer, tasks.messages_of(p))[1] for p in prompts]
    rows = [i for i in ids for _ in range(args.k)]
    torch.manual_seed(0)
    columns = {"response_token_ids": [], "token_logprobs_q": [], "token_logprobs_model": [], "n_tokens": []}
    began = time.perf_counter()
    for start in range(0, len(rows), args.batch_size):
        batch = rows[start : start + args.batch_size]
        width = max(len(r) for r in batch)
        input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in batch])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in batch])
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=args.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop,
                output_scores=True,
                output_logits=True,
                return_dict_in_generate=True,
            )
            new = out.sequences[:, width:]
            q = torch.stack(out.scores, 1).float().log_softmax(-1).gather(-1, new[..., None]).squeeze(-1)
            raw = torch.stack(out.logits, 1).float().log_softmax(-1).gather(-1, new[..., None]).squeeze(-1)
        for r in range(len(batch)):
            tokens = new[r].tolist()
            n = next((i + 1 for i, t in enumerate(tokens) if t in stop), len(tokens))
            columns["response_token_ids"].append(tokens[:n])
            columns["token_logprobs_q"].append(q[r, :n].tolist())
            columns["token_logprobs_model"].append(raw[r, :n].tolist())
            columns["n_tokens"].append(n)
    sampling = time.perf_counter() - began
    pq.write_table(pa.table(columns), args.out)
    lengths = columns["n_tokens"]
    Path(args.out).with_suffix(".json").write_text(json.dumps({"tokens": sum(lengths), "sampling": sampling}))


def model_config() -> dict:
    """The embedded default model's config.json."""
    from iswcli import models

    return json.loads((Path(models.local_path(models.resolve_model(models.DEFAULT_MODEL))) / "config.json").read_text())


def body_weights(config: dict) -> int:
    """Weights of the layers' matmuls (q, o, k, v and the MLP) per token: half its FLOPs."""
    d, inter, kv = config["hidden_size"], config["intermediate_size"], config["num_key_value_heads"]
    heads, head_dim = config["num_attention_heads"], config["head_dim"]
    return config["num_hidden_layers"] * (d * heads * head_dim * 2 + d * kv * head_dim * 2 + 3 * d * inter)


def matmul_rate(threads: int, dtype: str) -> float:
    """Best GFLOP/s in ``dtype`` over the model's layer shapes at batch 64 and a square matmul, with `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    shapes = [(64, 576, 1536), (64, 1536, 576), (64, 576, 49152), (256, 576, 1536), (1024, 1024, 1024)]
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=getattr(torch, dtype)), torch.randn(k, n, dtype=getattr(torch, dtype))
        a @ b
        reps = max(3, int(2e9 / (2 * m * k * n)))
        for _ in range(3):
            began = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - began) / 1e9)
    return best


def decode_step(threads: int, rows: int = 64) -> dict[str, float]:
    """Milliseconds of one decoding step's matmuls (every linear layer of the model, then the LM head) at ``rows``.

    With random weights of the embedded model's shapes, each layer its own
    (so they stream from memory as in the model): float32 through
    `torch.nn.functional.linear` (what the model runs), float32 with the
    weights prepacked for oneDNN (`torch.utils.mkldnn`), and bfloat16.
    """
    import torch
    import torch.utils.mkldnn

    torch.set_num_threads(threads)
    config = model_config()
    d, inter, kv = config["hidden_size"], config["intermediate_size"], config["num_key_value_heads"]
    kv_width = kv * config["head_dim"]
    shapes = [(d, d), (d, kv_width), (d, kv_width), (d, d), (d, inter), (d, inter), (inter, d)]  # q k v o gate up down
    shapes = shapes * config["num_hidden_layers"] + [(d, config["vocab_size"])]
    times = {}
    for name, dtype, pack in (
        ("float32", torch.float32, False),
        ("float32, weights prepacked for oneDNN", torch.float32, True),
        ("bfloat16", torch.bfloat16, False),
    ):
        layers = [torch.nn.Linear(i, o, bias=False).to(dtype) for i, o in shapes]
        if pack:
            layers = [torch.utils.mkldnn.to_mkldnn(layer) for layer in layers]
        inputs = {i: torch.randn(rows, i, dtype=dtype) for i in (d, inter)}
        with torch.inference_mode():
            best = float("inf")
            for _ in range(4):
                began = time.perf_counter()
                for (i, _), layer in zip(shapes, layers):
                    layer(inputs[i])
                best = min(best, time.perf_counter() - began)
        times[name] = best * 1e3
    return times


def minimal_flops(prompt_lengths: list[int], lengths: list[int], k: int) -> float:
    """One prefill per distinct prompt plus every decoded token, from the model's config (matmuls and attention)."""

    config = model_config()
    layers, heads, head_dim = config["num_hidden_layers"], config["num_attention_heads"], config["head_dim"]
    body = body_weights(config)
    head = config["hidden_size"] * config["vocab_size"]
    attn_per_ctx = 4 * layers * heads * head_dim  # scores and weighted sum, per context position

    total = 0.0
    for prompt in prompt_lengths[::k]:  # rows are prompt-major, K per prompt
        total += prompt * 2 * body + attn_per_ctx * prompt * (prompt + 1) / 2 + 2 * head
    for prompt, n in zip(prompt_lengths, lengths):
        total += (n - 1) * 2 * head  # the first token's logits come from the prefill
        for j in range(n - 1):  # decoded tokens fed back, except the last
            total += 2 * body + attn_per_ctx * (prompt + j + 1)
    return total


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="both sides' weights and the matmul rate (bfloat16: q is then not pi_ref, see docs/speed.md)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_generate(args)
        return

    print(f"load average before: {load()}", flush=True)
    rate = matmul_rate(args.threads, args.dtype)
    print(f"{args.dtype} matmul rate ({args.threads} threads): {rate:.1f} GFLOP/s (load {load()})", flush=True)
    runs: dict[str, list[dict]] = {"iswt sample": [], "transformers generate": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for name, fn in (("iswt sample", run_iswt), ("transformers generate", run_generate)):
                result = fn(args, Path(tmp) / f"{name.split()[0]}-{r}.parquet")
                result["load"] = load()
                runs[name].append(result)
                print(
                    f"{name} (run {r + 1}/{args.repeat}): {result['tokens']} tokens, {result['wall']:.1f}s whole "
                    f"process, {result['tokens'] / result['wall']:.1f} tok/s (load {result['load']})",
                    flush=True,
                )

    best = {name: min(found, key=lambda x: x["wall"]) for name, found in runs.items()}
    iswt, gen = best["iswt sample"], best["transformers generate"]
    flops = minimal_flops(iswt["prompt_lengths"], iswt["lengths"], args.k)
    print()
    print(
        f"{args.prompts} arith prompts x K={args.k}, {args.max_new_tokens} new tokens, batch {args.batch_size}, "
        f"{args.dtype}, temperature 1, {os.cpu_count()} CPUs, {args.threads} threads, best of {args.repeat}"
    )
    print(f"{'':24}{'tokens':>8}{'whole s':>9}{'tok/s':>9}{'sampling s':>12}{'tok/s':>9}   load")
    for name, r in best.items():
        print(
            f"{name:24}{r['tokens']:>8}{r['wall']:>9.1f}{r['tokens'] / r['wall']:>9.1f}{r['sampling']:>12.1f}"
            f"{r['tokens'] / r['sampling']:>9.1f}   {r['load']}"
        )
    whole = (iswt["tokens"] / iswt["wall"]) / (gen["tokens"] / gen["wall"])
    loop = (iswt["tokens"] / iswt["sampling"]) / (gen["tokens"] / gen["sampling"])
    print(
        f"iswt sample vs generate: {whole:.2f}x whole process (target >= 2.5x: {'met' if whole >= 2.5 else 'NOT met'})"
        f", {loop:.2f}x sampling loop alone"
    )
    print(
        f"minimal work: {flops / 1e12:.2f} TFLOP (one prefill per distinct prompt + every decoded token); at "
        f"{rate:.0f} GFLOP/s the limit is {flops / rate / 1e9:.1f}s"
    )
    for label, seconds in (("whole process", iswt["wall"]), ("sampling loop", iswt["sampling"])):
        achieved = flops / seconds / 1e9
        print(f"iswt sample, {label}: {achieved:.1f} GFLOP/s = {achieved / rate:.0%} of the matmul rate (aim >= 40%)")
    steps = decode_step(args.threads, args.batch_size)
    print(f"one decoding step's matmuls at {args.batch_size} rows (best of 4, load {load()}):")
    for name, ms in steps.items():
        print(f"  {name:40}{ms:8.1f} ms")
    floor = sampler_floor(iswt, args, rate, steps[args.dtype] / 1e3)
    print(
        f"floor of iswt's whole process: start-up and writing {floor['start-up']:.1f}s (measured: whole - loop) + "
        f"prefill matmuls {floor['prefill']:.1f}s (at {rate:.0f} GFLOP/s) + decoding matmuls {floor['decode']:.1f}s "
        f"(each token fed back at 1/{args.batch_size} of the step above) = {floor['total']:.1f}s, before any "
        f"attention, sampling or other op: at most {gen['wall'] / floor['total'] * iswt['tokens'] / gen['tokens']:.2f}x "
        f"generate whole process (2.5x needs iswt at {gen['wall'] / 2.5 * iswt['tokens'] / gen['tokens']:.1f}s)"
    )


def sampler_floor(iswt: dict, args, rate: float, step_seconds: float) -> dict[str, float]:
    """A lower bound on iswt's whole-process seconds for this run's work: its start-up as measured, the prefill of
    each distinct prompt at the best matmul rate, and every token fed back at its share of a full step's matmuls
    (fewer rows per step run no faster per row)."""

    config = model_config()
    prefill = sum(iswt["prompt_lengths"][:: args.k]) * 2 * body_weights(config) / (rate * 1e9)
    decode = sum(n - 1 for n in iswt["lengths"]) * step_seconds / args.batch_size
    start_up = iswt["wall"] - iswt["sampling"]
    return {"start-up": start_up, "prefill": prefill, "decode": decode, "total": start_up + prefill + decode}


if __name__ == "__main__":
    main()
