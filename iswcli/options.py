"""Flags that several `iswt` commands share, as typer annotations (the commands are in iswcli/cli.py).

Every option names the help panel it is listed in (iswcli/cli_help.py), and
every int or float option the domain its value must lie in
(`callback=DOMAIN.check`, iswcli/domains.py). File arguments show PATH.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from iswcli import config_file
from iswcli.domains import COUNT, FRACTION, SEED

# Help panels shared by several commands; a command's own concerns have their own (train: objective, LoRA, ...).
INPUTS = "Inputs"
SAMPLING = "Sampling"
ENGINE = "Engine"
RUN = "Run"  # output, seed, device, --force, --config: listed last

# Options shared by the commands that load a model or read prompts.
ModelOpt = Annotated[
    str,
    typer.Option("--model", help="Alias (smollm2-135m), local HF model directory, or hub id.", rich_help_panel=INPUTS),
]
AdapterOpt = Annotated[
    Optional[str],
    typer.Option("--adapter", metavar="PATH", help="A peft adapter directory loaded on top.", rich_help_panel=INPUTS),
]
TaskOpt = Annotated[
    Optional[str],
    typer.Option("--task", help="Built-in task: arith, arith:1..3, humaneval (default arith).", rich_help_panel=INPUTS),
]
PromptsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--prompts", help="Prompt file (jsonl, json, csv, parquet) or hf:NAME[:SPLIT].", rich_help_panel=INPUTS
    ),
]
SplitOpt = Annotated[
    Optional[str], typer.Option("--split", help="train or test, where the source has splits.", rich_help_panel=INPUTS)
]
LimitOpt = Annotated[
    Optional[int],
    typer.Option("--limit", callback=COUNT.check, help="Use only the first N prompts.", rich_help_panel=INPUTS),
]
SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed", callback=SEED.check, help="Random seed; same seed, same hardware, same output.", rich_help_panel=RUN
    ),
]
OutOpt = Annotated[str, typer.Option("--out", metavar="PATH", help="Output .parquet path.", rich_help_panel=RUN)]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Re-run even when the output is up to date.", rich_help_panel=RUN)
]
ShardOpt = Annotated[
    Optional[str],
    typer.Option("--shard", metavar="I/N", help="This job's share of the prompts, 0 <= I < N.", rich_help_panel=RUN),
]
PlotOpt = Annotated[
    Optional[str],
    typer.Option("--plot", metavar="PATH", help="Also draw histograms to this .png file.", rich_help_panel=RUN),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].", rich_help_panel=RUN)]
# Every stage command takes one: eager, so the file's values are the defaults before any other flag is read.
ConfigOpt = Annotated[
    Optional[str],
    typer.Option(
        "--config",
        metavar="FILE",
        is_eager=True,
        expose_value=False,
        callback=config_file.load,
        help="TOML file of this command's flags, keyed by long flag name (max-new-tokens = 256); flags given on the "
        "command line win.",
        rich_help_panel=RUN,
    ),
]
# Generation engine options shared by sample and evaluate (the last three: vLLM only).
BackendOpt = Annotated[str, typer.Option("--backend", help="hf (transformers) or vllm.", rich_help_panel=ENGINE)]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="float32 (default: the reference's dtype, so q's numbers are pi_ref's), bfloat16, float16.",
        rich_help_panel=ENGINE,
    ),
]
TensorParallelOpt = Annotated[
    int,
    typer.Option("--tensor-parallel-size", callback=COUNT.check, help="vLLM: GPUs per engine.", rich_help_panel=ENGINE),
]
GpuMemoryOpt = Annotated[
    float,
    typer.Option(
        "--gpu-memory-utilization",
        callback=FRACTION.check,
        help="vLLM: share of GPU memory to use.",
        rich_help_panel=ENGINE,
    ),
]
MaxModelLenOpt = Annotated[
    Optional[int],
    typer.Option(
        "--max-model-len",
        callback=COUNT.check,
        help="vLLM: context length to reserve (default: the model's).",
        rich_help_panel=ENGINE,
    ),
]
# Commands that can instead compare earlier outputs: `--compare A B ...`.
COMPARE = "Compare"
RunsArg = Annotated[
    Optional[list[str]],
    typer.Argument(
        metavar="FILES",
        help="With --compare: the files to compare (the first is the reference).",
        show_default=False,
        rich_help_panel=COMPARE,
    ),
]
CompareOpt = Annotated[
    bool,
    typer.Option(
        "--compare",
        help="Compare the files given as arguments: CIs over prompts, paired Δ to the first.",
        rich_help_panel=COMPARE,
    ),
]
