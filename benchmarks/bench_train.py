"""Training throughput and peak memory: `iswt train --loss sigmoid` (LoRA) vs TRL's DPOTrainer.

Builds its own data with the embedded default model: `iswt sample` on a few
arith prompts, `iswt score` with a deterministic pseudo-random reward (or
`--reward math`) and reference log-probs (`--ref-model`), `iswt weight-pairs
--method direct`. Then trains for the same number of steps on the same
(prompt text, chosen text, rejected text) pairs with the same model, batch
size (pairs per step), LoRA settings (r, alpha, target modules, dropout 0),
learning rate (constant, no warmup), AdamW, gradient clipping, beta, fp32 and
no gradient checkpointing:

- iswt: the real CLI, `iswt train --loss sigmoid`, with the reference
  log-probs read from the scores' `logprob_ref` column;
- TRL: `DPOTrainer` with `precompute_ref_log_probs=True` (the reference
  log-probs are computed in the trainer's constructor, before training), the
  LoRA adapter added by the trainer from the same `LoraConfig`. TRL tokenizes
  the text itself (and appends EOS to every response), so its token counts
  differ slightly from iswt's; both are printed.

Each side runs in its own child process, one after the other (`--repeat`
interleaves several runs and reports the fastest of each side). Throughput is
measured per optimizer step (forward, backward, clipping, optimizer step, and
for TRL its batch collation and logging) over the steps after the first
`--skip` ones; tokens are counted the same way on both sides from the batches
each side actually trained on: response tokens (the tokens whose log-probs
enter the loss; the headline figure), prompt tokens (every pair side's
prompt, counted per sequence on both sides) and their sum; "tokens run/step"
is what each side actually ran through the model (iswt runs each distinct
prompt of a micro-batch once, its pairs' responses continuing from its KV
cache; TRL runs every sequence's prompt; neither counts padding). Peak
memory is the child's peak RSS (os.wait4,
the per-child form of getrusage(RUSAGE_CHILDREN).ru_maxrss) on CPU, and
torch.cuda.max_memory_allocated as well on a GPU.

    .venv/bin/python benchmarks/bench_train.py [--limit 4] [--n 4] [--max-new-tokens 48]
        [--steps 6] [--skip 1] [--batch-size 4] [--repeat 1] [--threads 0] [--reward random|math]
        [--device cpu|cuda]
        [--workdir DIR]  # keeps the data; a second run with the same DIR reuses it
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()


def random_reward(row, response):
    """Deterministic pseudo-random reward in [0, 1): distinct per sample, so `direct` pairs every two samples."""
    digest = hashlib.sha256(f"{row['prompt_id']}:{row['sample_idx']}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --------------------------------------------------------------------------- data


def iswt_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "iswcli.cli", "-q", *args]


def child_env(threads: int = 0) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("WANDB_DISABLED", "true")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def build_data(args, work: Path) -> dict[str, str]:
    """samples, scores (with logprob_ref) and direct pairs; reused when already in the work directory."""
    files = {k: str(work / f"{k}.parquet") for k in ("samples", "scores", "pairs")}
    stamp = work / "data.json"
    recipe = {k: getattr(args, k) for k in ("model", "limit", "n", "max_new_tokens", "reward", "seed", "device")}
    if stamp.exists() and json.loads(stamp.read_text()) == recipe and all(Path(f).exists() for f in files.values()):
        print(f"reusing the data in {work}", flush=True)
        return files
    for f in files.values():
        Path(f).unlink(missing_ok=True)
    reward = f"python:{THIS}:random_reward" if args.reward == "random" else args.reward
    steps = [
        (
            "sample",
            iswt_cmd(
                "sample",
                "--model",
                args.model,
                "--task",
                "arith",
                "--split",
                "train",
                "--limit",
                str(args.limit),
                "--n",
                str(args.n),
                "--max-new-tokens",
                str(args.max_new_tokens),
                "--seed",
                str(args.seed),
                "--device",
                args.device,
                "--out",
                files["samples"],
            ),
        ),
        (
            "score",
            iswt_cmd(
                "score",
                "--samples",
                files["samples"],
                "--reward",
                reward,
                "--ref-model",
                args.model,
                "--device",
                args.device,
                "--out",
                files["scores"],
            ),
        ),
        (
            "weight-pairs",
            iswt_cmd(
                "weight-pairs",
                "--samples",
                files["samples"],
                "--scores",
                files["scores"],
                "--method",
                "direct",
                "--out",
                files["pairs"],
            ),
        ),
    ]
    for name, cmd in steps:
        began = time.perf_counter()
        subprocess.run(cmd, check=True, env=child_env(), cwd=ROOT)
        print(f"data: iswt {name} done in {time.perf_counter() - began:.0f}s", flush=True)
    stamp.write_text(json.dumps(recipe))
    return files


def pair_texts(files: dict[str, str]) -> dict:
    """The pairs as text (what TRL gets) and as iswt's token ids, in the pairs artifact's order."""
    import pyarrow.parquet as pq

    samples = pq.read_table(files["samples"]).to_pylist()
    by_key = {(s["prompt_id"], s["sample_idx"]): s for s in samples}
    pairs = pq.read_table(files["pairs"]).to_pylist()
    if not pairs:
        sys.exit(
            "error: weight-pairs made no pairs (with --reward math, the samples need differing rewards); "
            "use --reward random or more prompts"
        )
    out = {"prompt": [], "chosen": [], "rejected": [], "prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for p in pairs:
        c, r = by_key[(p["prompt_id"], p["chosen_idx"])], by_key[(p["prompt_id"], p["rejected_idx"])]
        out["prompt"].append(c["prompt_text"])
        out["chosen"].append(c["response"])
        out["rejected"].append(r["response"])
        out["prompt_ids"].append(c["prompt_token_ids"])
        out["chosen_ids"].append(c["response_token_ids"])
        out["rejected_ids"].append(r["response_token_ids"])
    return out


def write_pair_texts(texts: dict, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: texts[k] for k in ("prompt", "chosen", "rejected")})
    if path.exists() and pq.read_table(path).equals(table):
        return  # unchanged: keeps TRL's caches valid
    pq.write_table(table, path)
    shutil.rmtree(path.parent / "hf-datasets", ignore_errors=True)


# --------------------------------------------------------------------------- children


def run_child(side: str, args, work: Path) -> dict:
    """One side in its own process; its peak RSS from wait4's rusage (this child alone)."""
    result = work / f"result-{side}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(THIS), "--child", side, "--workdir", str(work), *child_flags(args)]
    began = time.perf_counter()
    with open(work / f"{side}.log", "w") as log:
        proc = subprocess.Popen(cmd, env=child_env(args.threads), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not result.exists():
        tail = (work / f"{side}.log").read_text()[-3000:]
        sys.exit(f"error: the {side} run failed (exit {code}); end of its log:\n{tail}")
    out = json.loads(result.read_text())
    out["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    out["wall_s"] = time.perf_counter() - began
    return out


def child_flags(args) -> list[str]:
    flags = []
    for key in (
        "model",
        "steps",
        "skip",
        "batch_size",
        "lr",
        "beta",
        "lora_r",
        "lora_alpha",
        "target_modules",
        "seed",
        "device",
    ):
        flags += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    return flags


def child_iswt(args, work: Path) -> None:
    """`iswt train --loss sigmoid` in this process (as its console script would run it)."""
    files = {k: str(work / f"{k}.parquet") for k in ("samples", "scores", "pairs")}
    run_dir = work / "iswt-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    argv = [
        "iswt",
        "-q",
        "train",
        "--loss",
        "sigmoid",
        "--model",
        args.model,
        "--samples",
        files["samples"],
        "--scores",
        files["scores"],
        "--pairs",
        files["pairs"],
        "--out",
        str(run_dir),
        "--batch-size",
        str(args.batch_size),
        "--max-steps",
        str(args.steps),
        "--lr",
        str(args.lr),
        "--beta",
        str(args.beta),
        "--lora-r",
        str(args.lora_r),
        "--lora-alpha",
        str(args.lora_alpha),
        "--lora-dropout",
        "0",
        "--target-modules",
        args.target_modules,
        "--schedule",
        "constant",
        "--warmup-steps",
        "0",
        "--max-grad-norm",
        "1.0",
        "--precision",
        "fp32",
        "--seed",
        str(args.seed),
        "--device",
        "cpu" if args.device == "cpu" else "auto",
    ]
    from iswcli import cli

    sys.argv = argv
    try:
        cli.main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    steps = iswt_steps(args, files, run_dir)
    write_result(work / "result-iswt.json", {"steps": steps, **cuda_peak()})


def iswt_steps(args, files, run_dir: Path) -> list[dict]:
    """Per-step seconds and tokens of the iswt run: its log has each step's seconds and response tokens;
    the prompt tokens follow from the step's batch (train.training_batches, the order train drew)."""
    import numpy as np
    import pyarrow.parquet as pq

    from iswcli import chain, train_data
    from stages.train import TrainConfig, training_batches

    data, scored = train_data.load(files["samples"], files["scores"])
    train_data.attach_pairs(data, chain.load_pairs(files["pairs"], scored))
    config = TrainConfig(
        out=str(run_dir),
        samples=files["samples"],
        scores=files["scores"],
        loss="sigmoid",
        pairs=files["pairs"],
        batch_size=args.batch_size,
        max_steps=args.steps,
        seed=args.seed,
    )
    log = pq.read_table(run_dir / "train_log.parquet", columns=["seconds", "response_tokens"]).to_pylist()
    steps = []
    for batch, row in zip(training_batches(data, config, per_step=1), log):
        rows = np.concatenate([data.examples[batch, 0], data.examples[batch, 1]])
        resp = [len(data.response_tokens[r]) for r in rows]
        assert sum(resp) == row["response_tokens"], "the batches drawn here are not the ones train drew"
        full = [len(data.prompt_tokens[r]) + n for r, n in zip(rows, resp)]
        distinct = {tuple(data.prompt_tokens[r]) for r in rows}  # what iswt runs: each distinct prompt once
        steps.append(
            {
                "seconds": row["seconds"],
                "response": sum(resp),
                "total": sum(full),
                "run": sum(len(p) for p in distinct) + sum(resp),
            }
        )
    return steps


def child_trl(args, work: Path) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from iswcli import models

    # From a file with a cache directory in the work directory, so that a later run (--repeat) reuses
    # TRL's tokenization and precomputed reference log-probs instead of computing them again.
    dataset = Dataset.from_parquet(str(work / "pairs-text.parquet"), cache_dir=str(work / "hf-datasets"))
    path = models.local_path(models.resolve_model(args.model))
    tokenizer = models.load_tokenizer(path)
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    model = models.load_model(path, device=device)
    targets = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    lora = LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"
    )
    config = DPOConfig(
        output_dir=str(work / "trl-run"),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        max_steps=args.steps,
        beta=args.beta,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=args.batch_size,
        max_length=None,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=device == "cpu",
        seed=args.seed,
        logging_steps=args.steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )

    steps: list[dict] = []
    counts: list[dict] = []

    class Timer(TrainerCallback):
        """Step time from one step's end to the next (the first from its beginning): batch collation,
        forward, backward, clipping, optimizer step and TRL's logging."""

        last = None

        def on_step_begin(self, *_, **__):
            if self.last is None:
                self.last = time.perf_counter()

        def on_step_end(self, *_, **__):
            now = time.perf_counter()
            steps.append({"seconds": now - self.last})
            self.last = now

    class CountingDPOTrainer(DPOTrainer):
        def training_step(self, model, inputs, *rest, **kw):
            counts.append(
                {
                    "response": int(inputs["completion_mask"].sum()),
                    "total": int(inputs["attention_mask"].sum()),
                    "run": int(inputs["attention_mask"].sum()),
                }
            )
            return super().training_step(model, inputs, *rest, **kw)

    torch.manual_seed(args.seed)  # the LoRA initialization (and so the cache key of the reference log-probs)
    trainer = CountingDPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[Timer()],
    )
    tokenized = {k: list(trainer.train_dataset[k]) for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
    trainer.train()
    for s, c in zip(steps, counts):
        s.update(c)
    write_result(work / "result-trl.json", {"steps": steps, "tokenized": tokenized, **cuda_peak()})


def cuda_peak() -> dict:
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return {"cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20}
    return {}


def write_result(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- report


def summarize(result: dict, skip: int) -> dict:
    timed = result["steps"][skip:]
    seconds = sum(s["seconds"] for s in timed)
    out = {
        "s/step": seconds / len(timed),
        "response tok/s": sum(s["response"] for s in timed) / seconds,
        "prompt tok/s": sum(s["total"] - s["response"] for s in timed) / seconds,
        "prompt+response tok/s": sum(s["total"] for s in timed) / seconds,
        "response tok/step": sum(s["response"] for s in timed) / len(timed),
        "prompt+response tok/step": sum(s["total"] for s in timed) / len(timed),
        "tokens run/step": sum(s["run"] for s in timed) / len(timed),
        "peak RSS MiB": result["peak_rss_mib"],
        "wall s (whole child)": result["wall_s"],
    }
    if "cuda_peak_mib" in result:
        out["CUDA peak MiB"] = result["cuda_peak_mib"]
    return out


def tokenization_note(texts: dict, trl: dict, eos_id: int | None) -> str:
    """How TRL's own tokenization of the text compares with iswt's sampled token ids."""
    tok = trl["tokenized"]
    n = len(texts["prompt_ids"])
    same_prompt = sum(a == b for a, b in zip(texts["prompt_ids"], tok["prompt_ids"]))
    same_resp, plus_eos, iswt_resp, trl_resp = 0, 0, 0, 0
    for side in ("chosen", "rejected"):
        for a, b in zip(texts[f"{side}_ids"], tok[f"{side}_ids"]):
            iswt_resp += len(a)
            trl_resp += len(b)
            same_resp += a == b
            plus_eos += a != b and eos_id is not None and a + [eos_id] == b
    return (
        f"tokenization: TRL re-tokenizes the text; over the {n} pairs its prompt ids equal iswt's for "
        f"{same_prompt}/{n}, its response ids equal iswt's for {same_resp}/{2 * n} and equal iswt's plus EOS "
        f"(TRL appends EOS to every response) for {plus_eos}/{2 * n}; response tokens in the pair set: "
        f"iswt {iswt_resp}, TRL {trl_resp} ({(trl_resp - iswt_resp) / max(1, iswt_resp):+.1%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=4, help="arith prompts")
    parser.add_argument("--n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--reward", default="random", help="random (deterministic, distinct per sample) or math")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per side")
    parser.add_argument("--skip", type=int, default=1, help="first steps left out of the timings (warm-up)")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per optimizer step")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side, interleaved; the fastest is reported")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--target-modules", default="all-linear")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (data, iswt and TRL all on it)")
    parser.add_argument("--order", default="iswt,trl", help="which side runs first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per training run (0: torch's default)")
    parser.add_argument("--workdir", help="keep the data and runs here (reused by a later run)")
    parser.add_argument("--child", choices=("iswt", "trl"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps <= args.skip:
        parser.error("--steps must exceed --skip")
    if sorted(args.order.split(",")) != ["iswt", "trl"]:
        parser.error("--order: iswt,trl or trl,iswt")

    if args.child:
        work = Path(args.workdir)
        (child_iswt if args.child == "iswt" else child_trl)(args, work)
        return

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        files = build_data(args, work)
        texts = pair_texts(files)
        write_pair_texts(texts, work / "pairs-text.parquet")
        runs: dict[str, list[dict]] = {side: [] for side in args.order.split(",")}
        for r in range(args.repeat):
            for side, found in runs.items():
                result = run_child(side, args, work)
                found.append(result)
                rate = summarize(result, args.skip)["response tok/s"]
                print(
                    f"{side} (run {r + 1}/{args.repeat}): {args.steps} steps, {rate:.1f} response tok/s, "
                    f"{result['wall_s']:.0f}s with start-up",
                    flush=True,
                )
        report(args, texts, runs)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def best(runs: list[dict], skip: int) -> dict:
    """The fastest run (the least disturbed by other load), with the highest peak memory of all runs."""
    summaries = [summarize(r, skip) for r in runs]
    out = dict(max(summaries, key=lambda s: s["response tok/s"]))
    for key in ("peak RSS MiB", "CUDA peak MiB"):
        if key in out:
            out[key] = max(s[key] for s in summaries)
    return out


def report(args, texts: dict, runs: dict) -> None:
    import importlib.metadata as md

    from iswcli import models

    eos = models.load_tokenizer(models.local_path(models.resolve_model(args.model))).eos_token_id
    iswt, trl = best(runs["iswt"], args.skip), best(runs["trl"], args.skip)
    n_pairs = len(texts["prompt"])
    print()
    print(
        f"iswt train --loss sigmoid vs TRL {md.version('trl')} DPOTrainer (transformers "
        f"{md.version('transformers')}, peft {md.version('peft')}, torch {md.version('torch')})"
    )
    print(
        f"{args.model}, {n_pairs} pairs ({args.reward} rewards, direct), batch {args.batch_size} pairs, LoRA r "
        f"{args.lora_r} alpha {args.lora_alpha} {args.target_modules} dropout 0, lr {args.lr} constant, beta "
        f"{args.beta}, fp32, {args.steps} steps (first {args.skip} not timed), {args.device}, {os.cpu_count()} "
        f"CPUs, {args.threads or 'default'} torch threads, best of {args.repeat} run(s) per side; reference "
        "log-probs precomputed on both sides"
    )
    print(f"{'':>26}{'iswt':>12}{'trl':>12}{'iswt/trl':>10}")
    for key in iswt:
        a, b = iswt[key], trl[key]
        print(f"{key:>26}{a:>12.1f}{b:>12.1f}{a / b:>9.2f}x")
    speed = iswt["response tok/s"] / trl["response tok/s"]
    memory = (
        iswt["CUDA peak MiB"] / trl["CUDA peak MiB"]
        if "CUDA peak MiB" in iswt
        else (iswt["peak RSS MiB"] / trl["peak RSS MiB"])
    )
    ok = speed >= 1.0 and memory <= 1.0
    print(
        f"throughput (response tokens/s) {speed:.2f}x TRL, peak memory {memory:.2f}x TRL: target (>= 1.0x at no "
        f"more memory) {'met' if ok else 'NOT met'}"
    )
    print(tokenization_note(texts, runs["trl"][0], eos))


if __name__ == "__main__":
    main()
