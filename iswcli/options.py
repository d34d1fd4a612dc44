"""Flags that several `iswt` commands share, as typer annotations (the commands are in iswcli/cli.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

# Options shared by the commands that load a model or read prompts.
ModelOpt = Annotated[str, typer.Option("--model", help="Alias (smollm2-135m), local HF model directory, or hub id.")]
AdapterOpt = Annotated[Optional[str], typer.Option("--adapter", help="A peft adapter directory loaded on top.")]
TaskOpt = Annotated[
    Optional[str], typer.Option("--task", help="Built-in task: arith, arith:1..3, humaneval (default arith).")
]
PromptsOpt = Annotated[
    Optional[str], typer.Option("--prompts", help="Prompt file (jsonl, json, csv, parquet) or hf:NAME[:SPLIT].")
]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="train or test, where the source has splits.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="Use only the first N prompts.")]
# Bounded here, for every command: numpy refuses a negative seed and torch one past 64 bits, mid-run.
SeedOpt = Annotated[
    int, typer.Option("--seed", min=0, max=2**63 - 1, help="Random seed; same seed, same hardware, same output.")
]
OutOpt = Annotated[str, typer.Option("--out", help="Output .parquet path.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Re-run even when the output is up to date.")]
ShardOpt = Annotated[Optional[str], typer.Option("--shard", help="i/n: this job's share of the prompts, 0 <= i < n.")]
PlotOpt = Annotated[Optional[str], typer.Option("--plot", help="Also draw histograms to this .png file.")]
# Generation engine options shared by sample and evaluate (the last three: vLLM only).
BackendOpt = Annotated[str, typer.Option("--backend", help="hf (transformers) or vllm.")]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype", help="float32 (default: the reference's dtype, so q's numbers are pi_ref's), bfloat16, float16."
    ),
]
TensorParallelOpt = Annotated[int, typer.Option("--tensor-parallel-size", help="vLLM: GPUs per engine.")]
GpuMemoryOpt = Annotated[float, typer.Option("--gpu-memory-utilization", help="vLLM: share of GPU memory to use.")]
MaxModelLenOpt = Annotated[
    Optional[int], typer.Option("--max-model-len", help="vLLM: context length to reserve (default: the model's).")
]
# Commands that can instead compare earlier outputs: `--compare A B ...`.
RunsArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="With --compare: the files to compare (the first is the reference).", show_default=False),
]
CompareOpt = Annotated[
    bool,
    typer.Option("--compare", help="Compare the files given as arguments: CIs over prompts, paired Δ to the first."),
]
